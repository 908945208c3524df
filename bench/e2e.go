package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/dp"
	"github.com/veil-dp/veil/engine"
)

// benchProvider is the provider tenant of every generated benchmark table.
const benchProvider = "bench"

// daemonEnv is a daemon started in this process on a Unix socket, as in production, with a
// principal of each role.
type daemonEnv struct {
	srv        *daemon.Server
	clients    heClients
	registered map[string]bool
	state      string
	stop       func() error
}

// daemon starts the run's daemon on first use, with the default pool of sandboxes
// prepared ahead.
func (e *env) daemon(ctx context.Context) (*daemonEnv, error) {
	if e.d != nil {
		return e.d, nil
	}
	d, err := e.newDaemon(ctx, daemon.Defaults("").SandboxPool)
	if err != nil {
		return nil, err
	}
	e.d = d
	return d, nil
}

// served is a daemon started by serve: its server, state directory, socket, operator's client,
// and how to stop it (which removes its state).
type served struct {
	srv    *daemon.Server
	cfg    daemon.Config
	state  string
	socket string // unix://…
	op     *client.Client
	stop   func() error
}

// serve initialises a daemon in a new state directory under the run's --dir (named prefix…),
// with the defaults edited by edit, serves it until stop and waits for its socket. The
// release quantum is off: the benchmarks measure the platform's own cost, and a deliberate
// delay of what a vendor sees would only add its rounding.
func (e *env) serve(ctx context.Context, prefix string, edit func(*daemon.Config)) (*served, error) {
	state, err := os.MkdirTemp(e.o.Dir, prefix)
	if err != nil {
		return nil, err
	}
	d := &served{state: state, stop: func() error { return os.RemoveAll(state) }}
	fail := func(err error) (*served, error) { return nil, errors.Join(err, d.stop()) }
	if err := os.Chmod(state, 0o711); err != nil { // the sandbox's unprivileged root traverses it
		return fail(err)
	}
	cfg := daemon.Defaults(state)
	cfg.Isolation, cfg.Binary = e.o.Isolation, e.o.Binary
	cfg.ExactReleaseTimingForTests = true
	if edit != nil {
		edit(&cfg)
	}
	tok, err := daemon.Init(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	srv, err := daemon.New(ctx, cfg, slog.New(slog.NewTextHandler(e.o.Log, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return fail(err)
	}
	d.srv = srv
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx) }()
	d.stop = func() error {
		cancel()
		err := <-done
		srv.Close()
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return errors.Join(err, os.RemoveAll(state))
	}
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(cfg.Socket); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.cfg, d.socket = cfg, "unix://"+cfg.Socket
	if d.op, err = client.New(d.socket, tok); err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return d, nil
}

// newDaemon starts a daemon of its own that keeps pool sandboxes prepared ahead (0: a fresh
// sandbox for each job); its caller stops it.
func (e *env) newDaemon(ctx context.Context, pool int) (*daemonEnv, error) {
	return e.newDaemonWith(ctx, func(cfg *daemon.Config) {
		cfg.Workers, cfg.JobThreads, cfg.JobMemoryMB = 1, 2, 4096
		cfg.SandboxPool = pool
	})
}

// newDaemonWith starts a daemon of its own with the default configuration as edit changes
// it; its caller stops it.
func (e *env) newDaemonWith(ctx context.Context, edit func(*daemon.Config)) (*daemonEnv, error) {
	sv, err := e.serve(ctx, "state-", func(cfg *daemon.Config) {
		// The bench data is generated, so the runner's stderr of a failed job may be shown:
		// warnings go to the bench's log, where whoever runs it can see why a job failed.
		cfg.LogRunnerOutput = true
		edit(cfg)
	})
	if err != nil {
		return nil, err
	}
	d := &daemonEnv{registered: map[string]bool{}, srv: sv.srv, state: sv.state, stop: sv.stop}
	fail := func(err error) (*daemonEnv, error) {
		return nil, errors.Join(err, d.stop())
	}
	op := sv.op
	mk := func(role, tenant string) (*client.Client, error) {
		p, err := op.CreatePrincipal(ctx, api.CreatePrincipal{Name: role, Role: role, Tenant: tenant})
		if err != nil {
			return nil, err
		}
		return client.New(sv.socket, p.Token)
	}
	c := heClients{op: op}
	for _, p := range []struct {
		c            **client.Client
		role, tenant string
	}{{&c.prov, "provider", benchProvider}, {&c.auth, "authority", ""}, {&c.vendor, "vendor", "bench"}, {&c.rev, "reviewer", ""}} {
		if *p.c, err = mk(p.role, p.tenant); err != nil {
			return fail(err)
		}
	}
	d.clients = c
	return d, nil
}

// settle waits (up to 30 s) until the daemon has n sandboxes prepared ahead, or none when
// it keeps no pool.
func (d *daemonEnv) settle(n int) {
	for deadline := time.Now().Add(30 * time.Second); d.srv.SandboxesReady() < n && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) stopDaemon() error {
	if e.d == nil {
		return nil
	}
	err := e.d.stop()
	e.d = nil
	return err
}

// register registers a generated table (name.parquet, name.yaml in the data directory) once.
func (d *daemonEnv) register(ctx context.Context, name string) error {
	if d.registered[name] {
		return nil
	}
	dir := filepath.Join(filepath.Dir(d.state), "data")
	sch, err := os.ReadFile(filepath.Join(dir, name+".yaml"))
	if err != nil {
		return err
	}
	if _, err := d.clients.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: string(sch), Files: []string{filepath.Join(dir, name+".parquet")}}); err != nil {
		return fmt.Errorf("register %s: %w", name, err)
	}
	d.registered[name] = true
	return nil
}

