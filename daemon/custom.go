package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"golang.org/x/sys/unix"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
	"github.com/veil-dp/veil/grants"
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
// /out, a size-limited tmpfs. No network; the vendor learns only a status class (ok, failed,
// limit hit), never stdout, stderr or the exit code. The outputs face statistical disclosure
// checks (policy/sdc.go) and a reviewer; a release with findings needs an explicit override,
// which the audit log records. No differential-privacy claim is made for them.

const (
	maxProgramBytes = 256 << 20
	maxOutputFiles  = 100
	// rowCheckLimit bounds the input rows loaded for the row-level check; beyond it the
	// check compares the first rows only and says so.
	rowCheckLimit = 2_000_000
)

var runtimeName = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

func (s *Server) runtimesDir() string { return filepath.Join(s.cfg.DataDir, "runtimes") }

// runtimeRecord is a registered runtime, kept as <runtimes>/<name>.json next to its image.
type runtimeRecord struct {
	api.Runtime
	Path string `json:"path"` // the copied image's root
}

func (s *Server) loadRuntime(name string) (*runtimeRecord, error) {
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

// registerRuntime copies a runtime image from a path on the daemon's host into the data
// directory and records it under a name that never changes meaning.
func (s *Server) registerRuntime(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActRuntimeManage); err != nil {
		return err
	}
	var req api.RegisterRuntime
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if !runtimeName.MatchString(req.Name) {
		return fmt.Errorf("%w: a runtime name is lower-case letters, digits, '.', '_' or '-' (for example python3.11)", policy.ErrInvalid)
	}
	if !filepath.IsAbs(req.Path) {
		return fmt.Errorf("%w: give the image as an absolute path on the daemon's host (a directory or a .tar/.tar.gz)", policy.ErrInvalid)
	}
	for _, a := range req.Entrypoint {
		if a == "" || strings.ContainsRune(a, 0) {
			return fmt.Errorf("%w: the entrypoint has an empty argument", policy.ErrInvalid)
		}
	}
	if len(req.Entrypoint) > 0 && !filepath.IsAbs(req.Entrypoint[0]) {
		return fmt.Errorf("%w: the entrypoint's program must be an absolute path inside the image (for example /usr/bin/python3)", policy.ErrInvalid)
	}
	if err := os.MkdirAll(s.runtimesDir(), 0o711); err != nil {
		return err
	}
	// The name is claimed first (O_EXCL): two registrations of one name cannot both win.
	claim, err := os.OpenFile(filepath.Join(s.runtimesDir(), req.Name+".json"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: runtime %s is already registered; a name never changes meaning, register the new image under another name", policy.ErrConflict, req.Name)
		}
		return err
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
		return fmt.Errorf("%w: %v", policy.ErrInvalid, err)
	}
	if err := os.Chmod(s.runtimesDir(), 0o711); err != nil {
		return err
	}
	rec := runtimeRecord{Runtime: api.Runtime{Name: req.Name, Digest: img.Digest, Entrypoint: req.Entrypoint, Files: img.Files, Bytes: img.Bytes,
		RegisteredBy: p.ID, Registered: s.rec.Now()}, Path: img.Path}
	b, _ := json.MarshalIndent(rec, "", "  ")
	err = s.db.Update(r.Context(), func(tx store.Tx) error {
		if err := platform.WriteFileAtomic(filepath.Join(s.runtimesDir(), req.Name+".json"), b, 0o600); err != nil {
			return err
		}
		return s.rec.Record(r.Context(), tx, p, "runtime.register", "runtime/"+req.Name, map[string]string{"digest": img.Digest, "source": req.Path,
			"entrypoint": strings.Join(req.Entrypoint, " "), "files": fmt.Sprint(img.Files)})
	})
	if err != nil {
		os.RemoveAll(img.Path)
		return err
	}
	registered = true
	writeJSON(w, http.StatusCreated, rec.Runtime)
	return nil
}

