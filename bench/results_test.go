package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readFigures(t *testing.T, dir string) []Figure {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var figs []Figure
	if err := json.Unmarshal(b, &figs); err != nil {
		t.Fatal(err)
	}
	return figs
}

// A run into a directory that does not exist yet writes there, and every figure is on disk
// as soon as it is added (a run that fails later keeps it).
func TestResultsIntoNewDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "out")
	res, err := OpenResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := newStamp("veil bench --out " + dir)
	if err := res.Add(st.value("a_ms", 1, "ms", "first")); err != nil {
		t.Fatal(err)
	}
	if figs := readFigures(t, dir); len(figs) != 1 || figs[0].Name != "a_ms" || figs[0].Command == "" || figs[0].Machine == "" {
		t.Fatalf("after the first figure, results.json holds %+v", figs)
	}
	if err := res.Add(st.ratio("b_ratio", 30, "raw", 10, "second")); err != nil {
		t.Fatal(err)
	}
	figs := readFigures(t, dir)
	if len(figs) != 2 || figs[1].Name != "b_ratio" || figs[1].Value != 3 || figs[1].Baseline != 10 {
		t.Fatalf("after the second figure, results.json holds %+v", figs)
	}
	md, err := os.ReadFile(filepath.Join(dir, "RESULTS.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"`a_ms`", "`b_ratio`", handWritten} {
		if !strings.Contains(string(md), want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, md)
		}
	}
}

// Figures already in the directory survive a run that measures others; a figure measured
// again replaces the old one; the hand-written notes below the table are kept.
func TestResultsMergeAndKeepNotes(t *testing.T) {
	dir := t.TempDir()
	st := newStamp("test")
	res, err := OpenResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Add(st.value("old", 1, "ms", ""), st.value("kept", 2, "ms", "")); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "RESULTS.md"))
	notes := "\n\n## Where the time goes\n\nwritten | by hand\n"
	if err := os.WriteFile(filepath.Join(dir, "RESULTS.md"), append(md, notes...), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = OpenResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Add(st.value("old", 5, "ms", "again")); err != nil {
		t.Fatal(err)
	}
	figs := readFigures(t, dir)
	if len(figs) != 2 || figs[0].Name != "kept" || figs[1].Name != "old" || figs[1].Value != 5 {
		t.Fatalf("results.json holds %+v", figs)
	}
	md, _ = os.ReadFile(filepath.Join(dir, "RESULTS.md"))
	if !strings.HasSuffix(string(md), notes) || strings.Count(string(md), handWritten) != 1 {
		t.Fatalf("the notes were not kept:\n%s", md)
	}
}

// A results.json that does not parse is never overwritten: it holds earlier figures.
func TestResultsRefuseMalformed(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "results.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenResults(dir); err == nil {
		t.Fatal("a malformed results.json was accepted")
	}
}

// Run records each suite's figures as it goes, into a fresh directory, and an unknown suite
// is refused with the list of suites.
func TestRunRecordsAsItGoes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh")
	res, err := OpenResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Dir: t.TempDir(), Reps: 1, Only: []string{"accuracy"}, Command: "test"}
	if err := Run(context.Background(), o, res); err != nil {
		t.Fatal(err)
	}
	if figs := readFigures(t, dir); len(figs) != 3 {
		t.Fatalf("the accuracy suite wrote %d figures, want 3: %+v", len(figs), figs)
	}
	o.Only = []string{"nosuch"}
	if err := Run(context.Background(), o, res); err == nil || !strings.Contains(err.Error(), "accuracy") {
		t.Fatalf("unknown suite: %v", err)
	}
}
