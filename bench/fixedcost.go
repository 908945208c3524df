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

// commitsPerJob is how many synchronous store commits a threshold job makes: submission
// (job, budget and audit entry in one transaction), start, and the output with the job's
// move to review (daemon/jobs.go, daemon/run.go).
const commitsPerJob = 3

// benchFixedCost takes apart the fixed cost of a job: a threshold query that selects no
// rows, end to end, against what its parts cost measured alone in the same run
// (interleaved): an API round trip, the submission call, validation, one synchronous store
// commit, the job's metered time in its sandbox, the same job by the runner in a sandbox
// prepared ahead, and raw DuckDB on the same query.
func benchFixedCost(ctx context.Context, e *env) error {
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
	gid, err := d.grant(ctx, api.ApplyGrant{Scenario: "bench fixed cost", Purpose: "benchmark", Modes: []string{"threshold"}, K: 10, RoundTo: 1, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: "bench_events", Columns: []string{"grp", "value"}}}})
	if err != nil {
		return err
	}
	sb, err := e.sandboxes()
	if err != nil {
		return err
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
	plan, err := v.Validate(ctx, q, sc)
	if err != nil {
		return err
	}
	job := engine.Job{SQL: plan.SQL, FastSQL: plan.FastSQL, K: 10, MaxRowsPerUnit: t.MaxRowsPerUnit, Tables: sc.Tables, Threads: 2, MemoryLimitMB: jobMemoryMB, MaxResultBytes: jobLimits.ResultBytes}
	var submit, metered []time.Duration
	seq := 0
	e.logf("fixed cost: a job that selects no rows, end to end and its parts, interleaved...")
	s, err := interleave(max(e.o.Reps, 9), sb.settle,
		step{"e2e", func() (time.Duration, error) {
			start := time.Now()
			j, err := d.clients.vendor.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q})
			if err != nil {
				return 0, err
			}
			submit = append(submit, time.Since(start))
			if j, err = d.clients.vendor.Wait(ctx, j.ID, nil); err != nil {
				return 0, err
			}
			took := time.Since(start)
			if j, err = d.clients.op.Job(ctx, j.ID); err != nil { // the metering is the operator's only
				return 0, err
			}
			if j.Status != "review" || j.Metering == nil {
				return 0, fmt.Errorf("bench job ended %s: %s", j.Status, j.Message)
			}
			metered = append(metered, time.Duration(j.Metering.WallMS)*time.Millisecond)
			return took, nil
		}},
		step{"api", func() (time.Duration, error) {
			start := time.Now()
			_, err := d.clients.vendor.Whoami(ctx)
			return time.Since(start), err
		}},
		step{"validate", func() (time.Duration, error) {
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
		step{"pooled", func() (time.Duration, error) {
			d, _, _, err := sb.run(ctx, job, jobLimits, true)
			return d, err
		}},
		step{"raw", func() (time.Duration, error) {
			return raw.time(ctx, fmt.Sprintf("SELECT grp, COUNT(*), COUNT(DISTINCT person_id) FROM read_parquet('%s') WHERE value < -1 GROUP BY grp", file))
		}},
	)
	if err != nil {
		return err
	}
	submit, metered = submit[1:], metered[1:]
	total, sub, wall := s.med("e2e"), median(submit), median(metered)
	commit := s.med("commit")
	other := total - sub - wall - (commitsPerJob-1)*commit
	note := fmt.Sprintf("a threshold query selecting no rows of bench_events (%d rows), isolation=%s, median of %d interleaved rounds", e.o.Rows, e.o.Isolation, len(metered))
	return e.add(
		e.st.value("fixed_cost_e2e_ms", ms(total), "ms", "submit to protected output in the review queue; "+note),
		e.st.value("fixed_cost_api_ms", ms(s.med("api")), "ms", "one authenticated API round trip (whoami) over the Unix socket; "+note),
		e.st.value("fixed_cost_submit_ms", ms(sub), "ms", "the submission call: authentication, grant check, validation, budget reservation and one synchronous commit; "+note),
		e.st.value("fixed_cost_validate_ms", ms(s.med("validate")), "ms", "validation and rewriting alone (json_serialize_sql and the walk), in process; "+note),
		e.st.value("fixed_cost_commit_ms", ms(commit), "ms", fmt.Sprintf("one synchronous SQLite commit (WAL, synchronous=FULL) on the state directory's disk; a job makes %d; %s", commitsPerJob, note)),
		e.st.value("fixed_cost_sandbox_metered_ms", ms(wall), "ms", "the job's metered time in its fresh sandbox (start, runner process, DuckDB open, query, exit); "+note),
		e.st.value("fixed_cost_pooled_runner_ms", ms(s.med("pooled")), "ms", "the same job's plan by the runner in a sandbox prepared ahead (hand-over to exit); "+note),
		e.st.value("fixed_cost_other_ms", ms(other), "ms", fmt.Sprintf("the rest: scheduling, the start and review transactions' work besides their commits, reading the result, the gate, audit entries, the long-poll answer (e2e minus submit, metered sandbox time and %d commits); %s", commitsPerJob-1, note)),
		e.st.value("job_fixed_cost_pool_estimate_ms", ms(total-wall+s.med("pooled")-s.med("raw")), "ms",
			"estimate, not measured end to end: the fixed cost with the daemon's sandbox replaced by one prepared ahead (e2e minus the metered sandbox time plus the pooled runner's time, minus raw DuckDB's time for the query); "+note),
	)
}