// grant applies for a grant and has the operator, the authority and the provider approve it.
func (d *daemonEnv) grant(ctx context.Context, req api.ApplyGrant) (string, error) {
	return approvedGrant(ctx, d.clients.vendor, req, d.clients.op, d.clients.auth, d.clients.prov)
}

// approvedGrant applies for req as vendor and has each reviewer, in turn, approve it.
func approvedGrant(ctx context.Context, vendor *client.Client, req api.ApplyGrant, reviewers ...*client.Client) (string, error) {
	g, err := vendor.ApplyGrant(ctx, req)
	if err != nil {
		return "", err
	}
	id := g["id"].(string)
	for _, c := range reviewers {
		if _, err := c.ActOnGrant(ctx, id, "approve", ""); err != nil {
			return "", err
		}
	}
	return id, nil
}

// job submits one job and waits for it: the time from submission to the protected output
// in the review queue, and the job.
func (d *daemonEnv) job(ctx context.Context, req api.SubmitJob) (time.Duration, api.Job, error) {
	start := time.Now()
	j, err := d.clients.vendor.SubmitJob(ctx, req)
	if err != nil {
		return 0, j, err
	}
	if j, err = d.clients.vendor.Wait(ctx, j.ID, nil); err != nil {
		return 0, j, err
	}
	if j.Status != "review" {
		return 0, j, fmt.Errorf("bench job ended %s: %s", j.Status, j.Message)
	}
	took := time.Since(start)
	// The metering is the operator's only.
	j, err = d.clients.op.Job(ctx, j.ID)
	return took, j, err
}

// e2e submits job reps times after a warm-up and returns the median time from submission
// to the protected output in the review queue, and the last job.
func (d *daemonEnv) e2e(ctx context.Context, req api.SubmitJob, reps int) (time.Duration, api.Job, error) {
	var ds []time.Duration
	var j api.Job
	for i := 0; i <= reps; i++ {
		t, jj, err := d.job(ctx, req)
		if err != nil {
			return 0, jj, err
		}
		j = jj
		if i > 0 {
			ds = append(ds, t)
		}
	}
	return median(ds), j, nil
}

// benchThreshold measures a threshold GROUP BY end to end against raw DuckDB's plain
// aggregate and its COUNT(DISTINCT person) floor.
func benchThreshold(ctx context.Context, e *env) error {
	file, err := e.table(ctx, "bench_events")
	if err != nil {
		return err
	}
	d, err := e.daemon(ctx)
	if err != nil {
		return err
	}
	if err := d.register(ctx, "bench_events"); err != nil {
		return err
	}
	gid, err := d.grant(ctx, api.ApplyGrant{Scenario: "bench", Purpose: "benchmark", Modes: []string{"threshold"}, K: 10, RoundTo: 1, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: "bench_events", Columns: []string{"grp", "value"}}}})
	if err != nil {
		return err
	}
	o := e.o
	src := "read_parquet('" + file + "')"
	tPlain, err := e.rawQuery(ctx, "plain aggregate", "SELECT grp, COUNT(*), SUM(value) FROM "+src+" GROUP BY grp")
	if err != nil {
		return err
	}
	tFloor, err := e.rawQuery(ctx, "with COUNT(DISTINCT person)", "SELECT grp, COUNT(*), SUM(value), COUNT(DISTINCT person_id) FROM "+src+" GROUP BY grp")
	if err != nil {
		return err
	}
	e.logf("Veil end to end (%s)...", o.Isolation)
	tVeil, _, err := d.e2e(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT grp, COUNT(*), SUM(value) FROM bench_events GROUP BY grp"}, o.Reps)
	if err != nil {
		return err
	}
	if err := e.add(
		e.st.ratio("threshold_e2e_vs_floor_ratio", ms(tVeil), "raw DuckDB GROUP BY with COUNT(DISTINCT person)", ms(tFloor),
			fmt.Sprintf("%d rows, %d persons, %d groups, Parquet; isolation=%s; submit to protected output in the review queue", o.Rows, o.Units, o.Groups, o.Isolation)),
		e.st.ratio("threshold_e2e_vs_raw_ratio", ms(tVeil), "raw DuckDB plain GROUP BY (COUNT, SUM)", ms(tPlain), ""),
	); err != nil {
		return err
	}
	// The fixed cost of a job (job_fixed_cost_ms) is the fixedcost suite's.
	return nil
}

