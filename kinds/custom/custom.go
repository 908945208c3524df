package custom

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow/array"
	"golang.org/x/sys/unix"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/sandbox"
	"github.com/veil-dp/veil/store"
)

// Custom jobs: an operator registers runtime images (a root filesystem, copied and recorded
// with its digest); a vendor submits a program for one of them under a model grant. The
// program runs in a sandbox on that image with the grant's columns as read-only Parquet
// files in /in (the privacy unit replaced by a per-job pseudonym) and writes its outputs to
// /out, a size-limited tmpfs. No network; the vendor learns only a status class (ok, or on the
// data a failure class of package launch; on the twins "failed" or "limit hit"), never
// stdout, stderr or the exit code of a run on the data (a dev run on the twins, which hold
// no real person, shows the exit code and the last 4000 bytes of stderr). The outputs face statistical disclosure
// checks (package gate) and a reviewer; a release with findings needs an explicit override,
// which the audit log records. No differential-privacy claim is made for them.

const (
	maxOutputFiles = 100
	// maxOutputFile bounds one file of /out as read (never more than the whole output's
	// bound, the daemon's MaxResultByte): /out is a tmpfs of --scratch-mb, but a sparse file
	// can be far larger than the tmpfs holds, so the bound is on the bytes read, not on what
	// stat says.
	maxOutputFile = 16 << 20
	// rowCheckLimit bounds the input rows loaded for the row-level check; beyond it the
	// check compares the first rows only and says so.
	rowCheckLimit = 2_000_000
)

var runtimeName = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// Kind is the custom job kind; it also keeps the runtime images and the vendors' programs.
type Kind struct {
	platform.Env
	box *launch.Launcher
}

// New returns the custom kind; box runs the programs (in containers only).
func New(env platform.Env, box *launch.Launcher) *Kind {
	return &Kind{Env: env, box: box}
}

// Name is the key a custom job's spec is stored under.
func (*Kind) Name() string { return "custom" }

// Accepts takes the requests that name a program.
func (*Kind) Accepts(req *api.SubmitJob) bool { return req.Custom != nil }

func (s *Kind) runtimesDir() string { return filepath.Join(s.Config.DataDir, "runtimes") }

// runtimeRecord is a registered runtime, kept as <runtimes>/<name>.json next to its image.
type runtimeRecord struct {
	api.Runtime
	Path string `json:"path"` // the copied image's root
}

func (s *Kind) loadRuntime(name string) (*runtimeRecord, error) {
	if !runtimeName.MatchString(name) {
		return nil, fmt.Errorf("%w: runtime %q not found", policy.ErrNotFound, name)
	}
	b, err := os.ReadFile(filepath.Join(s.runtimesDir(), name+".json"))
	if err != nil {
		return nil, fmt.Errorf("%w: runtime %q not found; `veil runtime list` shows the registered ones", policy.ErrNotFound, name)
	}
	var r runtimeRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Digest == "" {
		return nil, fmt.Errorf("%w: runtime %q is being registered", policy.ErrNotFound, name)
	}
	return &r, nil
}

