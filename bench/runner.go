package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
	"github.com/veil-dp/veil/sandbox"
)

// jobLimits are the daemon's default limits of one job (Config defaults: 2 GiB, 2 cores,
// 64 MiB scratch), and jobMemoryMB DuckDB's share of the memory, as the daemon sets it.
var jobLimits = sandbox.Limits{MemoryBytes: 2 << 30, CPUs: 2, ScratchBytes: 64 << 20, ResultBytes: 64 << 20}

const jobMemoryMB = 2048 * 3 / 4

// flightsSchema registers vega-datasets' flights-3m.parquet. The file has no person
// column and a schema needs one privacy unit (a person or an enterprise): the departure
// minute stands in for the travellers of that minute (at most 103 flights share one), so
// that a threshold job counts distinct minutes per group, as it would count persons.
const flightsSchema = `# vega-datasets 3.2.1 flights-3m.parquet: 3M US domestic flights, January to June 2001.
name: flights
title: US domestic flights 2001 (vega-datasets)
provider: bench
unit: person
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: date, type: TIMESTAMP, level: 2, kind: none, privacy_unit: true}
  - {name: delay, type: BIGINT, level: 1, kind: none, bounds: [-200, 2000]}
  - {name: distance, type: BIGINT, level: 1, kind: none, bounds: [0, 6000]}
  - {name: origin, type: VARCHAR, level: 1, kind: none}
  - {name: destination, type: VARCHAR, level: 1, kind: none}
`

// flightsQuery is the real-data GROUP BY: flights and mean delay per origin airport.
const flightsQuery = "SELECT origin, COUNT(*) AS n, AVG(delay) AS d FROM flights GROUP BY origin"

// flightsTable is the flights dataset as the engine sees it under a grant of every column.
func flightsTable(ctx context.Context, file string) (engine.Table, error) {
	most, missing, err := engine.UnitStats(ctx, []string{file}, "date")
	if err != nil {
		return engine.Table{}, err
	}
	// Per column too, as registration measures it (a departure minute has at most a dozen
	// flights from one airport).
	by, err := engine.UnitStatsBy(ctx, []string{file}, "date", map[string]string{"delay": "delay", "distance": "distance", "origin": "origin", "destination": "destination"})
	if err != nil {
		return engine.Table{}, err
	}
	vu, err := engine.ValueUnitStats(ctx, []string{file}, "date", map[string]string{"origin": "origin", "destination": "destination"})
	if err != nil {
		return engine.Table{}, err
	}
	return engine.Table{Name: "flights", Files: []string{file}, MaxRowsPerUnit: most, UnitComplete: missing == 0, Unit: "person", MaxRowsPerUnitBy: by, ValueUnits: vu,
		Columns: []engine.Column{
			{Name: "date", Type: "TIMESTAMP", PrivacyUnit: true},
			{Name: "delay", Type: "BIGINT", Bounds: []float64{-200, 2000}},
			{Name: "distance", Type: "BIGINT", Bounds: []float64{0, 6000}},
			{Name: "origin", Type: "VARCHAR"},
			{Name: "destination", Type: "VARCHAR"},
		}}, nil
}

// runnerCase is the table and query the runner suite measures: the flights GROUP BY
// when the file is there, else the generated table with one row per person.
func (e *env) runnerCase(ctx context.Context) (engine.Table, string, string, error) {
	if e.o.Flights != "" {
		file, err := filepath.Abs(e.o.Flights)
		if err != nil {
			return engine.Table{}, "", "", err
		}
		t, err := flightsTable(ctx, file)
		return t, flightsQuery, "vega-datasets flights-3m.parquet (3M rows), flights and mean delay per origin", err
	}
	file, err := e.table(ctx, "bench_persons")
	if err != nil {
		return engine.Table{}, "", "", err
	}
	t := engine.Table{Name: "bench_persons", Files: []string{file}, Columns: []engine.Column{{Name: "person_id", PrivacyUnit: true}, {Name: "grp"}, {Name: "value"}}}
	return t, "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM bench_persons GROUP BY grp", fmt.Sprintf("bench_persons (%d rows), COUNT and SUM per group", e.o.Rows), nil
}