// dpSubmit is the benchmark's dp job: ε=1 per run, max_groups 1, max_rows 10.
func dpSubmit(gid, q string) api.SubmitJob {
	return api.SubmitJob{Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 1, Delta: 1e-8, MaxGroups: 1, MaxRows: 10}}
}

// dpE2E runs a dp job on dataset reps times after a warm-up under a grant of its own; the
// grant's ε=10 pays for 10 runs of ε=1, so at most 8 measured runs.
func (d *daemonEnv) dpE2E(ctx context.Context, dataset, q string, reps int) (time.Duration, error) {
	if err := d.register(ctx, dataset); err != nil {
		return 0, err
	}
	gid, err := d.grant(ctx, api.ApplyGrant{Scenario: "bench dp " + dataset, Purpose: "benchmark", Modes: []string{"dp"}, Epsilon: 10, Delta: 1e-7, MaxQuery: 1, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: dataset, Columns: []string{"grp", "value"}}}})
	if err != nil {
		return 0, err
	}
	t, _, err := d.e2e(ctx, dpSubmit(gid, q), min(reps, 8))
	if err != nil {
		return 0, fmt.Errorf("dp job on %s: %w", dataset, err)
	}
	return t, nil
}

// benchDP measures dp group-bys end to end and their plans' SQL against the floor every
// user-level DP system pays: aggregating per (person, group) before per group.
func benchDP(ctx context.Context, e *env) error {
	o := e.o
	file, err := e.table(ctx, "bench_events")
	if err != nil {
		return err
	}
	onerow, err := e.table(ctx, "bench_persons")
	if err != nil {
		return err
	}
	d, err := e.daemon(ctx)
	if err != nil {
		return err
	}
	src := "read_parquet('" + file + "')"
	tPlain, err := e.rawQuery(ctx, "plain aggregate", "SELECT grp, COUNT(*), SUM(value) FROM "+src+" GROUP BY grp")
	if err != nil {
		return err
	}
	tTwo, err := e.rawQuery(ctx, "two-level aggregate (the DP floor)", "SELECT grp, SUM(n), SUM(v) FROM (SELECT person_id, grp, COUNT(*) AS n, SUM(value) AS v FROM "+src+" GROUP BY person_id, grp) GROUP BY grp")
	if err != nil {
		return err
	}
	e.logf("Veil end to end, dp (%s)...", o.Isolation)
	tDP, err := d.dpE2E(ctx, "bench_events", "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM bench_events GROUP BY grp", o.Reps)
	if err != nil {
		return err
	}
	floor := "raw DuckDB two-level aggregate per (person, group) then per group"
	if err := e.add(
		e.st.ratio("dp_groupby_vs_floor_ratio", ms(tDP), floor, ms(tTwo),
			fmt.Sprintf("DP COUNT(*) and SUM per group, max_groups 1, max_rows 10, partition selection, ε=1; isolation=%s; submit to noisy output in the review queue", o.Isolation)),
		e.st.ratio("dp_groupby_vs_raw_ratio", ms(tDP), "raw DuckDB plain GROUP BY (COUNT, SUM)", ms(tPlain), ""),
	); err != nil {
		return err
	}
	// The same plans without the daemon and the sandbox: the runner's code in this process,
	// to separate the SQL's cost from the job's.
	e.logf("dp plans in process (runner code, no sandbox)...")
	tDPSQL, err := timePlan(ctx, file, "bench_events", 10, o.Reps)
	if err != nil {
		return err
	}
	if err := e.add(e.st.ratio("dp_groupby_sql_vs_floor_ratio", ms(tDPSQL), floor, ms(tTwo),
		"the bounded dp plan's SQL alone on raw DuckDB over a view of the file (no daemon, no sandbox), max_groups 1, max_rows 10")); err != nil {
		return err
	}
	return benchDPOneRow(ctx, e, d, onerow)
}

