package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/testdata"
)

// Options sets what a run measures.
type Options struct {
	Dir       string // where data and the daemon's state go
	Rows      int
	Units     int
	Groups    int
	Reps      int
	Binary    string   // the veil binary (runner)
	Isolation string   // container or process
	Beam      string   // the bench/beam binary (Privacy on Beam peer); empty: not measured
	Flights   string   // vega-datasets' flights-3m.parquet; empty: the real-data figures are not measured
	ScaleRows int      // rows of the scale benchmark (default 100M; persons are a tenth)
	Only      []string // the suites to run (see Suites); empty: all
	Command   string   // the command line that started the run, recorded with each figure
	Log       io.Writer
}

// suite is one group of figures. Each suite records its figures as soon as they are
// measured; a suite that fails does not stop the others.
type suite struct {
	name string
	what string
	run  func(ctx context.Context, e *env) error
}

// suites are run in this order. Suites that need the daemon start it on first use.
var suites = []suite{
	{"threshold", "threshold queries end to end against raw DuckDB", benchThreshold},
	{"dp", "dp queries end to end and their plans against the two-level floor", benchDP},
	{"beam", "the dp count against Privacy on Beam (needs --beam)", benchBeam},
	{"he", "encrypted scoring end to end", func(ctx context.Context, e *env) error {
		file, err := e.table(ctx, "bench_features")
		if err != nil {
			return err
		}
		d, err := e.daemon(ctx)
		if err != nil {
			return err
		}
		if err := d.register(ctx, "bench_features"); err != nil {
			return err
		}
		e.logf("encrypted scoring (he-score), %d rows x %d features...", heRows, testdata.HEFeatures)
		figs, err := benchHE(ctx, e.o, file, d.clients)
		if err != nil {
			return err
		}
		return e.add(figs...)
	}},
	{"linreg", "DP linear regression end to end", func(ctx context.Context, e *env) error {
		d, err := e.daemon(ctx)
		if err != nil {
			return err
		}
		e.logf("DP linear regression, %d rows...", linregRows)
		figs, err := benchLinreg(ctx, e.o, e.data, d.clients)
		if err != nil {
			return err
		}
		return e.add(figs...)
	}},
	{"accuracy", "the median relative error of a dp count", benchAccuracy},
	{"fixedcost", "where the fixed cost of a job goes: API, submission, validation, commits, sandbox, the rest", benchFixedCost},
	{"dpsplit", "the dp job on one row per person taken apart: plan, runner, pooled sandbox and end to end, settled and back to back, and what replacing a sandbox costs", benchDPSplit},
	{"runner", "the runner in process, as a process, in a fresh and in a pooled sandbox against raw DuckDB", benchRunner},
	{"realdata", "a threshold GROUP BY on vega-datasets' flights end to end and without the daemon (needs --flights)", benchRealData},
	{"load", "many tenants at once: 20 vendors of 5 tenants submitting threshold and dp jobs to one daemon (throughput, latency, fairness, memory)", benchLoad},
	{"scale", "dp and threshold group-bys on 100M rows under 2 GiB with a spill area, against raw DuckDB's floors", benchScale},
}

// Suites lists the suites a run can be limited to, with what each measures.
func Suites() [][2]string {
	var out [][2]string
	for _, s := range suites {
		out = append(out, [2]string{s.name, s.what})
	}
	return out
}

// env is what the suites of one run share: the options, the results, the generated data,
// baselines already measured, and the daemon once a suite has started it.
type env struct {
	o    Options
	res  *Results
	st   stamp
	data string

	raw map[string]time.Duration // raw DuckDB medians by query, measured once per run
	d   *daemonEnv
	sb  *sbEnv
}

func (e *env) logf(format string, a ...any) { fmt.Fprintf(e.o.Log, format+"\n", a...) }

// add records figures at once, so that nothing measured is lost if a later step fails.
func (e *env) add(figs ...Figure) error {
	for _, f := range figs {
		e.logf("  %s = %.4g %s", f.Name, f.Value, f.Unit)
	}
	return e.res.Add(figs...)
}

// rawQuery is timeQuery, measured once per run for each query (several suites compare
// against the same baseline).
func (e *env) rawQuery(ctx context.Context, what, q string) (time.Duration, error) {
	if d, ok := e.raw[q]; ok {
		return d, nil
	}
	e.logf("raw DuckDB, %s...", what)
	d, err := timeQuery(ctx, q, e.o.Reps)
	if err != nil {
		return 0, fmt.Errorf("raw DuckDB, %s: %w", what, err)
	}
	e.raw[q] = d
	return d, nil
}

