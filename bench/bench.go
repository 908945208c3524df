package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/dp"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/testdata"
)

// Options sets what a run measures.
type Options struct {
	Dir       string // where data and the daemon's state go
	OutDir    string // where RESULTS.md and results.json are written
	Rows      int
	Units     int
	Groups    int
	Reps      int
	Binary    string // the veil binary (runner)
	Isolation string // container or process
	Beam      string // the bench/beam binary (Privacy on Beam peer); empty: not measured
	Command   string // the command line that started the run, recorded with each figure
	Log       io.Writer
}

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

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// timeQuery runs q on a fresh raw DuckDB reps times (after one warm-up) and returns the median.
func timeQuery(ctx context.Context, q string, reps int, setup ...string) (time.Duration, error) {
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return 0, err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, st := range append([]string{"SET threads=2"}, setup...) {
		if _, err := db.ExecContext(ctx, st); err != nil {
			return 0, err
		}
	}
	var ds []time.Duration
	for i := 0; i <= reps; i++ {
		start := time.Now()
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			return 0, err
		}
		for rows.Next() {
		}
		rows.Close()
		if i > 0 {
			ds = append(ds, time.Since(start))
		}
	}
	return median(ds), nil
}

// timePlan validates the bench DP query (COUNT and SUM per group, ε=1, max_groups 1) for
// the table in file, as the daemon does for a table whose measured maximum of rows per person
// is maxRows, and times the plan the daemon would run (the direct plan where maxRows is 1) on
// raw DuckDB, over a view of the file, as timeQuery times the baselines: the SQL's cost alone,
// without the daemon, the sandbox and a fresh database per job.
func timePlan(ctx context.Context, file, table string, maxRows int64, reps int) (time.Duration, error) {
	v, err := engine.NewValidator()
	if err != nil {
		return 0, err
	}
	defer v.Close()
	t := engine.Table{Name: table, Files: []string{file}, MaxRowsPerUnit: maxRows, Unit: "person", Columns: []engine.Column{
		{Name: "person_id", Type: "BIGINT", PrivacyUnit: true}, {Name: "grp", Type: "VARCHAR"}, {Name: "value", Type: "DOUBLE", Bounds: []float64{0, 1000}}}}
	sc := engine.Scope{Mode: "dp", Tables: []engine.Table{t}}
	plan, err := v.ValidateDP(ctx, "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM "+table+" GROUP BY grp", sc,
		engine.DPOptions{Epsilon: 1, Delta: 1e-8, MaxGroups: 1, MaxRows: 10})
	if err != nil {
		return 0, err
	}
	q := plan.SQL
	if maxRows == 1 {
		q = plan.DP.DirectSQL
	}
	return timeQuery(ctx, q, reps, "SET VARIABLE veil_secret = 12345::BIGINT",
		fmt.Sprintf("CREATE VIEW %s AS SELECT person_id, grp, value FROM read_parquet('%s')", table, file))
}

// beamRun is what bench/beam prints.
type beamRun struct {
	Median float64   `json:"pob_count_seconds_median"`
	Runs   []float64 `json:"pob_count_seconds"`
	Rows   int64     `json:"rows"`
	Beam   string    `json:"beam_version"`
	PoB    string    `json:"privacy_on_beam_version"`
	Reader string    `json:"reader"`
}

// runBeam runs the Privacy on Beam peer (bench/beam, its own Go module) on file.
func runBeam(ctx context.Context, bin, file string, reps int) (*beamRun, error) {
	cmd := exec.CommandContext(ctx, bin, "-parquet", file, "-json", "-reps", fmt.Sprint(reps), "-epsilon", "1", "-delta", "1e-8", "-max-groups", "1", "-max-rows", "10")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	var r beamRun
	if err := json.Unmarshal(out, &r); err != nil || r.Median <= 0 {
		return nil, fmt.Errorf("%s printed no result (%v): %s", bin, err, out)
	}
	return &r, nil
}