// RegisterRuntime copies a runtime image from a path on the daemon's host into the data
// directory and records it under a name that never changes meaning.
func (s *Kind) RegisterRuntime(ctx context.Context, p policy.Principal, req api.RegisterRuntime) (api.Runtime, error) {
	if !runtimeName.MatchString(req.Name) {
		return api.Runtime{}, fmt.Errorf("%w: a runtime name is lower-case letters, digits, '.', '_' or '-' (for example python3.11)", policy.ErrInvalid)
	}
	if !filepath.IsAbs(req.Path) {
		return api.Runtime{}, fmt.Errorf("%w: give the image as an absolute path on the daemon's host (a directory or a .tar/.tar.gz)", policy.ErrInvalid)
	}
	for _, a := range req.Entrypoint {
		if a == "" || strings.ContainsRune(a, 0) {
			return api.Runtime{}, fmt.Errorf("%w: the entrypoint has an empty argument", policy.ErrInvalid)
		}
	}
	if len(req.Entrypoint) > 0 && !filepath.IsAbs(req.Entrypoint[0]) {
		return api.Runtime{}, fmt.Errorf("%w: the entrypoint's program must be an absolute path inside the image (for example /usr/bin/python3)", policy.ErrInvalid)
	}
	if err := os.MkdirAll(s.runtimesDir(), 0o711); err != nil {
		return api.Runtime{}, err
	}
	// The name is claimed first (O_EXCL): two registrations of one name cannot both win.
	claim, err := os.OpenFile(filepath.Join(s.runtimesDir(), req.Name+".json"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return api.Runtime{}, fmt.Errorf("%w: runtime %s is already registered; a name never changes meaning, register the new image under another name", policy.ErrConflict, req.Name)
		}
		return api.Runtime{}, err
	}
	claim.Close()
	registered := false
	defer func() {
		if !registered {
			os.Remove(filepath.Join(s.runtimesDir(), req.Name+".json"))
		}
	}()
	dst := filepath.Join(s.runtimesDir(), req.Name+"-"+platform.NewID("img"))
	img, err := sandbox.ImportImage(req.Path, dst)
	if err != nil {
		return api.Runtime{}, fmt.Errorf("%w: %v", policy.ErrInvalid, err)
	}
	if err := os.Chmod(s.runtimesDir(), 0o711); err != nil {
		return api.Runtime{}, err
	}
	rec := runtimeRecord{Runtime: api.Runtime{Name: req.Name, Digest: img.Digest, Entrypoint: req.Entrypoint, Files: img.Files, Bytes: img.Bytes,
		RegisteredBy: p.ID, Registered: s.Rec.Now()}, Path: img.Path}
	b, _ := json.MarshalIndent(rec, "", "  ")
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		if err := platform.WriteFileAtomic(filepath.Join(s.runtimesDir(), req.Name+".json"), b, 0o600); err != nil {
			return err
		}
		return s.Rec.Record(ctx, tx, p, "runtime.register", "runtime/"+req.Name, map[string]string{"digest": img.Digest, "source": req.Path,
			"entrypoint": strings.Join(req.Entrypoint, " "), "files": fmt.Sprint(img.Files)})
	})
	if err != nil {
		os.RemoveAll(img.Path)
		return api.Runtime{}, err
	}
	registered = true
	return rec.Runtime, nil
}

// Runtimes lists the registered runtimes.
func (s *Kind) Runtimes() []api.Runtime {
	ents, _ := os.ReadDir(s.runtimesDir())
	out := []api.Runtime{}
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			if rt, err := s.loadRuntime(name); err == nil {
				out = append(out, rt.Runtime)
			}
		}
	}
	return out
}

// customSpec is what a custom job runs; stored with the job.
type customSpec struct {
	Runtime  string   `json:"runtime"`
	Digest   string   `json:"digest"`  // of the image when the job was submitted
	Program  string   `json:"program"` // sha256 of the program, stored by the daemon
	Datasets []string `json:"datasets"`
}

func (s *Kind) programPath(tenant, digest string) (string, error) {
	return s.Config.TenantFile("programs", tenant, digest)
}

// UploadProgram stores a vendor's program for custom jobs under its digest, in the vendor's
// tenant area.
func (s *Kind) UploadProgram(ctx context.Context, p policy.Principal, body []byte) (api.Program, error) {
	if len(body) == 0 {
		return api.Program{}, fmt.Errorf("%w: the program is empty", policy.ErrInvalid)
	}
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	path, err := s.programPath(p.Tenant, digest)
	if err != nil {
		return api.Program{}, err
	}
	// Executable: a static binary runs as the program itself (an interpreter reads a script).
	if err := platform.StoreUpload(path, body, 0o755); err != nil {
		return api.Program{}, err
	}
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		return s.Rec.Record(ctx, tx, p, "program.upload", "tenant/"+p.Tenant, map[string]string{"digest": digest, "bytes": fmt.Sprint(len(body))})
	})
	if err != nil {
		return api.Program{}, err
	}
	return api.Program{Digest: digest, Bytes: int64(len(body))}, nil
}