func (s *Server) listRuntimes(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActRuntimeRead); err != nil {
		return err
	}
	ents, _ := os.ReadDir(s.runtimesDir())
	out := []api.Runtime{}
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			if rt, err := s.loadRuntime(name); err == nil {
				out = append(out, rt.Runtime)
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// customSpec is what a custom job runs; stored with the job.
type customSpec struct {
	Runtime  string   `json:"runtime"`
	Digest   string   `json:"digest"`  // of the image when the job was submitted
	Program  string   `json:"program"` // sha256 of the program, stored by the daemon
	Datasets []string `json:"datasets"`
}

func (s *Server) programPath(tenant, digest string) (string, error) {
	return s.cfg.TenantFile("programs", tenant, digest)
}

// uploadProgram stores a vendor's program for custom jobs under its digest, in the vendor's
// tenant area.
func (s *Server) uploadProgram(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobSubmit); err != nil {
		return err
	}
	body, err := readUpload(r, maxProgramBytes, "program")
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return fmt.Errorf("%w: the program is empty", policy.ErrInvalid)
	}
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	path, err := s.programPath(p.Tenant, digest)
	if err != nil {
		return err
	}
	// Executable: a static binary runs as the program itself (an interpreter reads a script).
	if err := platform.StoreUpload(path, body, 0o755); err != nil {
		return err
	}
	err = s.db.Update(r.Context(), func(tx store.Tx) error {
		return s.rec.Record(r.Context(), tx, p, "program.upload", "tenant/"+p.Tenant, map[string]string{"digest": digest, "bytes": fmt.Sprint(len(body))})
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.Program{Digest: digest, Bytes: int64(len(body))})
	return nil
}

// submitCustom validates a custom job and queues it.
func (s *Server) submitCustom(w http.ResponseWriter, r *http.Request, p policy.Principal, req api.SubmitJob) error {
	ctx := r.Context()
	c := req.Custom
	switch {
	case strings.TrimSpace(req.SQL) != "" || req.DP != nil || req.HE != nil || req.Train != nil:
		return fmt.Errorf("%w: a custom job is a runtime, a program and datasets only", policy.ErrInvalid)
	case c.Program == "":
		return fmt.Errorf("%w: the custom job has no program (--program FILE)", policy.ErrInvalid)
	case len(c.Datasets) == 0:
		return fmt.Errorf("%w: name the datasets the program reads (--dataset)", policy.ErrInvalid)
	}
	if len(req.IdempotencyKey) > 200 {
		return fmt.Errorf("%w: the idempotency key is longer than 200 characters", policy.ErrInvalid)
	}
	if s.box.Name() != "container" {
		return fmt.Errorf("%w: custom jobs run only in containers, and this daemon runs with isolation=%s", launch.ErrUnavailable, s.box.Name())
	}
	rt, err := s.loadRuntime(c.Runtime)
	if err != nil {
		return err
	}
	if err := s.grants.Settle(ctx); err != nil {
		return err
	}
	var g *policy.Grant
	err = s.db.View(ctx, func(tx store.Tx) error {
		var err error
		if g, err = grants.Load(ctx, tx, p, req.Grant); err != nil {
			return err
		}
		if err := g.Usable(s.rec.Now(), policy.ModeModel); err != nil {
			return err
		}
		for i, d := range c.Datasets {
			if _, ok := g.Access(d); !ok {
				return fmt.Errorf("%w: grant %s does not include dataset %q", policy.ErrInvalid, g.ID, d)
			}
			if slices.Contains(c.Datasets[:i], d) {
				return fmt.Errorf("%w: dataset %s is named twice", policy.ErrInvalid, d)
			}
		}
		schemas, _, err := catalog.Load(ctx, tx, c.Datasets)
		if err != nil {
			return err
		}
		return s.box.Admit(schemas)
	})
	if err != nil {
		return err
	}
	prog := c.Program
	path, err := s.programPath(p.Tenant, prog)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%w: no uploaded program %s for tenant %s; upload it first (veil job submit --program does)", policy.ErrInvalid, prog, p.Tenant)
	}
	spec := &customSpec{Runtime: rt.Name, Digest: rt.Digest, Program: prog, Datasets: c.Datasets}
	desc := fmt.Sprintf("custom program %s on runtime %s (%s) over %s", prog[:19], rt.Name, rt.Digest[:19], strings.Join(c.Datasets, ", "))
	now := s.rec.Now()
	j := &job{Job: store.Job{ID: platform.NewID("j"), GrantID: g.ID, Tenant: p.Tenant, Submitter: p.ID, Status: jobQueued,
		IdemKey: req.IdempotencyKey, Created: now}, body: jobBody{Mode: policy.ModeModel, SQL: desc, Custom: spec}}
	return s.queue(ctx, w, p, g, j, map[string]string{"grant": g.ID, "mode": "custom", "runtime": rt.Name, "image": rt.Digest, "program": prog,
		"datasets": strings.Join(c.Datasets, ",")}, nil)
}