// table returns the Parquet file of one of the generated benchmark tables, generating it
// (and its schema) if it is not there yet.
func (e *env) table(ctx context.Context, name string) (string, error) {
	file := filepath.Join(e.data, name+".parquet")
	if _, err := os.Stat(file); err == nil {
		return file, nil
	}
	o := e.o
	var err error
	switch name {
	case "bench_events":
		e.logf("generating bench_events: %d rows, %d persons, %d groups...", o.Rows, o.Units, o.Groups)
		err = testdata.GenerateBench(ctx, e.data, o.Rows, o.Units, o.Groups)
	case "bench_persons": // the same data one row per person (the direct plan)
		e.logf("generating bench_persons: %d rows, one per person...", o.Rows)
		err = testdata.GenerateBenchTable(ctx, e.data, name, o.Rows, o.Rows, o.Groups)
	case "bench_small": // what the Privacy on Beam peer runs on
		e.logf("generating bench_small: 1000000 rows, 100000 persons...")
		err = testdata.GenerateBenchTable(ctx, e.data, name, 1_000_000, 100_000, o.Groups)
	case "bench_features":
		e.logf("generating bench_features: %d rows, %d features...", heRows, testdata.HEFeatures)
		err = testdata.GenerateHEBench(ctx, e.data, heRows, o.Groups)
	default:
		return "", fmt.Errorf("no generator for table %s", name)
	}
	if err != nil {
		return "", fmt.Errorf("generate %s: %w", name, err)
	}
	return file, nil
}

// Run runs the suites o asks for and records every figure in res as soon as it is measured.
// It returns the errors of the suites that failed, after running all the others.
func Run(ctx context.Context, o Options, res *Results) (retErr error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	o.Dir = dir
	if o.Log == nil {
		o.Log = io.Discard
	}
	e := &env{o: o, res: res, st: newStamp(o.Command), data: filepath.Join(dir, "data"), raw: map[string]time.Duration{}}
	if err := os.MkdirAll(e.data, 0o755); err != nil {
		return err
	}
	run := map[string]bool{}
	for _, name := range o.Only {
		if !slices.ContainsFunc(suites, func(s suite) bool { return s.name == name }) {
			var names []string
			for _, s := range suites {
				names = append(names, s.name)
			}
			return fmt.Errorf("no benchmark suite %q (the suites are %s)", name, strings.Join(names, ", "))
		}
		run[name] = true
	}
	defer func() { retErr = errors.Join(retErr, e.stopDaemon(), e.stopSandboxes()) }()
	var errs []error
	for _, s := range suites {
		if len(run) > 0 && !run[s.name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		e.logf("== %s: %s", s.name, s.what)
		if err := s.run(ctx, e); err != nil {
			e.logf("suite %s failed: %v", s.name, err)
			errs = append(errs, fmt.Errorf("suite %s: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}

// median is the middle of d (the mean of the two middle values when len(d) is even).
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
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
	PrepareP50     float64 `json:"sandbox_prepare_p50_ms"`
	StartP50       float64 `json:"sandbox_start_p50_ms"`
	RunP50         float64 `json:"sandbox_run_p50_ms"`
	TeardownP50    float64 `json:"sandbox_teardown_p50_ms"`
	PoolP50        float64 `json:"pool_p50_ms"`
	PoolP95        float64 `json:"pool_p95_ms"`
	PoolOvhP50     float64 `json:"pool_overhead_p50_ms"`
	PoolOvhP95     float64 `json:"pool_overhead_p95_ms"`
	PoolHandoffP50 float64 `json:"pool_handoff_p50_ms"`
	PreopenP50     float64 `json:"runner_preopen_p50_ms"`
	LateOpenP50    float64 `json:"runner_late_open_p50_ms"`
	RunnerRuns     int     `json:"runner_runs"`
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
	if r.PoolP50 > 0 {
		figs = append(figs,
			f("sandbox_pool_overhead_p50_ms", r.PoolOvhP50, "ms", "same job as a plain child process", r.LocalP50,
				fmt.Sprintf("the trivial job handed to a sandbox prepared ahead (pool of 2, refilled between jobs): p50 %.1f ms minus unsandboxed p50 %.1f ms (hand-over %.2f ms); a fresh sandbox's p50 is %.1f ms: prepare %.1f, start %.1f, run %.1f, teardown %.1f",
					r.PoolP50, r.LocalP50, r.PoolHandoffP50, r.SandboxP50, r.PrepareP50, r.StartP50, r.RunP50, r.TeardownP50)),
			f("sandbox_pool_overhead_p95_ms", r.PoolOvhP95, "ms", "same job as a plain child process", r.LocalP95,
				fmt.Sprintf("pooled p95 %.1f ms minus unsandboxed p95 %.1f ms", r.PoolP95, r.LocalP95)))
	}
	if r.PreopenP50 > 0 && r.LateOpenP50 > 0 {
		figs = append(figs, f("runner_preopen_vs_late_open_ratio", r.PreopenP50/r.LateOpenP50, "ratio", "the same runner opening DuckDB after reading its job", r.LateOpenP50,
			fmt.Sprintf("runner in a pooled sandbox opening DuckDB before its job arrives (engine.RunnerMain) p50 %.1f ms vs after (the daemon's runner today) p50 %.1f ms, %d interleaved runs of the flights GROUP BY", r.PreopenP50, r.LateOpenP50, r.RunnerRuns)))
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