// Run measures the threshold path and writes the results.
func Run(ctx context.Context, o Options) ([]Figure, error) {
	logf := func(format string, a ...any) { fmt.Fprintf(o.Log, format+"\n", a...) }
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	o.Dir = dir
	data := filepath.Join(o.Dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	file := filepath.Join(data, "bench_events.parquet")
	if _, err := os.Stat(file); err != nil {
		logf("generating %d rows, %d persons, %d groups...", o.Rows, o.Units, o.Groups)
		if err := testdata.GenerateBench(ctx, data, o.Rows, o.Units, o.Groups); err != nil {
			return nil, err
		}
	}
	// The same data one row per person (the direct plan), and the smaller table the Privacy
	// on Beam peer runs on (1e6 rows, 1e5 persons).
	onerow, small := filepath.Join(data, "bench_persons.parquet"), filepath.Join(data, "bench_small.parquet")
	for _, t := range []struct {
		name, file        string
		rows, units, grps int
	}{{"bench_persons", onerow, o.Rows, o.Rows, o.Groups}, {"bench_small", small, 1_000_000, 100_000, o.Groups}} {
		if _, err := os.Stat(t.file); err != nil {
			logf("generating %s: %d rows, %d persons...", t.name, t.rows, t.units)
			if err := testdata.GenerateBenchTable(ctx, data, t.name, t.rows, t.units, t.grps); err != nil {
				return nil, err
			}
		}
	}
	features := filepath.Join(data, "bench_features.parquet")
	if _, err := os.Stat(features); err != nil {
		logf("generating bench_features: %d rows, %d features...", heRows, testdata.HEFeatures)
		if err := testdata.GenerateHEBench(ctx, data, heRows, o.Groups); err != nil {
			return nil, err
		}
	}
	schema, err := os.ReadFile(filepath.Join(data, "bench_events.yaml"))
	if err != nil {
		return nil, err
	}

	// Start a daemon in this process, on a Unix socket, as in production.
	state, err := os.MkdirTemp(o.Dir, "state-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(state)
	if err := os.Chmod(state, 0o711); err != nil { // the sandbox's unprivileged root traverses it
		return nil, err
	}
	cfg := daemon.Defaults(state)
	cfg.Isolation, cfg.Binary, cfg.Workers, cfg.JobThreads, cfg.JobMemoryMB = o.Isolation, o.Binary, 1, 2, 4096
	tok, err := daemon.Init(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// The bench data is generated, so the runner's stderr of a failed job may be shown:
	// warnings go to the bench's log, where whoever runs it can see why a job failed.
	cfg.LogRunnerOutput = true
	srv, err := daemon.New(ctx, cfg, slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return nil, err
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	defer func() { stop(); <-done; srv.Close() }()
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(cfg.Socket); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	op, _ := client.New("unix://"+cfg.Socket, tok)
	var mkErr error
	mk := func(role, tenant string) *client.Client {
		p, err := op.CreatePrincipal(ctx, api.CreatePrincipal{Name: role, Role: role, Tenant: tenant})
		if err != nil {
			mkErr = err
			return nil
		}
		c, _ := client.New("unix://"+cfg.Socket, p.Token)
		return c
	}
	prov, auth, vendor, rev := mk("provider", providerLine(schema)), mk("authority", ""), mk("vendor", "bench"), mk("reviewer", "")
	if mkErr != nil {
		return nil, mkErr
	}
	for _, name := range []string{"bench_events", "bench_persons", "bench_small", "bench_features"} {
		sch, err := os.ReadFile(filepath.Join(data, name+".yaml"))
		if err != nil {
			return nil, err
		}
		if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: string(sch), Files: []string{filepath.Join(data, name+".parquet")}}); err != nil {
			return nil, err
		}
	}
	gr, err := vendor.ApplyGrant(ctx, api.ApplyGrant{Scenario: "bench", Purpose: "benchmark", Modes: []string{"threshold"}, K: 10, RoundTo: 1, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: "bench_events", Columns: []string{"grp", "value"}}}})
	if err != nil {
		return nil, err
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			return nil, err
		}
	}
	e2e := func(q string) (time.Duration, error) {
		var ds []time.Duration
		for i := 0; i <= o.Reps; i++ {
			start := time.Now()
			j, err := vendor.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q})
			if err != nil {
				return 0, err
			}
			j, err = vendor.Wait(ctx, j.ID, nil)
			if err != nil {
				return 0, err
			}
			if j.Status != "review" {
				return 0, fmt.Errorf("bench job ended %s: %s", j.Status, j.Message)
			}
			if i > 0 {
				ds = append(ds, time.Since(start))
			}
		}
		return median(ds), nil
	}

	src := "read_parquet('" + file + "')"
	plain := "SELECT grp, COUNT(*), SUM(value) FROM " + src + " GROUP BY grp"
	floor := "SELECT grp, COUNT(*), SUM(value), COUNT(DISTINCT person_id) FROM " + src + " GROUP BY grp"
	logf("raw DuckDB, plain aggregate...")
	tPlain, err := timeQuery(ctx, plain, o.Reps)
	if err != nil {
		return nil, err
	}
	logf("raw DuckDB, with COUNT(DISTINCT person)...")
	tFloor, err := timeQuery(ctx, floor, o.Reps)
	if err != nil {
		return nil, err
	}
	logf("Veil end to end (%s)...", o.Isolation)
	tVeil, err := e2e("SELECT grp, COUNT(*), SUM(value) FROM bench_events GROUP BY grp")
	if err != nil {
		return nil, err
	}
	logf("fixed per-job cost...")
	tFixed, err := e2e("SELECT grp, COUNT(*) FROM bench_events WHERE value < -1 GROUP BY grp")
	if err != nil {
		return nil, err
	}
	tEmpty, err := timeQuery(ctx, "SELECT grp, COUNT(*), COUNT(DISTINCT person_id) FROM "+src+" WHERE value < -1 GROUP BY grp", o.Reps)
	if err != nil {
		return nil, err
	}

	// Differential privacy: the same table under a dp grant. The floor every user-level DP
	// system pays is aggregating per (person, group) before per group.
	dpGrant := func(dataset string) (string, error) {
		g, err := vendor.ApplyGrant(ctx, api.ApplyGrant{Scenario: "bench dp " + dataset, Purpose: "benchmark", Modes: []string{"dp"}, Epsilon: 10, Delta: 1e-7, MaxQuery: 1, ValidFor: "1d",
			Datasets: []api.DatasetAccess{{Name: dataset, Columns: []string{"grp", "value"}}}})
		if err != nil {
			return "", err
		}
		id := g["id"].(string)
		for _, c := range []*client.Client{op, auth, prov} {
			if _, err := c.ActOnGrant(ctx, id, "approve", ""); err != nil {
				return "", err
			}
		}
		return id, nil
	}
	// dpE2E runs a dp job reps times after a warm-up; the grant's ε=10 pays for 10 runs of
	// ε=1, so at most 8 measured runs.
	dpE2E := func(dataset, q string) (time.Duration, error) {
		gid, err := dpGrant(dataset)
		if err != nil {
			return 0, err
		}
		var ds []time.Duration
		for i := 0; i <= min(o.Reps, 8); i++ {
			start := time.Now()
			j, err := vendor.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 1, Delta: 1e-8, MaxGroups: 1, MaxRows: 10}})
			if err != nil {
				return 0, err
			}
			if j, err = vendor.Wait(ctx, j.ID, nil); err != nil {
				return 0, err
			}
			if j.Status != "review" {
				return 0, fmt.Errorf("bench dp job on %s ended %s: %s", dataset, j.Status, j.Message)
			}
			if i > 0 {
				ds = append(ds, time.Since(start))
			}
		}
		return median(ds), nil
	}
	logf("Veil end to end, dp (%s)...", o.Isolation)
	tDP, err := dpE2E("bench_events", "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM bench_events GROUP BY grp")
	if err != nil {
		return nil, err
	}
	logf("raw DuckDB, two-level aggregate (the DP floor)...")
	tTwo, err := timeQuery(ctx, "SELECT grp, SUM(n), SUM(v) FROM (SELECT person_id, grp, COUNT(*) AS n, SUM(value) AS v FROM "+src+" GROUP BY person_id, grp) GROUP BY grp", o.Reps)
	if err != nil {
		return nil, err
	}
	// The same plans without the daemon and the sandbox: the runner's code in this process,
	// to separate the SQL's cost from the job's.
	logf("dp plans in process (runner code, no sandbox)...")
	tDPSQL, err := timePlan(ctx, file, "bench_events", 10, o.Reps)
	if err != nil {
		return nil, err
	}
	onerowSrc := "read_parquet('" + onerow + "')"
	tOnePlain, err := timeQuery(ctx, "SELECT grp, COUNT(*), SUM(value) FROM "+onerowSrc+" GROUP BY grp", o.Reps)
	if err != nil {
		return nil, err
	}
	tOneSQL, err := timePlan(ctx, onerow, "bench_persons", 1, o.Reps)
	if err != nil {
		return nil, err
	}
	logf("Veil end to end, dp on one row per person...")
	tOneE2E, err := dpE2E("bench_persons", "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM bench_persons GROUP BY grp")
	if err != nil {
		return nil, err
	}
	var beamFigs []Figure
	if o.Beam != "" {
		logf("Veil end to end, dp count on %s...", small)
		tSmall, err := dpE2E("bench_small", "SELECT grp, COUNT(*) AS n FROM bench_small GROUP BY grp")
		if err != nil {
			return nil, err
		}
		logf("Privacy on Beam, the same count (%s)...", o.Beam)
		pob, err := runBeam(ctx, o.Beam, small, min(o.Reps, 3))
		if err != nil {
			return nil, err
		}
		tPoB := time.Duration(pob.Median * float64(time.Second))
		beamFigs = append(beamFigs, Figure{Name: "dp_vs_privacy_on_beam_speedup", Value: float64(tPoB) / float64(tSmall), Unit: "times faster",
			BaseName: fmt.Sprintf("Privacy on Beam %s, Beam %s direct runner (%s reader)", pob.PoB, pob.Beam, pob.Reader), Baseline: ms(tPoB),
			Note: fmt.Sprintf("DP COUNT(*) per group, ε=1, δ=1e-8, max_groups 1, max_rows 10, %d rows, 100000 persons, Parquet: Privacy on Beam %.0f ms (median of %d) vs Veil end to end %.1f ms (isolation=%s)",
				pob.Rows, ms(tPoB), len(pob.Runs), ms(tSmall), o.Isolation)})
	}
	logf("encrypted scoring (he-score), %d rows x %d features...", heRows, testdata.HEFeatures)
	heFigs, err := benchHE(ctx, o, features, heClients{op: op, auth: auth, prov: prov, vendor: vendor, rev: rev})
	if err != nil {
		return nil, err
	}

	logf("DP linear regression, %d rows...", linregRows)
	lrFigs, err := benchLinreg(ctx, o, data, heClients{op: op, auth: auth, prov: prov, vendor: vendor, rev: rev})
	if err != nil {
		return nil, err
	}
	heFigs = append(heFigs, lrFigs...)

	// Accuracy of the released count of persons at ε=1 (one group per person, a public
	// domain: Laplace with scale 1), measured on the mechanism the gate calls.
	acc := map[int]float64{}
	for _, n := range []int{100, 1000, 10000} {
		errs := make([]float64, 2001)
		for i := range errs {
			r, err := dp.Count(int64(n), 1, 1, 1, 0, dp.Laplace)
			if err != nil {
				return nil, err
			}
			errs[i] = math.Abs(r.Value-float64(n)) / float64(n)
		}
		sort.Float64s(errs)
		acc[n] = errs[len(errs)/2]
	}

	now, m := time.Now().UTC().Format("2006-01-02"), machine()
	fig := func(name string, v float64, unit, bname string, b float64, note string) Figure {
		f := Figure{Name: name, Value: v, Unit: unit, BaseName: bname, Baseline: b, Command: o.Command, Machine: m, Date: now, Note: note}
		if b > 0 {
			f.Ratio = v / b
			f.Value, f.Unit = f.Ratio, "ratio"
			f.Note = strings.TrimSpace(fmt.Sprintf("Veil %.1f ms vs %s %.1f ms. %s", v, bname, b, note))
		}
		return f
	}
	figs := []Figure{
		fig("threshold_e2e_vs_floor_ratio", ms(tVeil), "ms", "raw DuckDB GROUP BY with COUNT(DISTINCT person)", ms(tFloor),
			fmt.Sprintf("%d rows, %d persons, %d groups, Parquet; isolation=%s; submit to protected output in the review queue", o.Rows, o.Units, o.Groups, o.Isolation)),
		fig("threshold_e2e_vs_raw_ratio", ms(tVeil), "ms", "raw DuckDB plain GROUP BY (COUNT, SUM)", ms(tPlain), ""),
		{Name: "job_fixed_cost_ms", Value: ms(tFixed - tEmpty), Unit: "ms", Command: o.Command, Machine: m, Date: now,
			Note: fmt.Sprintf("end-to-end time of a query that selects no rows (%.1f ms) minus raw DuckDB's time for it (%.1f ms): API, validation, store, runner start, gate, audit", ms(tFixed), ms(tEmpty))},
		fig("dp_groupby_vs_floor_ratio", ms(tDP), "ms", "raw DuckDB two-level aggregate per (person, group) then per group", ms(tTwo),
			fmt.Sprintf("DP COUNT(*) and SUM per group, max_groups 1, max_rows 10, partition selection, ε=1; isolation=%s; submit to noisy output in the review queue", o.Isolation)),
		fig("dp_groupby_vs_raw_ratio", ms(tDP), "ms", "raw DuckDB plain GROUP BY (COUNT, SUM)", ms(tPlain), ""),
		fig("dp_groupby_sql_vs_floor_ratio", ms(tDPSQL), "ms", "raw DuckDB two-level aggregate per (person, group) then per group", ms(tTwo),
			"the bounded dp plan's SQL alone on raw DuckDB over a view of the file (no daemon, no sandbox), max_groups 1, max_rows 10"),
		fig("dp_onerow_vs_raw_ratio", ms(tOneSQL), "ms", "raw DuckDB plain GROUP BY (COUNT, SUM) on the same table", ms(tOnePlain),
			fmt.Sprintf("%d rows, one per person (declared and measured): the direct dp plan's SQL, which skips the bounding pass, on raw DuckDB over a view of the file", o.Rows)),
		fig("dp_onerow_e2e_vs_raw_ratio", ms(tOneE2E), "ms", "raw DuckDB plain GROUP BY (COUNT, SUM) on the same table", ms(tOnePlain),
			fmt.Sprintf("the same dp job end to end (isolation=%s), fixed per-job cost included", o.Isolation)),
	}
	figs = append(figs, beamFigs...)
	figs = append(figs, heFigs...)
	for _, n := range []int{100, 1000, 10000} {
		figs = append(figs, Figure{Name: fmt.Sprintf("dp_count_median_rel_error_eps1_n%d", n), Value: acc[n], Unit: "relative error", Command: o.Command, Machine: m, Date: now,
			Note: "median |released - exact| / exact of COUNT(DISTINCT person) per group at ε=1 over 2001 draws of the gate's mechanism (Laplace, scale 1)"})
	}
	return figs, nil
}