// statusClass is all a vendor learns of how its program ended.
func statusClass(st sandbox.Status) string {
	switch st {
	case sandbox.StatusOK:
		return "ok"
	case sandbox.StatusFailed, sandbox.StatusKilled:
		return "failed"
	}
	return "limit hit"
}

// runCustom runs a custom job: projects the granted columns, runs the program on its image,
// reads /out, checks it, and puts it in review.
func (s *Server) runCustom(ctx context.Context, id, tenant string, sc engine.Scope, versions map[string]string, spec *customSpec) error {
	rt, err := s.loadRuntime(spec.Runtime)
	if err != nil || rt.Digest != spec.Digest {
		return launch.Fail(fmt.Sprintf("runtime %s is not the image the job was submitted for; submit it again", spec.Runtime), nil)
	}
	work := filepath.Join(s.cfg.DataDir, "work", id)
	if err := os.MkdirAll(work, 0o711); err != nil {
		return err
	}
	defer os.RemoveAll(work)
	in, out := filepath.Join(work, "in"), filepath.Join(work, "out")
	for _, d := range []string{in, out} {
		if err := os.Mkdir(d, 0o711); err != nil {
			return err
		}
	}
	// /out is a tmpfs of its own: the program cannot fill the host's disk.
	if err := unix.Mount("tmpfs", out, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, fmt.Sprintf("size=%dm,mode=0777", s.cfg.ScratchMB)); err != nil {
		return fmt.Errorf("mount /out: %w", err)
	}
	defer unix.Unmount(out, unix.MNT_DETACH)

	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return err
	}
	prog, err := s.programPath(tenant, spec.Program)
	if err != nil {
		return err
	}
	mounts := []sandbox.Mount{{Source: prog, Destination: "/job/program", Exec: true}, {Source: out, Destination: "/out", Writable: true}}
	var inputs []gate.SDCTable
	var inputRows int64
	limited := false
	for _, t := range sc.Tables {
		if !slices.Contains(spec.Datasets, t.Name) {
			continue
		}
		dst := filepath.Join(in, t.Name+".parquet")
		n, err := engine.Project(ctx, t, dst, hex.EncodeToString(secret[:]))
		if err != nil {
			return err
		}
		if err := os.Chmod(dst, 0o644); err != nil {
			return err
		}
		inputRows = max(inputRows, n)
		mounts = append(mounts, sandbox.Mount{Source: dst, Destination: "/in/" + t.Name + ".parquet"})
		names, cols, more, err := engine.TextColumns(ctx, dst, rowCheckLimit)
		if err != nil {
			return err
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
		return err
	}
	class := statusClass(res.Status)
	if class != "ok" {
		return launch.Fail("the program ended: "+class+" (its output and messages are not shown)", fmt.Errorf("status %s exit %d", res.Status, res.ExitCode))
	}
	files, err := readOutputs(out)
	if err != nil {
		return launch.Fail("the program's outputs cannot be read: "+err.Error(), nil)
	}
	findings, kinds, err := s.checkOutputs(ctx, id, sc, files, inputs, inputRows, limited)
	if err != nil {
		return err
	}
	rec := output.FilesRecord(files, kinds)
	defer rec.Release()
	var apiFindings []api.Finding
	for _, f := range findings {
		apiFindings = append(apiFindings, api.Finding{Output: f.Output, Rule: f.Rule, Where: f.Where, Message: f.Message})
	}
	meta := output.Meta{
		Mechanism: api.Mechanism{Kind: "custom", Groups: len(files), Custom: &api.CustomMechanism{Runtime: rt.Name, Digest: rt.Digest, Program: spec.Program,
			Status: class, Files: len(files), Findings: apiFindings,
			Statement: "A vendor's own program computed these files in a sandbox without network. No differential-privacy claim is made for them. " +
				fmt.Sprintf("Statistical disclosure checks found %d findings; a release with findings needs a reviewer's recorded override.", len(findings))}},
		Datasets: versions,
	}
	return s.toReview(ctx, id, rec, meta, func(tx store.Tx, cur *job) error {
		cur.Status = jobReview
		cur.body.Finished = s.rec.Now()
		// The vendor learns the status class and that outputs wait, not how many (the
		// program chooses that number: a channel), and only coarse timing.
		cur.body.Message = "the program ended: ok; its outputs wait for export review"
		cur.body.Metering = &api.Metering{WallMS: res.Usage.Wall.Round(10 * time.Second).Milliseconds()}
		if err := cur.put(ctx, tx, s.rec.Now()); err != nil {
			return err
		}
		return s.rec.Record(ctx, tx, platform.System, "job.gate", "job/"+id, map[string]string{"mechanism": "custom", "files": fmt.Sprint(len(files)),
			"findings": fmt.Sprint(len(findings)), "status": class})
	})
}