// Plan checks a custom job: a runtime, a program this tenant uploaded and datasets of the
// grant. It spends no budget: no differential-privacy claim is made for its outputs.
func (s *Kind) Plan(ctx context.Context, sub *jobs.Submission) (*jobs.Plan, error) {
	req, p := sub.Request, sub.Principal
	c := req.Custom
	switch {
	case strings.TrimSpace(req.SQL) != "" || req.DP != nil || req.HE != nil || req.Train != nil:
		return nil, fmt.Errorf("%w: a custom job is a runtime, a program and datasets only", policy.ErrInvalid)
	case c.Program == "":
		return nil, fmt.Errorf("%w: the custom job has no program (--program FILE)", policy.ErrInvalid)
	case len(c.Datasets) == 0:
		return nil, fmt.Errorf("%w: name the datasets the program reads (--dataset)", policy.ErrInvalid)
	}
	if s.box.Name() != "container" {
		return nil, fmt.Errorf("%w: custom jobs run only in containers, and this daemon runs with isolation=%s", launch.ErrUnavailable, s.box.Name())
	}
	rt, err := s.loadRuntime(c.Runtime)
	if err != nil {
		return nil, err
	}
	g, _, _, err := sub.Grant(ctx, jobs.Mode(policy.ModeModel))
	if err != nil {
		return nil, err
	}
	for i, d := range c.Datasets {
		if _, ok := g.Access(d); !ok {
			return nil, fmt.Errorf("%w: grant %s does not include dataset %q", policy.ErrInvalid, g.ID, d)
		}
		if slices.Contains(c.Datasets[:i], d) {
			return nil, fmt.Errorf("%w: dataset %s is named twice", policy.ErrInvalid, d)
		}
	}
	prog := c.Program
	path, err := s.programPath(p.Tenant, prog)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w: no uploaded program %s for tenant %s; upload it first (veil job submit --program does)", policy.ErrInvalid, prog, p.Tenant)
	}
	spec := &customSpec{Runtime: rt.Name, Digest: rt.Digest, Program: prog, Datasets: c.Datasets}
	desc := fmt.Sprintf("custom program %s on runtime %s (%s) over %s", prog[:19], rt.Name, rt.Digest[:19], strings.Join(c.Datasets, ", "))
	return &jobs.Plan{Grant: g, Mode: policy.ModeModel, Describe: desc, Spec: spec,
		Audit: map[string]string{"grant": g.ID, "mode": "custom", "runtime": rt.Name, "image": rt.Digest, "program": prog,
			"datasets": strings.Join(c.Datasets, ",")}}, nil
}

// devStderrBytes bounds the tail of a failed program's stderr a dev run shows.
const devStderrBytes = 4000

