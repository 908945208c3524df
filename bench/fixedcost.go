package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// commitsPerJob is how many synchronous store commits a threshold job waits for:
// submission (job, budget and audit entry in one transaction) and the output with the job's
// move to review (daemon/jobs.go, jobs/run.go). Its start commits without waiting for the
// disk (store.UpdateAsync); the flush runs while the checks are prepared and the sandbox
// waits for it, so what is left of it is in the rest. Each waited-for commit with audit
// entries is also signed: the checkpoint appended to the signer's state file and fsynced
// (one fsync; it was a new file renamed into place, two) before the request returns; the
// stored copy of the checkpoint commits without waiting.
const commitsPerJob = 2

// benchFixedCost takes apart the fixed cost of a job: a threshold query that selects no
// rows, end to end on the run's daemon (sandboxes prepared ahead) and on a daemon of its own
// that makes a fresh sandbox for each job (the daemon before the pool), against what its
// parts cost measured alone in the same run (interleaved): an API round trip, the
// submission call, validation, one synchronous store commit, the job's metered time in its
// sandbox, and raw DuckDB on the same query. Each job is rejected once measured, so that no
// job is checked for differencing against the ones before it (that guard's cost is its
// own figure; here every job is the grant's first).
func benchFixedCost(ctx context.Context, e *env) error {
	file, err := e.table(ctx, "bench_events")
	if err != nil {
		return err
	}
	d, err := e.daemon(ctx)
	if err != nil {
		return err
	}
	fresh, err := e.newDaemon(ctx, 0)
	if err != nil {
		return err
	}
	defer fresh.stop()
	req := api.ApplyGrant{Scenario: "bench fixed cost", Purpose: "benchmark", Modes: []string{"threshold"}, K: 10, RoundTo: 1, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: "bench_events", Columns: []string{"grp", "value"}}}}
	grants := map[*daemonEnv]string{}
	for _, dd := range []*daemonEnv{d, fresh} {
		if err := dd.register(ctx, "bench_events"); err != nil {
			return err
		}
		if grants[dd], err = dd.grant(ctx, req); err != nil {
			return err
		}
	}
	v, err := engine.NewValidator()
	if err != nil {
		return err
	}
	defer v.Close()
	st, err := sqlite.Open(ctx, filepath.Join(d.state, "commit-bench.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	defer os.Remove(filepath.Join(d.state, "commit-bench.db"))
	raw, err := openRaw()
	if err != nil {
		return err
	}
	defer raw.close()

	const q = "SELECT grp, COUNT(*) FROM bench_events WHERE value < -1 GROUP BY grp"
	t := engine.Table{Name: "bench_events", Files: []string{file}, MaxRowsPerUnit: int64((e.o.Rows + e.o.Units - 1) / e.o.Units), UnitComplete: true, Unit: "person",
		Columns: []engine.Column{{Name: "person_id", Type: "BIGINT", PrivacyUnit: true}, {Name: "grp", Type: "VARCHAR"}, {Name: "value", Type: "DOUBLE", Bounds: []float64{0, 1000}}}}
	sc := engine.Scope{Mode: "threshold", Tables: []engine.Table{t}}
	type parts struct{ submit, metered []time.Duration }
	got := map[*daemonEnv]*parts{d: {}, fresh: {}}
	e2e := func(dd *daemonEnv) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			c := dd.clients
			start := time.Now()
			j, err := c.vendor.SubmitJob(ctx, api.SubmitJob{Grant: grants[dd], SQL: q})
			if err != nil {
				return 0, err
			}
			submit := time.Since(start)
			if j, err = c.vendor.Wait(ctx, j.ID, nil); err != nil {
				return 0, err
			}
			took := time.Since(start)
			if j, err = c.op.Job(ctx, j.ID); err != nil { // the metering is the operator's only
				return 0, err
			}
			if j.Status != "review" || j.Metering == nil {
				return 0, fmt.Errorf("bench job ended %s: %s", j.Status, j.Message)
			}
			// Rejected, it is no prior of the next job (jobs.Run.Priors).
			if _, err := c.rev.Decide(ctx, j.ID, "reject", "", "benchmark"); err != nil {
				return 0, fmt.Errorf("reject bench job: %w", err)
			}
			p := got[dd]
			p.submit = append(p.submit, submit)
			p.metered = append(p.metered, time.Duration(j.Metering.WallMS)*time.Millisecond)
			return took, nil
		}
	}
	seq, tenants := 0, 0
	// Before each step the pool is full again (it refills after a job, once the daemon has
	// been quiet for a moment: sandbox.Pool), as on a daemon whose jobs do not come back to
	// back; a refill still going on would land on the next step.
	settle := func() { d.settle(poolSize) }
	e.logf("fixed cost: a job that selects no rows, end to end (pooled and fresh sandboxes) and its parts, interleaved...")
	s, err := interleave(max(e.o.Reps, 9), settle,
		step{"e2e", e2e(d)},
		step{"e2e_fresh", e2e(fresh)},
		step{"api", func() (time.Duration, error) {
			start := time.Now()
			_, err := d.clients.vendor.Whoami(ctx)
			return time.Since(start), err
		}},
		step{"validate", func() (time.Duration, error) {
			// As a tenant of its own each round: the text is new to the validator (its
			// parse and plan are not kept), as a vendor's first submission of it is.
			tenants++
			sc := sc
			sc.Tenant = fmt.Sprintf("bench-%d", tenants)
			start := time.Now()
			_, err := v.Validate(ctx, q, sc)
			return time.Since(start), err
		}},
		step{"validate_kept", func() (time.Duration, error) {
			start := time.Now()
			_, err := v.Validate(ctx, q, sc)
			return time.Since(start), err
		}},
		step{"commit", func() (time.Duration, error) {
			seq++
			start := time.Now()
			err := st.Update(ctx, func(tx store.Tx) error {
				return tx.PutPrincipal(ctx, store.Principal{ID: fmt.Sprintf("p%d", seq), Name: "bench", Role: "vendor", TokenHash: []byte{byte(seq)}, Created: time.Now()})
			})
			return time.Since(start), err
		}},
		step{"raw", func() (time.Duration, error) {
			return raw.time(ctx, fmt.Sprintf("SELECT grp, COUNT(*), COUNT(DISTINCT person_id) FROM read_parquet('%s') WHERE value < -1 GROUP BY grp", file))
		}},
	)
	if err != nil {
		return err
	}
	pool, fr := got[d], got[fresh]
	// The warm-up round is not counted.
	pool.submit, pool.metered, fr.submit, fr.metered = pool.submit[1:], pool.metered[1:], fr.submit[1:], fr.metered[1:]
	total, sub, wall := s.med("e2e"), median(pool.submit), median(pool.metered)
	commit, rawT := s.med("commit"), s.med("raw")
	other := total - sub - wall - (commitsPerJob-1)*commit
	note := fmt.Sprintf("a threshold query selecting no rows of bench_events (%d rows), isolation=%s, median of %d interleaved rounds", e.o.Rows, e.o.Isolation, len(pool.metered))
	return e.add(
		e.st.value("job_fixed_cost_ms", ms(total-rawT), "ms",
			fmt.Sprintf("end-to-end time of a query that selects no rows (%.1f ms) minus raw DuckDB's time for it (%.1f ms): API, validation, store, sandbox (prepared ahead), runner, gate, audit; %s", ms(total), ms(rawT), note)),
		e.st.value("job_fixed_cost_fresh_ms", ms(s.med("e2e_fresh")-rawT), "ms",
			"the same on a daemon that makes a fresh sandbox for each job (--sandbox-pool 0, the daemon before the pool); "+note),
		e.st.ratio("fixed_cost_pool_vs_fresh_ratio", ms(total), "the same job on a daemon with a fresh sandbox for each job", ms(s.med("e2e_fresh")),
			"end to end, median of per-round ratios; "+note),
		e.st.value("fixed_cost_e2e_ms", ms(total), "ms", "submit to protected output in the review queue; "+note),
		e.st.value("fixed_cost_fresh_e2e_ms", ms(s.med("e2e_fresh")), "ms", "the same with a fresh sandbox for each job; "+note),
		e.st.value("fixed_cost_api_ms", ms(s.med("api")), "ms", "one authenticated API round trip (whoami) over the Unix socket; "+note),
		e.st.value("fixed_cost_submit_ms", ms(sub), "ms", "the submission call: authentication, grant check, validation, budget reservation and one synchronous commit; "+note),
		e.st.value("fixed_cost_validate_ms", ms(s.med("validate")), "ms", "validation and rewriting alone (json_serialize_sql, the walk, the rewrite and the bound-plan check) of a text the validator has not seen, in process; "+note),
		e.st.value("fixed_cost_validate_kept_ms", ms(s.med("validate_kept")), "ms", "the same text validated again under the same scope by the same tenant, answered from the plans the validator keeps (as the daemon answers the suite's jobs after the first), in process; "+note),
		e.st.value("fixed_cost_commit_ms", ms(commit), "ms", fmt.Sprintf("one synchronous SQLite commit (WAL, synchronous=FULL) on the state directory's disk; a job makes %d; %s", commitsPerJob, note)),
		e.st.value("fixed_cost_sandbox_metered_ms", ms(wall), "ms", "the job's metered time in its sandbox prepared ahead (hand-over of mounts and stdin, the runner with DuckDB already open: lockdown, views, query, checks, exit); "+note),
		e.st.value("fixed_cost_fresh_sandbox_metered_ms", ms(median(fr.metered)), "ms", "the job's metered time in a fresh sandbox (container start, runner process start, DuckDB open, then the same); "+note),
		e.st.value("fixed_cost_raw_ms", ms(rawT), "ms", "raw DuckDB on the same query with COUNT(DISTINCT person), warm database; "+note),
		e.st.value("fixed_cost_other_ms", ms(other), "ms", fmt.Sprintf("the rest: scheduling, the start transaction and the wait for its flush, the review transaction's work besides its commit, its audit signing, reading the result, the gate, the long-poll answer (e2e minus submit, metered sandbox time and %d commit); %s", commitsPerJob-1, note)),
	)
}