// readOutputs reads the regular files at the top of /out (at most maxOutputFiles).
func readOutputs(dir string) ([]output.File, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []output.File
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue // directories, links and the rest are not outputs
		}
		if len(files) == maxOutputFiles {
			return nil, fmt.Errorf("more than %d files in /out", maxOutputFiles)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files = append(files, output.File{Name: e.Name(), Data: b})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// manifest is what a program may write to /out/manifest.json to declare its outputs.
type manifest struct {
	Outputs []struct {
		File        string   `json:"file"`
		Kind        string   `json:"kind"` // frequency, magnitude, regression, other
		CountColumn string   `json:"count_column"`
		Dataset     string   `json:"dataset"`
		GroupBy     []string `json:"group_by"`
		Value       string   `json:"value"`
		NObs        int      `json:"n_obs"`
		NParams     int      `json:"n_params"`
	} `json:"outputs"`
}

// checkOutputs runs the disclosure checks: every CSV against the inputs (row-level data),
// each declared table by its kind; undeclared files are findings for the reviewer to judge.
func (s *Server) checkOutputs(ctx context.Context, id string, sc engine.Scope, files []output.File, inputs []gate.SDCTable, inputRows int64, limited bool) ([]gate.Finding, map[string]string, error) {
	rules := gate.DefaultSDCRules()
	var m manifest
	kinds := map[string]string{}
	var findings []gate.Finding
	for _, f := range files {
		if f.Name == "manifest.json" {
			if err := json.Unmarshal(f.Data, &m); err != nil {
				findings = append(findings, gate.Finding{Output: f.Name, Rule: "manifest", Message: "manifest.json is not valid JSON; every output is treated as undeclared"})
			}
			kinds[f.Name] = "manifest"
		}
	}
	declared := map[string]int{}
	for i, o := range m.Outputs {
		declared[o.File] = i
	}
	if limited {
		findings = append(findings, gate.Finding{Output: "*", Rule: "row_level_limited", Message: fmt.Sprintf("the inputs exceed %d rows: the row-level check compared the first rows only", rowCheckLimit)})
	}
	for _, f := range files {
		if f.Name == "manifest.json" {
			continue
		}
		var tbl *gate.SDCTable
		if strings.HasSuffix(f.Name, ".csv") {
			t, err := parseCSV(f.Name, f.Data)
			if err != nil {
				findings = append(findings, gate.Finding{Output: f.Name, Rule: "not_a_table", Message: "the file ends in .csv but is not readable as CSV: " + err.Error()})
			} else {
				tbl = t
				findings = append(findings, gate.CheckRowLevel(*t, inputs, inputRows)...)
			}
		}
		i, ok := declared[f.Name]
		if !ok {
			kinds[f.Name] = "other"
			findings = append(findings, gate.Finding{Output: f.Name, Rule: "undeclared", Message: "not declared in manifest.json; the reviewer must judge it by reading it"})
			continue
		}
		o := m.Outputs[i]
		kinds[f.Name] = o.Kind
		switch o.Kind {
		case "frequency":
			if tbl == nil {
				findings = append(findings, gate.Finding{Output: f.Name, Rule: "not_a_table", Message: "a frequency table must be a CSV file"})
				continue
			}
			findings = append(findings, gate.CheckFrequency(*tbl, o.CountColumn, rules)...)
		case "magnitude":
			cells, err := s.contributions(ctx, id, sc, o.Dataset, o.GroupBy, o.Value)
			if err != nil {
				findings = append(findings, gate.Finding{Output: f.Name, Rule: "not_a_magnitude", Message: "its declaration cannot be checked: " + err.Error()})
				continue
			}
			findings = append(findings, gate.CheckMagnitude(f.Name, cells, rules)...)
		case "regression":
			findings = append(findings, gate.CheckRegression(f.Name, o.NObs, o.NParams, rules)...)
			if int64(o.NObs) > inputRows {
				findings = append(findings, gate.Finding{Output: f.Name, Rule: "not_a_regression", Message: "it declares more observations than the inputs hold"})
			}
		case "other":
			findings = append(findings, gate.Finding{Output: f.Name, Rule: "undeclared", Message: "declared as other: no rule applies; the reviewer must judge it by reading it"})
		default:
			findings = append(findings, gate.Finding{Output: f.Name, Rule: "manifest", Message: fmt.Sprintf("unknown kind %q (frequency, magnitude, regression, other)", o.Kind)})
		}
	}
	return findings, kinds, nil
}

func parseCSV(name string, data []byte) (*gate.SDCTable, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil {
		return nil, errors.New("malformed CSV")
	}
	if len(recs) == 0 {
		return &gate.SDCTable{Name: name}, nil
	}
	return &gate.SDCTable{Name: name, Columns: recs[0], Rows: recs[1:]}, nil
}

// contributions recomputes, in a sandbox, each cell's contribution per privacy unit of a
// declared magnitude table: the dominance rules need them and a program's output cannot be
// trusted to give them.
func (s *Server) contributions(ctx context.Context, id string, sc engine.Scope, dataset string, groupBy []string, value string) ([]gate.MagnitudeCell, error) {
	var t *engine.Table
	for i := range sc.Tables {
		if sc.Tables[i].Name == dataset {
			t = &sc.Tables[i]
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
	if c, ok := cols[value]; !ok || !isNumericType(c.Type) {
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
	ejob := engine.Job{SQL: q, Tables: []engine.Table{*t}, Threads: s.cfg.JobThreads, MemoryLimitMB: s.cfg.JobMemoryMB * 3 / 4, MaxResultBytes: s.cfg.MaxResultByte}
	if _, err := s.box.Run(ctx, id+"-sdc", ejob, &buf); err != nil {
		return nil, err
	}
	rec, err := engine.ReadResult(&buf, s.cfg.MaxResultByte)
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