// oneRowQuery is the dp suite's query on one row per person.
const oneRowQuery = "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM bench_onerow GROUP BY grp"

// benchDPOneRow measures the dp job on one row per person (the direct plan) end to end
// against raw DuckDB's plain GROUP BY on the same file, and the plan's SQL alone, all
// interleaved round by round so that the machine's drift slows each alike: a round waits
// for the daemon's pool to be full and idle, times raw DuckDB and the plan's SQL on one
// warm database with the job's threads and DuckDB memory limit, then submits the job twice
// in a row. dp_onerow_e2e_vs_raw_ratio is the second job's, which runs right after the
// previous one (as the suite's jobs always ran: the pool replaces the first's sandbox beside
// it), as the median of per-round ratios; the first job's, settled, is
// dp_onerow_e2e_settled_vs_raw_ratio.
func benchDPOneRow(ctx context.Context, e *env, d *daemonEnv, file string) error {
	o := e.o
	// A dataset of its own on the file, with the budget for two jobs a round.
	sch, err := os.ReadFile(filepath.Join(e.data, "bench_persons.yaml"))
	if err != nil {
		return err
	}
	schema := strings.Replace(string(sch), "name: bench_persons", "name: bench_onerow", 1)
	schema = strings.Replace(schema, "budget: {epsilon: 10, delta: 1.0e-6}", "budget: {epsilon: 100, delta: 1.0e-4}", 1)
	if !d.registered["bench_onerow"] {
		if _, err := d.clients.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: schema, Files: []string{file}}); err != nil {
			return fmt.Errorf("register bench_onerow: %w", err)
		}
		d.registered["bench_onerow"] = true
	}
	v, err := engine.NewValidator()
	if err != nil {
		return err
	}
	defer v.Close()
	t := engine.Table{Name: "bench_onerow", Files: []string{file}, MaxRowsPerUnit: 1, UnitComplete: true, Unit: "person", Columns: []engine.Column{
		{Name: "person_id", Type: "BIGINT", PrivacyUnit: true}, {Name: "grp", Type: "VARCHAR"}, {Name: "value", Type: "DOUBLE", Bounds: []float64{0, 1000}}}}
	plan, err := v.ValidateDP(ctx, oneRowQuery, engine.Scope{Mode: "dp", Tables: []engine.Table{t}}, engine.DPOptions{Epsilon: 1, Delta: 1e-8, MaxGroups: 1, MaxRows: 10})
	if err != nil {
		return err
	}
	// What the job's DuckDB gets: newDaemon's threads and memory.
	cfg := daemon.Defaults("")
	cfg.JobThreads, cfg.JobMemoryMB = 2, 4096
	raw, err := openRaw(fmt.Sprintf("SET threads=%d", cfg.JobThreads), fmt.Sprintf("SET memory_limit='%dMB'", cfg.DuckDBMemoryMB()),
		"SET VARIABLE veil_secret = 12345::BIGINT", fmt.Sprintf("CREATE VIEW bench_onerow AS SELECT person_id, grp, value FROM read_parquet('%s')", file))
	if err != nil {
		return err
	}
	defer raw.close()
	pool := daemon.Defaults("").SandboxPool
	settle := func() {
		d.settle(pool)
		time.Sleep(200 * time.Millisecond) // the used sandboxes' teardown, in the background
	}
	var gid string
	jobs := 0
	e2e := func(name string) step {
		return step{name, func() (time.Duration, error) {
			if jobs%8 == 0 { // a grant's ε=10 pays for 10 runs of ε=1
				if gid, err = d.grant(ctx, api.ApplyGrant{Scenario: fmt.Sprintf("bench dp onerow %d", jobs), Purpose: "benchmark", Modes: []string{"dp"}, Epsilon: 10, Delta: 1e-7, MaxQuery: 1, ValidFor: "1d",
					Datasets: []api.DatasetAccess{{Name: "bench_onerow", Columns: []string{"grp", "value"}}}}); err != nil {
					return 0, err
				}
			}
			jobs++
			took, _, err := d.job(ctx, dpSubmit(gid, oneRowQuery))
			return took, err
		}}
	}
	e.logf("dp on one row per person: raw DuckDB, the plan's SQL, the job settled and back to back, interleaved...")
	s, err := interleave(o.Reps, nil,
		step{"raw", func() (time.Duration, error) {
			settle()
			return raw.time(ctx, "SELECT grp, COUNT(*), SUM(value) FROM read_parquet('"+file+"') GROUP BY grp")
		}},
		step{"plan", func() (time.Duration, error) { return raw.time(ctx, plan.DP.DirectSQL) }},
		e2e("e2e_settled"),
		e2e("e2e"),
	)
	if err != nil {
		return err
	}
	for _, k := range []string{"raw", "plan", "e2e_settled", "e2e"} {
		e.logf("  %-11s %7.1f ms (%.3f× raw, median of per-round ratios)", k, ms(s.med(k)), s.ratio(k, "raw"))
	}
	onePlain := "raw DuckDB plain GROUP BY (COUNT, SUM) on the same table"
	note := fmt.Sprintf("%d rounds interleaved, each after the daemon's pool is full and idle: raw DuckDB (threads %d, memory_limit %d MB, as the job's DuckDB), the plan's SQL, the job, the job again.", o.Reps, cfg.JobThreads, cfg.DuckDBMemoryMB())
	return e.add(
		e.pairedRatio("dp_onerow_vs_raw_ratio", s, "plan", "raw", onePlain,
			fmt.Sprintf("%d rows, one per person (declared and measured): the direct dp plan's SQL, which skips the bounding pass, on raw DuckDB over a view of the file. %s", o.Rows, note)),
		e.pairedRatio("dp_onerow_e2e_vs_raw_ratio", s, "e2e", "raw", onePlain,
			fmt.Sprintf("the same dp job end to end (isolation=%s), fixed per-job cost included, submitted right after the previous one (the pool replaces that one's sandbox beside it). %s", o.Isolation, note)),
		e.pairedRatio("dp_onerow_e2e_settled_vs_raw_ratio", s, "e2e_settled", "raw", onePlain,
			fmt.Sprintf("the same dp job end to end with every pool full and idle before it. %s", note)),
	)
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