func providerLine(schema []byte) string {
	for _, l := range strings.Split(string(schema), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "provider:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Write merges figs into results.json (replacing figures of the same name) and rewrites
// RESULTS.md from it.
func Write(dir string, figs []Figure) error {
	path := filepath.Join(dir, "results.json")
	var all []Figure
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, &all)
	}
	for _, f := range figs {
		all = slices.DeleteFunc(all, func(x Figure) bool { return x.Name == f.Name })
		all = append(all, f)
	}
	slices.SortFunc(all, func(a, b Figure) int { return strings.Compare(a.Name, b.Name) })
	b, _ := json.MarshalIndent(all, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	var md strings.Builder
	md.WriteString("# Benchmark results\n\nWritten by `make bench` (`veil bench`); every figure was measured by the command beside it, with its baseline in the same run. Ratios are Veil's time over the baseline's (lower is better).\n\n")
	md.WriteString("| figure | value | unit | baseline | note | machine | date | command |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, f := range all {
		fmt.Fprintf(&md, "| `%s` | %.3g | %s | %s | %s | %s | %s | `%s` |\n", f.Name, f.Value, f.Unit, f.BaseName, f.Note, f.Machine, f.Date, f.Command)
	}
	return os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(md.String()), 0o644)
}

// sandboxRun is what bench/sandbox prints.
type sandboxRun struct {
	Runs           int     `json:"runs"`
	SandboxP50     float64 `json:"sandbox_p50_ms"`
	SandboxP95     float64 `json:"sandbox_p95_ms"`
	LocalP50       float64 `json:"local_p50_ms"`
	LocalP95       float64 `json:"local_p95_ms"`
	OverheadP50    float64 `json:"sandbox_overhead_p50_ms"`
	OverheadP95    float64 `json:"sandbox_overhead_p95_ms"`
	RuncP50        float64 `json:"runc_cli_p50_ms"`
	RuncP95        float64 `json:"runc_cli_p95_ms"`
	Concurrent20OK bool    `json:"sandbox_concurrent20_ok"`
	Concurrent20MS float64 `json:"sandbox_concurrent20_wall_ms"`
	UserNamespace  bool    `json:"sandbox_user_namespace"`
	RuncError      string  `json:"runc_cli_error,omitempty"`
}

