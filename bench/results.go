package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Figure is one measured number.
type Figure struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline_value,omitempty"`
	BaseName string  `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	Command  string  `json:"command"`
	Machine  string  `json:"machine"`
	Date     string  `json:"date"`
	Note     string  `json:"note,omitempty"`
}

func machine() string {
	cpu := "unknown cpu"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores, %s/%s, %s", cpu, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// Results are the figures of one output directory: results.json for scripts and RESULTS.md
// for people. Both files are rewritten every time figures are added, so that a long run that
// fails (or is interrupted) halfway keeps every figure it measured. Figures already in the
// directory are kept unless a new figure of the same name replaces them; a run into an empty
// or new directory starts from nothing.
type Results struct {
	dir string

	mu   sync.Mutex
	figs []Figure
}

// handWritten separates RESULTS.md's generated table from the notes below it, which people
// write (the analysis of the figures, how they were measured) and which every rewrite keeps.
const handWritten = "<!-- Everything below this line is written by hand; veil bench keeps it. -->"

// OpenResults creates dir if needed and loads the figures already written there.
func OpenResults(dir string) (*Results, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	r := &Results{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		// A file that does not parse is not silently replaced: it holds earlier figures.
		if err := json.Unmarshal(b, &r.figs); err != nil {
			return nil, fmt.Errorf("%s: %w (move it away to start afresh)", filepath.Join(dir, "results.json"), err)
		}
	}
	return r, nil
}

// Add records figs (replacing figures of the same name) and rewrites both files at once.
func (r *Results) Add(figs ...Figure) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range figs {
		r.figs = slices.DeleteFunc(r.figs, func(x Figure) bool { return x.Name == f.Name })
		r.figs = append(r.figs, f)
	}
	slices.SortFunc(r.figs, func(a, b Figure) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.MarshalIndent(r.figs, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(r.dir, "results.json"), append(b, '\n')); err != nil {
		return err
	}
	var notes string
	if old, err := os.ReadFile(filepath.Join(r.dir, "RESULTS.md")); err == nil {
		if _, tail, ok := strings.Cut(string(old), handWritten); ok {
			notes = tail
		}
	}
	return writeFile(filepath.Join(r.dir, "RESULTS.md"), []byte(markdown(r.figs, notes)))
}

// Figures returns the figures recorded so far, sorted by name.
func (r *Results) Figures() []Figure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.figs)
}

func markdown(figs []Figure, notes string) string {
	var md strings.Builder
	md.WriteString("# Benchmark results\n\nWritten by `make bench` (`veil bench`); every figure was measured by the command beside it, with its baseline in the same run. Ratios are Veil's time over the baseline's (lower is better).\n\n")
	md.WriteString("| figure | value | unit | baseline | note | machine | date | command |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, f := range figs {
		fmt.Fprintf(&md, "| `%s` | %.3g | %s | %s | %s | %s | %s | `%s` |\n", f.Name, f.Value, f.Unit, f.BaseName, cell(f.Note), f.Machine, f.Date, f.Command)
	}
	md.WriteString("\n" + handWritten)
	if notes == "" {
		notes = "\n"
	}
	md.WriteString(notes)
	return md.String()
}

// cell keeps a note inside its table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// writeFile replaces path atomically, so that a reader (or a crash) never sees half a file.
func writeFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// stamp fills in where and when a figure was measured, and by which command.
type stamp struct{ command, machine, date string }

func newStamp(command string) stamp {
	return stamp{command: command, machine: machine(), date: time.Now().UTC().Format("2006-01-02")}
}

// ratio is a figure comparing Veil's time v with a baseline's time b measured in the same
// run (both in ms): the value is v/b.
func (s stamp) ratio(name string, v float64, bname string, b float64, note string) Figure {
	f := Figure{Name: name, Unit: "ratio", BaseName: bname, Baseline: b, Command: s.command, Machine: s.machine, Date: s.date}
	if b > 0 {
		f.Ratio = v / b
		f.Value = f.Ratio
	}
	f.Note = strings.TrimSpace(fmt.Sprintf("Veil %.1f ms vs %s %.1f ms. %s", v, bname, b, note))
	return f
}

// value is a figure that stands alone (a time, a size, an error).
func (s stamp) value(name string, v float64, unit, note string) Figure {
	return Figure{Name: name, Value: v, Unit: unit, Command: s.command, Machine: s.machine, Date: s.date, Note: note}
}