// devStderr is the last devStderrBytes of a program's stderr as valid UTF-8 (the cut can
// split a character; the program can write any bytes).
func devStderr(b []byte) string {
	if len(b) > devStderrBytes {
		b = b[len(b)-devStderrBytes:]
	}
	if len(b) == 0 {
		return "(empty)"
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// statusClass is all a vendor of a job on the data learns of how its program ended.
func statusClass(st sandbox.Status) string {
	switch st {
	case sandbox.StatusOK:
		return "ok"
	case sandbox.StatusFailed, sandbox.StatusKilled:
		return "failed"
	}
	return "limit hit"
}

// Run projects the granted columns, runs the program on its image, reads /out and checks it.
func (s *Kind) Run(ctx context.Context, run *jobs.Run) (*jobs.Output, error) {
	spec := &customSpec{}
	if err := json.Unmarshal(run.Spec, spec); err != nil {
		return nil, err
	}
	tables, err := run.Tables(ctx, spec.Datasets)
	if err != nil {
		return nil, err
	}
	id, tenant := run.ID, run.Tenant
	rt, err := s.loadRuntime(spec.Runtime)
	if err != nil || rt.Digest != spec.Digest {
		return nil, launch.Fail(fmt.Sprintf("runtime %s is not the image the job was submitted for; submit it again", spec.Runtime), nil)
	}
	// Its inputs (rows of the granted columns) and /out (the output before the gate, which
	// every uid may write) are reached through directories every local user may traverse:
	// the job's directory has a name no one else can compute (not the job's id alone, which
	// its vendor knows).
	var private [16]byte
	if _, err := rand.Read(private[:]); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(s.Config.DataDir, "work"), 0o711); err != nil {
		return nil, err
	}
	work := filepath.Join(s.Config.DataDir, "work", id+"-"+hex.EncodeToString(private[:]))
	if err := os.Mkdir(work, 0o711); err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	for _, d := range []string{in, out} {
		if err := os.Mkdir(d, 0o711); err != nil {
			return nil, err
		}
	}
	// /out is a tmpfs of its own: the program cannot fill the host's disk.
	if err := unix.Mount("tmpfs", out, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("size=%dm,mode=0777", s.Config.ScratchMB)); err != nil {
		return nil, fmt.Errorf("mount /out: %w", err)
	}
	defer unix.Unmount(out, unix.MNT_DETACH)

	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	prog, err := s.programPath(tenant, spec.Program)
	if err != nil {
		return nil, err
	}
	mounts := []sandbox.Mount{{Source: prog, Destination: "/job/program", Exec: true}, {Source: out, Destination: "/out", Writable: true}}
	var inputs []gate.SDCTable
	var inputRows int64
	limited := false
	for _, t := range tables {
		if !slices.Contains(spec.Datasets, t.Name) {
			continue
		}
		dst := filepath.Join(in, t.Name+".parquet")
		n, err := engine.Project(ctx, t, dst, hex.EncodeToString(secret[:]))
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(dst, 0o644); err != nil {
			return nil, err
		}
		inputRows = max(inputRows, n)
		mounts = append(mounts, sandbox.Mount{Source: dst, Destination: "/in/" + t.Name + ".parquet"})
		names, cols, more, err := engine.TextColumns(ctx, dst, rowCheckLimit)
		if err != nil {
			return nil, err
		}
		limited = limited || more
		tbl := gate.SDCTable{Name: t.Name, Columns: names}
		if len(cols) > 0 {
			tbl.Rows = make([][]string, len(cols[0]))
			for r := range tbl.Rows {
				row := make([]string, len(cols))
				for c := range cols {
					row[c] = cols[c][r]
				}
				tbl.Rows[r] = row
			}
		}
		inputs = append(inputs, tbl)
	}
	args := append(slices.Clone(rt.Entrypoint), "/job/program")
	res, err := s.box.RunImage(ctx, id, rt.Path, args, mounts, []string{"VEIL_IN=/in", "VEIL_OUT=/out", "HOME=/scratch", "TMPDIR=/scratch"})
	if err != nil {
		return nil, err
	}
	class := statusClass(res.Status)
	if class != "ok" {
		msg := "the program ended: " + class + " (its output and messages are not shown)"
		if run.Dev {
			// The twins hold no real person: a dev run shows the vendor what it needs to debug
			// its program. A run on the data shows the class only (launch.ForVendor).
			msg = fmt.Sprintf("the program ended: %s, exit code %d (shown in dev runs on the twins only); the last of its stderr:\n%s", class, res.ExitCode, devStderr(res.Stderr))
		}
		return nil, launch.FailOnData(launch.StatusClass(res.Status), msg, fmt.Errorf("status %s exit %d", res.Status, res.ExitCode))
	}
	files, err := readOutputs(out, min(maxOutputFile, s.Config.MaxResultByte), s.Config.MaxResultByte)
	if err != nil {
		return nil, launch.FailOnData(launch.ClassLimit, "the program's outputs cannot be read: "+err.Error(), nil)
	}
	var limit int64
	if limited {
		limit = rowCheckLimit
	}
	findings, kinds := gate.CheckCustom(files, inputs, inputRows, limit, func(dataset string, groupBy []string, value string) ([]gate.MagnitudeCell, error) {
		return s.contributions(ctx, id, tables, dataset, groupBy, value)
	})
	rec := output.FilesRecord(files, kinds)
	var apiFindings []api.Finding
	for _, f := range findings {
		apiFindings = append(apiFindings, api.Finding{Output: f.Output, Rule: f.Rule, Where: f.Where, Message: f.Message})
	}
	return &jobs.Output{
		Record: rec,
		Mechanism: api.Mechanism{Kind: "custom", Groups: len(files), Custom: &api.CustomMechanism{Runtime: rt.Name, Digest: rt.Digest, Program: spec.Program,
			Status: class, Files: len(files), Findings: apiFindings,
			Statement: "A vendor's own program computed these files in a sandbox without network. No differential-privacy claim is made for them. " +
				fmt.Sprintf("Statistical disclosure checks found %d findings; a release with findings needs a reviewer's recorded override.", len(findings))}},
		// The vendor learns the status class and that outputs wait, not how many (the
		// program chooses that number: a channel); the metering is the operator's
		// (jobs.Service.View), and the vendor sees the job end only at a release quantum.
		Message: "the program ended: ok; its outputs wait for export review",
		Metering: &api.Metering{WallMS: res.Usage.Wall.Milliseconds(), CPUMS: res.Usage.CPU.Milliseconds(),
			PeakMemoryMB: res.Usage.PeakMemoryBytes >> 20},
		Audit: map[string]string{"mechanism": "custom", "files": fmt.Sprint(len(files)),
			"findings": fmt.Sprint(len(findings)), "status": class},
	}, nil
}

// readOutputs reads the regular files at the top of /out: at most maxOutputFiles, each at
// most perFile bytes and all together at most total, counted on the bytes actually read.
// Each is opened without following links and checked to be a regular file on the opened
// descriptor; names must be printable UTF-8 (they become tar entries and JSON).
func readOutputs(dir string, perFile, total int64) ([]output.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	var files []output.File
	var sum int64
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue // directories, links and the rest are not outputs
		}
		if len(files) == maxOutputFiles {
			return nil, fmt.Errorf("more than %d files in /out", maxOutputFiles)
		}
		name := e.Name()
		if !utf8.ValidString(name) || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 || len(name) > 255 {
			return nil, errors.New("a file name in /out is not printable UTF-8 text")
		}
		b, err := readBounded(int(d.Fd()), name, perFile)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		if sum += int64(len(b)); sum > total {
			return nil, fmt.Errorf("the files in /out add up to more than %s, the limit of a job's output", mib(total))
		}
		files = append(files, output.File{Name: name, Data: b})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// readBounded reads name in the directory dirfd, refusing more than limit bytes; it returns
// nil for what is not a regular file once opened.
func readBounded(dirfd int, name string, limit int64) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("/out/%s cannot be opened", name)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("/out/%s cannot be read", name)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("/out/%s is larger than %s, the limit of one output file", name, mib(limit))
	}
	return b, nil
}