// SandboxFigures turns the output of bench/sandbox (one JSON object, written by the command
// given) into figures.
func SandboxFigures(path, command string) ([]Figure, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r sandboxRun
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	now, m := time.Now().UTC().Format("2006-01-02"), machine()
	note := fmt.Sprintf("%d runs of a trivial job: create, run, destroy; seccomp, user namespace=%v and all limits on", r.Runs, r.UserNamespace)
	f := func(name string, v float64, unit, bname string, b float64, note string) Figure {
		x := Figure{Name: name, Value: v, Unit: unit, BaseName: bname, Baseline: b, Command: command, Machine: m, Date: now, Note: note}
		if b > 0 && unit == "ratio" {
			x.Ratio = v
		}
		return x
	}
	ok := 0.0
	if r.Concurrent20OK {
		ok = 1
	}
	figs := []Figure{
		f("sandbox_overhead_p50_ms", r.OverheadP50, "ms", "same runner as a plain child process", r.LocalP50,
			fmt.Sprintf("sandboxed p50 %.1f ms minus unsandboxed p50 %.1f ms; %s", r.SandboxP50, r.LocalP50, note)),
		f("sandbox_overhead_p95_ms", r.OverheadP95, "ms", "same runner as a plain child process", r.LocalP95,
			fmt.Sprintf("sandboxed p95 %.1f ms minus unsandboxed p95 %.1f ms", r.SandboxP95, r.LocalP95)),
		f("sandbox_concurrent20_ok", ok, "bool", "", 0, fmt.Sprintf("20 concurrent sandboxed jobs all ended ok (wall %.0f ms)", r.Concurrent20MS)),
	}
	if r.RuncP50 > 0 {
		figs = append(figs,
			f("sandbox_vs_runc_cli_p50_ratio", r.SandboxP50/r.RuncP50, "ratio", "runc CLI (Debian package) running /bin/true", r.RuncP50,
				fmt.Sprintf("Veil sandbox p50 %.1f ms (create to destroy) vs runc run p50 %.1f ms", r.SandboxP50, r.RuncP50)),
			f("sandbox_vs_runc_cli_p95_ratio", r.SandboxP95/r.RuncP95, "ratio", "runc CLI (Debian package) running /bin/true", r.RuncP95,
				fmt.Sprintf("Veil sandbox p95 %.1f ms vs runc run p95 %.1f ms", r.SandboxP95, r.RuncP95)))
	} else if r.RuncError != "" {
		figs = append(figs, f("sandbox_vs_runc_cli_p50_ratio", 0, "ratio", "runc CLI", 0, "runc CLI not measured: "+r.RuncError))
	}
	return figs, nil
}