// benchRunner takes apart the runner's time against raw DuckDB running the same SQL on the
// same file: a fresh DuckDB with the lockdown and views (in this process), the runner as a
// process, in a fresh sandbox (the daemon's path today) and in a sandbox prepared ahead.
func benchRunner(ctx context.Context, e *env) error {
	t, q, what, err := e.runnerCase(ctx)
	if err != nil {
		return err
	}
	sb, err := e.sandboxes()
	if err != nil {
		return err
	}
	raw, err := openRaw()
	if err != nil {
		return err
	}
	defer raw.close()
	rawQ := "SELECT * FROM (" + q + ")"
	if _, err := raw.db.ExecContext(ctx, fmt.Sprintf("CREATE VIEW %s AS SELECT * FROM read_parquet('%s')", t.Name, t.Files[0])); err != nil {
		return err
	}
	// The runner's settings on a warm database: whether the lockdown itself (memory limit,
	// no insertion order, no external access, a view naming the columns) costs anything.
	cols := ""
	for i, c := range t.Columns {
		if i > 0 {
			cols += ", "
		}
		cols += `"` + c.Name + `"`
	}
	locked, err := openRaw(fmt.Sprintf("SET memory_limit='%dMB'", jobMemoryMB), "SET preserve_insertion_order=false",
		fmt.Sprintf("CREATE VIEW %s AS SELECT %s FROM read_parquet('%s')", t.Name, cols, t.Files[0]),
		fmt.Sprintf("SET allowed_paths=['%s']", t.Files[0]), "SET enable_external_access=false", "SET lock_configuration=true")
	if err != nil {
		return err
	}
	defer locked.close()
	job := engine.Job{SQL: q, Tables: []engine.Table{t}, Threads: 2, MemoryLimitMB: jobMemoryMB, MaxResultBytes: jobLimits.ResultBytes}
	in, err := json.Marshal(job)
	if err != nil {
		return err
	}
	var fresh, pooled []sandbox.Timing
	e.logf("runner: %s, raw / in process / as a process / fresh sandbox / pooled sandbox, interleaved...", what)
	s, err := interleave(e.o.Reps, sb.settle,
		step{"raw", func() (time.Duration, error) { return raw.time(ctx, rawQ) }},
		step{"locked", func() (time.Duration, error) { return locked.time(ctx, q) }},
		step{"inproc", func() (time.Duration, error) {
			start := time.Now()
			err := engine.Run(ctx, &job, io.Discard)
			return time.Since(start), err
		}},
		step{"process", func() (time.Duration, error) {
			start := time.Now()
			res, err := sandbox.RunLocal(ctx, sandbox.Spec{Args: []string{e.o.Binary, "runner"}, Stdin: in, Limits: jobLimits}, io.Discard)
			if err == nil && res.Status != sandbox.StatusOK {
				err = fmt.Errorf("runner process: %s (stderr %q)", res.Status, tail(res.Stderr, 500))
			}
			return time.Since(start), err
		}},
		step{"fresh", func() (time.Duration, error) {
			d, res, _, err := sb.run(ctx, job, jobLimits, false)
			if err == nil {
				fresh = append(fresh, res.Timing)
			}
			return d, err
		}},
		step{"pooled", func() (time.Duration, error) {
			d, res, _, err := sb.run(ctx, job, jobLimits, true)
			if err == nil {
				pooled = append(pooled, res.Timing)
			}
			return d, err
		}},
		step{"open", func() (time.Duration, error) {
			start := time.Now()
			r, err := engine.OpenRunner()
			if err != nil {
				return 0, err
			}
			return time.Since(start), r.Close()
		}},
	)
	if err != nil {
		return err
	}
	fresh, pooled = fresh[1:], pooled[1:] // the warm-up round
	base := "raw DuckDB, the same SQL on the same file (warm database, threads=2)"
	tm := func(ts []sandbox.Timing, f func(sandbox.Timing) time.Duration) float64 {
		var ds []time.Duration
		for _, t := range ts {
			ds = append(ds, f(t))
		}
		return ms(median(ds))
	}
	note := what + "; 2 threads, 2 GiB, the daemon's default limits."
	var runs []time.Duration
	for _, t := range fresh {
		runs = append(runs, t.Run)
	}
	return e.add(
		e.pairedRatio("runner_lockdown_vs_raw_ratio", s, "locked", "raw", base, "The same query on a warm database with the runner's settings (memory_limit, preserve_insertion_order=false, a view naming the columns, allowed_paths, no external access, locked configuration). "+note),
		e.st.ratio("runner_sandboxed_process_vs_process_ratio", ms(median(runs)), "the runner as a plain child process", ms(s.med("process")),
			"The runner process inside a fresh sandbox (its execve to its exit: seccomp, cgroup limits, namespaces, bind-mounted file) against the same process outside. "+note),
		e.pairedRatio("runner_inproc_vs_raw_ratio", s, "inproc", "raw", base, "The runner's code in this process: a fresh DuckDB, its lockdown, the job's views, the Arrow IPC result. "+note),
		e.pairedRatio("runner_process_vs_raw_ratio", s, "process", "raw", base, "The runner as a plain child process (no sandbox). "+note),
		e.pairedRatio("runner_sandbox_vs_raw_ratio", s, "fresh", "raw", base, "The runner in a fresh sandbox per job (create, start, run, destroy): the daemon's path today. "+note),
		e.pairedRatio("runner_pool_vs_raw_ratio", s, "pooled", "raw", base, "The runner in a sandbox prepared ahead (pool of 2, full before each step), the job's mounts attached at hand-over; destruction after the call returns. "+note),
		e.st.value("runner_process_start_ms", ms(s.diff("process", "inproc")), "ms", "runner as a process minus the same in this process: exec, dynamic linking, C++ and Go initialisation of the 139 MB veil binary, reading the job. "+note),
		e.st.value("runner_duckdb_open_ms", ms(s.med("open")), "ms", "opening and closing a fresh in-memory DuckDB (what a runner pays per job unless it opens DuckDB before its job arrives)"),
		e.st.value("sandbox_prepare_ms", tm(fresh, func(t sandbox.Timing) time.Duration { return t.Prepare }), "ms", "fresh sandbox: root skeleton, libcontainer configuration, state (median). "+note),
		e.st.value("sandbox_start_ms", tm(fresh, func(t sandbox.Timing) time.Duration { return t.Start }), "ms", "fresh sandbox: from start to the runner's execve (the container init is the veil binary re-executed: its initialisation, namespaces, mounts, seccomp) (median)"),
		e.st.value("sandbox_teardown_ms", tm(fresh, func(t sandbox.Timing) time.Duration { return t.Teardown }), "ms", "fresh sandbox: kill, destroy, cgroups and skeleton removed (median)"),
		e.st.value("pool_handoff_ms", tm(pooled, func(t sandbox.Timing) time.Duration { return t.Handoff }), "ms", "sandbox prepared ahead: the job's mounts attached (open_tree, mount_setattr, move_mount), usage reset, stdin written (median)"),
	)
}