func mib(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// contributions recomputes, in a sandbox, each cell's contribution per privacy unit of a
// declared magnitude table: the dominance rules need them and a program's output cannot be
// trusted to give them.
func (s *Kind) contributions(ctx context.Context, id string, tables []engine.Table, dataset string, groupBy []string, value string) ([]gate.MagnitudeCell, error) {
	var t *engine.Table
	for i := range tables {
		if tables[i].Name == dataset {
			t = &tables[i]
		}
	}
	if t == nil {
		return nil, fmt.Errorf("dataset %q is not in the grant", dataset)
	}
	var unit string
	cols := map[string]engine.Column{}
	for _, c := range t.Columns {
		cols[c.Name] = c
		if c.PrivacyUnit {
			unit = c.Name
		}
	}
	if c, ok := cols[value]; !ok || !policy.NumericType(c.Type) {
		return nil, fmt.Errorf("value column %q is not a granted number", value)
	}
	var keys []string
	for _, k := range groupBy {
		c, ok := cols[k]
		if !ok {
			return nil, fmt.Errorf("group-by column %q is not granted", k)
		}
		if c.PrivacyUnit || c.Identifier {
			return nil, fmt.Errorf("group-by column %q identifies persons; a magnitude table groups by categories", k)
		}
		keys = append(keys, fmt.Sprintf("COALESCE(CAST(%s AS VARCHAR), 'NULL')", engine.Ident(k)))
	}
	cell := "''"
	if len(keys) > 0 {
		cell = strings.Join(keys, " || ' / ' || ")
	}
	q := fmt.Sprintf("SELECT %s AS cell, sum(%s)::DOUBLE AS v FROM %s WHERE %s IS NOT NULL GROUP BY cell, %s ORDER BY cell",
		cell, engine.Ident(value), engine.Ident(dataset), engine.Ident(value), engine.Ident(unit))
	var buf bytes.Buffer
	ejob := engine.Job{SQL: q, Tables: []engine.Table{*t}, Threads: s.Config.JobThreads, MemoryLimitMB: s.Config.DuckDBMemoryMB(), MaxResultBytes: s.Config.MaxResultByte}
	if _, err := s.box.Run(ctx, id+"-sdc", ejob, &buf); err != nil {
		return nil, err
	}
	rec, err := engine.ReadResult(&buf, s.Config.MaxResultByte)
	clear(buf.Bytes())
	if err != nil {
		return nil, err
	}
	defer rec.Release()
	byCell := map[string]*gate.MagnitudeCell{}
	var cells []gate.MagnitudeCell
	names, vals := rec.Column(0).(*array.String), rec.Column(1).(*array.Float64)
	for r := 0; r < int(rec.NumRows()); r++ {
		k := strings.Clone(names.Value(r))
		if byCell[k] == nil {
			cells = append(cells, gate.MagnitudeCell{Key: k})
			byCell[k] = &cells[len(cells)-1]
		}
		if !vals.IsNull(r) {
			c := byCell[k]
			c.Contributions = append(c.Contributions, vals.Value(r))
		}
	}
	return cells, nil
}

// Recover removes what custom jobs left when the daemon died: a job's inputs (copies of
// granted columns) and its /out tmpfs do not outlive a crash.
func (s *Kind) Recover(ctx context.Context) error {
	work := filepath.Join(s.Config.DataDir, "work")
	if ents, err := os.ReadDir(work); err == nil {
		for _, e := range ents {
			dir := filepath.Join(work, e.Name())
			unix.Unmount(filepath.Join(dir, "out"), unix.MNT_DETACH)
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("remove the leftover work of job %s: %w", e.Name(), err)
			}
			s.Log.Warn("removed leftover custom-job work", "job", e.Name())
		}
	}
	return nil
}