// benchBeam measures the dp count on the small table against Privacy on Beam.
func benchBeam(ctx context.Context, e *env) error {
	o := e.o
	if o.Beam == "" {
		e.logf("skipped: no --beam binary")
		return nil
	}
	small, err := e.table(ctx, "bench_small")
	if err != nil {
		return err
	}
	d, err := e.daemon(ctx)
	if err != nil {
		return err
	}
	e.logf("Veil end to end, dp count on %s...", small)
	tSmall, err := d.dpE2E(ctx, "bench_small", "SELECT grp, COUNT(*) AS n FROM bench_small GROUP BY grp", o.Reps)
	if err != nil {
		return err
	}
	e.logf("Privacy on Beam, the same count (%s)...", o.Beam)
	pob, err := runBeam(ctx, o.Beam, small, min(o.Reps, 3))
	if err != nil {
		return err
	}
	tPoB := time.Duration(pob.Median * float64(time.Second))
	f := e.st.value("dp_vs_privacy_on_beam_speedup", float64(tPoB)/float64(tSmall), "times faster",
		fmt.Sprintf("DP COUNT(*) per group, ε=1, δ=1e-8, max_groups 1, max_rows 10, %d rows, 100000 persons, Parquet: Privacy on Beam %.0f ms (median of %d) vs Veil end to end %.1f ms (isolation=%s)",
			pob.Rows, ms(tPoB), len(pob.Runs), ms(tSmall), o.Isolation))
	f.BaseName, f.Baseline = fmt.Sprintf("Privacy on Beam %s, Beam %s direct runner (%s reader)", pob.PoB, pob.Beam, pob.Reader), ms(tPoB)
	return e.add(f)
}

// benchAccuracy measures the accuracy of the released count of persons at ε=1 (one group
// per person, a public domain: Laplace with scale 1) on the mechanism the gate calls.
func benchAccuracy(ctx context.Context, e *env) error {
	for _, n := range []int{100, 1000, 10000} {
		errs := make([]float64, 2001)
		for i := range errs {
			r, err := dp.Count(int64(n), 1, 1, 1, 0, dp.Laplace)
			if err != nil {
				return err
			}
			errs[i] = math.Abs(r.Value-float64(n)) / float64(n)
		}
		sort.Float64s(errs)
		if err := e.add(e.st.value(fmt.Sprintf("dp_count_median_rel_error_eps1_n%d", n), errs[len(errs)/2], "relative error",
			"median |released - exact| / exact of COUNT(DISTINCT person) per group at ε=1 over 2001 draws of the gate's mechanism (Laplace, scale 1)")); err != nil {
			return err
		}
	}
	return nil
}