// benchRealData measures the threshold GROUP BY on vega-datasets' flights end to end, and
// the same job without the daemon (validation, the runner in a sandbox prepared ahead, the
// gate), against raw DuckDB's plain GROUP BY on the same file.
func benchRealData(ctx context.Context, e *env) error {
	if e.o.Flights == "" {
		e.logf("skipped: no --flights file (make bench fetches vega-datasets@3.2.1)")
		return nil
	}
	file, err := filepath.Abs(e.o.Flights)
	if err != nil {
		return err
	}
	t, err := flightsTable(ctx, file)
	if err != nil {
		return err
	}
	d, err := e.daemon(ctx)
	if err != nil {
		return err
	}
	if !d.registered["flights"] {
		if _, err := d.clients.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: flightsSchema, Files: []string{file}}); err != nil {
			return fmt.Errorf("register flights: %w", err)
		}
		d.registered["flights"] = true
	}
	gid, err := d.grant(ctx, api.ApplyGrant{Scenario: "bench flights", Purpose: "benchmark", Modes: []string{"threshold"}, K: 10, RoundTo: 1, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: "flights", Columns: []string{"delay", "distance", "origin", "destination"}}}})
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
	raw, err := openRaw()
	if err != nil {
		return err
	}
	defer raw.close()
	rawQ := fmt.Sprintf("SELECT origin, COUNT(*) AS n, AVG(delay) AS d FROM read_parquet('%s') GROUP BY origin", file)
	floorQ := fmt.Sprintf("SELECT origin, COUNT(*) AS n, AVG(delay) AS d, COUNT(DISTINCT date) AS u FROM read_parquet('%s') GROUP BY origin", file)
	plan, err := v.Validate(ctx, flightsQuery, engine.Scope{Mode: "threshold", Tables: []engine.Table{t}})
	if err != nil {
		return err
	}
	planJob := engine.Job{SQL: plan.SQL, FastSQL: plan.FastFor(t), K: 10, MaxRowsPerUnit: plan.RowsPerUnit(t), KeyUnits: plan.KeyUnits(t), Tables: []engine.Table{t},
		Threads: 2, MemoryLimitMB: jobMemoryMB, MaxResultBytes: jobLimits.ResultBytes}
	// The same with the checks the daemon adds (dominance: the query has an AVG), as the
	// daemon builds them for a job without prior queries.
	sdc := gate.DefaultSDCRules()
	rules := engine.CheckRules{K: 10, DominanceN: sdc.DominanceN, DominanceK: sdc.DominanceK, DominanceP: sdc.DominanceP}
	checks, err := v.Checks(ctx, plan, engine.Scope{Mode: "threshold", Tables: []engine.Table{t}}, nil, rules)
	if err != nil {
		return err
	}
	checkedJob := planJob
	for i, c := range checks {
		checkedJob.Checks, checkedJob.CheckFast = append(checkedJob.Checks, c.SQL), append(checkedJob.CheckFast, c.FastSQL)
		if c.Kind == engine.CheckDominance {
			checkedJob.DominanceCheck, checkedJob.DominanceRules, checkedJob.Dominance, checkedJob.DominanceCells = i+1, &rules, plan.Dominance, c.CellSQL
			checkedJob.DominanceUnits = c.UnitsSQL
		}
	}
	var metered []time.Duration
	e.logf("real data: flights threshold GROUP BY, end to end / without the daemon / raw, interleaved...")
	s, err := interleave(e.o.Reps, sb.settle,
		step{"raw", func() (time.Duration, error) { return raw.time(ctx, rawQ) }},
		step{"floor", func() (time.Duration, error) { return raw.time(ctx, floorQ) }},
		step{"plan", func() (time.Duration, error) {
			start := time.Now()
			err := engine.Run(ctx, &planJob, io.Discard)
			return time.Since(start), err
		}},
		step{"checked", func() (time.Duration, error) {
			start := time.Now()
			job := checkedJob
			err := engine.Run(ctx, &job, io.Discard)
			return time.Since(start), err
		}},
		step{"e2e", func() (time.Duration, error) {
			dd, j, err := d.job(ctx, api.SubmitJob{Grant: gid, SQL: flightsQuery})
			if err == nil && j.Metering != nil {
				metered = append(metered, time.Duration(j.Metering.WallMS)*time.Millisecond)
			}
			return dd, err
		}},
		step{"pooled", func() (time.Duration, error) {
			if _, err := sb.waitReady(jobLimits); err != nil {
				return 0, err
			}
			start := time.Now()
			plan, err := v.Validate(ctx, flightsQuery, engine.Scope{Mode: "threshold", Tables: []engine.Table{t}})
			if err != nil {
				return 0, err
			}
			job := engine.Job{SQL: plan.SQL, FastSQL: plan.FastFor(t), K: 10, MaxRowsPerUnit: plan.RowsPerUnit(t), KeyUnits: plan.KeyUnits(t), Tables: []engine.Table{t},
				Threads: 2, MemoryLimitMB: jobMemoryMB, MaxResultBytes: jobLimits.ResultBytes}
			if job.FastSQL == "" {
				job.MaxRowsPerUnit, job.KeyUnits = 0, nil
			}
			_, _, out, err := sb.run(ctx, job, jobLimits, true)
			if err != nil {
				return 0, err
			}
			rec, err := engine.ReadResult(bytes.NewReader(out), jobLimits.ResultBytes)
			if err != nil {
				return 0, err
			}
			protected, _, err := gate.Threshold(rec, plan, gate.ThresholdRule{K: 10, RoundTo: 1})
			rec.Release()
			if err != nil {
				return 0, err
			}
			protected.Release()
			return time.Since(start), nil
		}},
	)
	if err != nil {
		return err
	}
	base := "raw DuckDB plain GROUP BY on the same file (warm database, threads=2)"
	note := fmt.Sprintf("vega-datasets@3.2.1 flights-3m.parquet, %s, threshold k=10 (privacy unit: departure minute, at most %d flights each, %d from one airport).", flightsQuery, t.MaxRowsPerUnit, t.MaxRowsPerUnitBy["origin"])
	return e.add(
		e.pairedRatio("realdata_threshold_e2e_vs_raw_ratio", s, "e2e", "raw", base, "Submit to protected output in the review queue, isolation="+e.o.Isolation+". "+note),
		e.st.ratio("realdata_threshold_metered_vs_raw_ratio", ms(median(metered)), base, ms(s.med("raw")), "The job's metered wall time (sandbox start to exit) end to end. "+note),
		e.pairedRatio("realdata_threshold_pool_vs_raw_ratio", s, "pooled", "raw", base, "Validation, the runner in a sandbox prepared ahead and the threshold gate, in this process (no API, store or audit). "+note),
		e.pairedRatio("realdata_threshold_plan_vs_raw_ratio", s, "plan", "raw", base, "The threshold plan's SQL (the row-counting variant first; the groups its counts leave decided by the units of each origin measured at registration, else exact distinct units for the undecided groups only, by their group keys) by the runner's code in this process. "+note),
		e.pairedRatio("realdata_threshold_checked_vs_raw_ratio", s, "checked", "raw", base, "The threshold plan's SQL with the checks the daemon adds (dominance, for the AVG: skipped for the cells the result's bounds, with each origin's units measured at registration, decide; the cells they leave and the groups the row counts leave get their units and verdicts in one restricted pass) by the runner's code in this process. "+note),
		e.pairedRatio("realdata_threshold_floor_vs_raw_ratio", s, "floor", "raw", base, "Raw DuckDB's own floor for a threshold: the GROUP BY with COUNT(DISTINCT unit). "+note),
	)
}

// fileSize is the size of a file in MB, for notes.
func fileSize(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / 1e6
}
