package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
)

// The scale benchmark: a province-sized table of 100M rows about 10M persons (10 rows
// each) in 1,000 groups, in 10 Parquet files of 10M rows.
const (
	scaleRows   = 100_000_000 // Options.ScaleRows overrides it (units are a tenth of the rows)
	scaleGroups = 1_000
	scaleParts  = 10
	// scaleSpillBytes is the spill area of a scale job: a sparse image, only what DuckDB
	// writes takes disk space.
	scaleSpillBytes = 16 << 30
)

// GenerateScale writes name-00.parquet ... (parts files) under dir: rows rows, row i about
// person i mod units (so every person has rows/units rows, spread over all files), in group
// a multiplicative hash of i mod groups, with a value in [0, 1000). The content depends on
// nothing but the arguments; each file is written by its own COPY from a range, so memory
// stays that of one row group whatever rows is. A file is renamed into place only once
// complete, and files already there are kept.
func GenerateScale(ctx context.Context, dir, name string, rows, units, groups, parts int) ([]string, error) {
	if rows < parts || units < 1 || groups < 1 || parts < 1 || rows%parts != 0 {
		return nil, fmt.Errorf("scale data: rows must be a positive multiple of parts, units and groups positive")
	}
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	db := sql.OpenDB(c)
	defer db.Close()
	db.SetMaxOpenConns(1)
	// Rows in order within a file: the layout is reproducible, not only the content.
	if _, err := db.ExecContext(ctx, "SET preserve_insertion_order=true"); err != nil {
		return nil, err
	}
	per := rows / parts
	var files []string
	for p := 0; p < parts; p++ {
		file := filepath.Join(dir, fmt.Sprintf("%s-%02d.parquet", name, p))
		files = append(files, file)
		if _, err := os.Stat(file); err == nil {
			continue
		}
		tmp := file + ".tmp"
		q := fmt.Sprintf(`COPY (SELECT (i %% %[3]d)::BIGINT AS person_id,
			'g' || lpad(((i * 2654435761 + 12345) %% 4294967291 %% %[4]d)::VARCHAR, 4, '0') AS grp,
			((i * 40503 + 7) %% 1000003) / 1000.0 AS value
			FROM range(%[1]d, %[2]d) t(i)) TO '%[5]s' (FORMAT parquet, ROW_GROUP_SIZE 1000000)`,
			p*per, (p+1)*per, units, groups, tmp)
		if _, err := db.ExecContext(ctx, q); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("generate %s: %w", file, err)
		}
		if err := os.Rename(tmp, file); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func (e *env) scaleTable(ctx context.Context) (engine.Table, error) {
	rows := e.scaleRows()
	dir := filepath.Join(e.data, fmt.Sprintf("bench_scale_%d", rows))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return engine.Table{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("bench_100m-%02d.parquet", scaleParts-1))); err != nil {
		e.logf("generating bench_100m: %d rows, %d persons, %d groups, %d files...", rows, rows/10, scaleGroups, scaleParts)
	}
	files, err := GenerateScale(ctx, dir, "bench_100m", rows, rows/10, scaleGroups, scaleParts)
	if err != nil {
		return engine.Table{}, err
	}
	return engine.Table{Name: "bench_100m", Files: files, MaxRowsPerUnit: 10, UnitComplete: true, Unit: "person",
		Columns: []engine.Column{
			{Name: "person_id", Type: "BIGINT", PrivacyUnit: true},
			{Name: "grp", Type: "VARCHAR"},
			{Name: "value", Type: "DOUBLE", Bounds: []float64{0, 1000}},
		}}, nil
}

// scaleRows is the suite's row count: --scale-rows, or 100M.
func (e *env) scaleRows() int {
	if e.o.ScaleRows > 0 {
		return e.o.ScaleRows
	}
	return scaleRows
}

// benchScale measures dp and threshold group-bys on 100M rows by the runner in a sandbox
// prepared ahead, under the default 2 GiB limit with a spill area on disk, against raw
// DuckDB's floors on the same files in the same run (interleaved): the two-level aggregate
// (per person and group, then per group) for dp, COUNT(DISTINCT person) per group for
// threshold. It also runs the dp job once without a spill area, and says whether it finished
// (it failed under the 2 GiB limit on 2026-12-02; it finished on 2026-12-03).
func benchScale(ctx context.Context, e *env) error {
	rows := e.scaleRows()
	t, err := e.scaleTable(ctx)
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
	dpPlan, err := v.ValidateDP(ctx, scaleQuery,
		engine.Scope{Mode: "dp", Tables: []engine.Table{t}}, engine.DPOptions{Epsilon: 1, Delta: 1e-8, MaxGroups: 1, MaxRows: 10})
	if err != nil {
		return err
	}
	thPlan, err := v.Validate(ctx, scaleQuery, engine.Scope{Mode: "threshold", Tables: []engine.Table{t}})
	if err != nil {
		return err
	}
	var secret [8]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return err
	}
	base := engine.Job{Tables: []engine.Table{t}, Threads: 2, MemoryLimitMB: jobMemoryMB, MaxResultBytes: jobLimits.ResultBytes}
	dpJob := base
	dpJob.SQL, dpJob.Secret = dpPlan.SQL, int64(binary.LittleEndian.Uint64(secret[:])|1)
	thJob := base
	thJob.SQL, thJob.FastSQL, thJob.K, thJob.MaxRowsPerUnit = thPlan.SQL, thPlan.FastSQL, 10, t.MaxRowsPerUnit
	if thPlan.FastSQL == "" {
		thJob.FastSQL, thJob.MaxRowsPerUnit = "", 0
	}
	spill := jobLimits
	spill.SpillBytes = scaleSpillBytes

	raw, err := openRaw()
	if err != nil {
		return err
	}
	defer raw.close()
	src := "read_parquet(" + quoteFiles(t.Files) + ")"
	floorDP := "SELECT grp, SUM(n), SUM(v) FROM (SELECT person_id, grp, COUNT(*) AS n, SUM(value) AS v FROM " + src + " GROUP BY person_id, grp) GROUP BY grp"
	floorTh := "SELECT grp, COUNT(*), SUM(value), COUNT(DISTINCT person_id) FROM " + src + " GROUP BY grp"
	floorDPName := "raw DuckDB two-level aggregate per (person, group) then per group, same files, threads=2, no memory limit"
	floorThName := "raw DuckDB GROUP BY with COUNT(DISTINCT person), same files, threads=2, no memory limit"
	n := min(e.o.Reps, 2)

	// End to end first: a daemon with the default job limits (2 GiB, its DuckDB's share,
	// the default spill area), the 10 files registered as a dataset, dp and threshold
	// grants; the figures are written after every round, so that a long run that is
	// stopped keeps what it measured.
	sd, err := e.scaleDaemon(ctx, t)
	if err != nil {
		return err
	}
	daemonUp := true
	defer func() {
		if daemonUp {
			sd.d.stop()
		}
	}()
	e2eNote := fmt.Sprintf("%d rows, %d persons (%d rows each), %d groups, %d Parquet files (%.0f MB) registered as one dataset; a daemon with the default job limits (%d MB, DuckDB %d MB, 2 threads, a spill area of %d MB on disk (configured %d MB, fitted to the free disk), a fresh sandbox for each job; the wall limit raised to 20 min); raw DuckDB on the generated files, the job on the daemon's projection of them.",
		rows, rows/10, 10, scaleGroups, scaleParts, filesSize(t.Files), sd.cfg.JobMemoryMB, sd.cfg.DuckDBMemoryMB(), sd.cfg.JobSpillMB, sd.spillMB)
	var peakDP, peakTh, residentDP, residentTh int64
	e2e := func(req api.SubmitJob, peak, resident *int64) func() (time.Duration, error) {
		return func() (time.Duration, error) {
			d, j, err := sd.d.job(ctx, req)
			if err == nil && j.Metering != nil {
				*peak, *resident = max(*peak, j.Metering.PeakMemoryMB), max(*resident, j.Metering.PeakResidentMB)
			}
			return d, err
		}
	}
	e.logf("scale: raw floors and the jobs end to end through the daemon, interleaved (minutes per step; the files are cached: no warm-up round)...")
	all := samples{}
	for r := 0; r < n; r++ {
		s, err := rounds(0, 1, nil,
			step{"floor-dp", func() (time.Duration, error) { return raw.time(ctx, floorDP) }},
			step{"dp-e2e", e2e(dpSubmit(sd.dp, scaleQuery), &peakDP, &residentDP)},
			step{"floor-threshold", func() (time.Duration, error) { return raw.time(ctx, floorTh) }},
			step{"threshold-e2e", e2e(api.SubmitJob{Grant: sd.threshold, SQL: scaleQuery}, &peakTh, &residentTh)},
		)
		if err != nil {
			return err
		}
		for k, v := range s {
			all[k] = append(all[k], v...)
		}
		if err := e.add(
			e.pairedRatio("dp_groupby_100m_vs_floor_ratio", all, "dp-e2e", "floor-dp", floorDPName,
				"DP COUNT(*) and SUM per group, max_groups 1, max_rows 10, ε=1, end to end: submission to the noisy output in the review queue. "+e2eNote),
			e.pairedRatio("threshold_100m_vs_floor_ratio", all, "threshold-e2e", "floor-threshold", floorThName,
				"threshold k=10 COUNT and SUM per group, end to end: submission to the protected output in the review queue. "+e2eNote),
			e.st.value("dp_groupby_100m_peak_mem_mb", float64(peakDP), "MB", "peak memory (the cgroup's, page cache of the files it read and spilled included) of the daemon's dp job on 100M rows under the default 2 GiB limit, largest of the runs. "+e2eNote),
			e.st.value("dp_groupby_100m_peak_resident_mb", float64(residentDP), "MB", "of that, the most the kernel could not reclaim (anonymous and tmpfs memory, sampled every 100 ms): what the 2 GiB limit has to hold. "+e2eNote),
			e.st.value("threshold_100m_peak_mem_mb", float64(peakTh), "MB", "peak memory (the cgroup's) of the daemon's threshold job on 100M rows under the default 2 GiB limit. "+e2eNote),
			e.st.value("threshold_100m_peak_resident_mb", float64(residentTh), "MB", "of that, the most the kernel could not reclaim (anonymous and tmpfs memory, sampled). "+e2eNote),
		); err != nil {
			return err
		}
	}
	daemonUp = false
	if err := sd.d.stop(); err != nil {
		return err
	}

	// The breakdown: the same plans by the runner in a sandbox prepared ahead (validation
	// done, no daemon), by the runner's code in this process, and the raw floor with the
	// job's memory limit; first the dp job without a spill area (whether it finishes is reported).
	e.logf("scale: dp group-by on %d rows without a spill area (does it finish?)...", rows)
	_, res, _, err := sb.run(ctx, dpJob, jobLimits, true)
	noSpill := "finished"
	if err != nil {
		if res == nil {
			return err
		}
		noSpill = "failed (" + string(res.Status) + ")"
	}
	e.logf("  without a spill area: %s", noSpill)
	// The same memory as the job's DuckDB and a temporary directory on the same disk: what
	// the memory limit costs DuckDB itself, sandbox or not.
	tmp, err := os.MkdirTemp(e.o.Dir, "spill-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	limited, err := openRaw(fmt.Sprintf("SET memory_limit='%dMB'", jobMemoryMB), "SET temp_directory='"+tmp+"'", "SET preserve_insertion_order=false")
	if err != nil {
		return err
	}
	defer limited.close()
	inproc := dpJob
	inproc.TempDir, inproc.TempMaxMB = tmp, int(scaleSpillBytes>>20)*9/10
	e.logf("scale: raw floors and the runner with a spill area, interleaved...")
	s, err := rounds(0, n, sb.settle,
		step{"floor-dp", func() (time.Duration, error) { return raw.time(ctx, floorDP) }},
		step{"floor-dp-limited", func() (time.Duration, error) { return limited.time(ctx, floorDP) }},
		step{"dp-inproc", func() (time.Duration, error) {
			start := time.Now()
			err := engine.Run(ctx, &inproc, io.Discard)
			return time.Since(start), err
		}},
		step{"dp", func() (time.Duration, error) {
			d, _, _, err := sb.run(ctx, dpJob, spill, true)
			return d, err
		}},
		step{"floor-threshold", func() (time.Duration, error) { return raw.time(ctx, floorTh) }},
		step{"threshold", func() (time.Duration, error) {
			d, _, out, err := sb.run(ctx, thJob, spill, true)
			if err == nil {
				err = gateThreshold(out, thPlan)
			}
			return d, err
		}},
	)
	if err != nil {
		return err
	}
	note := fmt.Sprintf("%d rows, %d persons (%d rows each), %d groups, %d Parquet files (%.0f MB); the runner in a sandbox prepared ahead (validation done, gate not included for dp), 2 threads, 2 GiB (DuckDB %d MB), spill area on disk; the same plan without a spill area %s.",
		rows, rows/10, 10, scaleGroups, scaleParts, filesSize(t.Files), jobMemoryMB, noSpill)
	limitedNote := fmt.Sprintf("memory_limit %d MB and a temporary directory on the same disk. ", jobMemoryMB)
	return e.add(
		e.pairedRatio("dp_groupby_100m_floor_limited_vs_floor_ratio", s, "floor-dp-limited", "floor-dp", "raw DuckDB two-level aggregate, same files, threads=2, no memory limit",
			"The same raw floor with the job's "+limitedNote+"What the memory limit costs DuckDB itself. "+note),
		e.pairedRatio("dp_groupby_100m_sandbox_vs_inproc_ratio", s, "dp", "dp-inproc", "the runner's code in this process with the same plan, "+limitedNote,
			"What the sandbox costs at this size (its spill file system, cgroup, process). "+note),
		e.pairedRatio("dp_groupby_100m_sandbox_vs_floor_ratio", s, "dp", "floor-dp", floorDPName,
			"DP COUNT(*) and SUM per group, max_groups 1, max_rows 10, ε=1. "+note),
		e.pairedRatio("threshold_100m_sandbox_vs_floor_ratio", s, "threshold", "floor-threshold", floorThName,
			"threshold k=10 COUNT and SUM per group, with the gate. "+note),
	)
}

// scaleQuery is the scale suite's group-by, dp and threshold.
const scaleQuery = "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM bench_100m GROUP BY grp"

// scaleSchema declares the scale table to the daemon.
const scaleSchema = `name: bench_100m
title: Benchmark, 100M rows
provider: bench
unit: person
max_rows_per_unit: 10
synthetic: true
budget: {epsilon: 100, delta: 1.0e-5}
columns:
  - {name: person_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: grp, type: VARCHAR, level: 1, kind: none}
  - {name: value, type: DOUBLE, level: 2, kind: none, bounds: [0, 1000]}
`

// scaleEnv is the scale suite's daemon: the default job limits, the scale table
// registered, a dp grant and a threshold grant on it.
type scaleEnv struct {
	d             *daemonEnv
	cfg           daemon.Config // JobSpillMB: the spill area jobs get
	spillMB       int           // the spill area configured (the default)
	dp, threshold string
}

// scaleDaemon starts a daemon with the default job limits, registers t's files as one
// dataset and runs one job of each grant unmeasured (the first makes the projection of the
// files onto the grant's columns).
func (e *env) scaleDaemon(ctx context.Context, t engine.Table) (*scaleEnv, error) {
	var cfg daemon.Config
	d, err := e.newDaemonWith(ctx, func(c *daemon.Config) {
		c.Workers = 1
		// The default wall limit (5 min) is raised: on a loaded machine the 100M-row dp
		// job can take longer than that, and the run would lose its figures. Memory,
		// threads and the spill area are the defaults.
		c.JobWall = 20 * time.Minute
		cfg = *c
	})
	if err != nil {
		return nil, err
	}
	s := &scaleEnv{d: d, cfg: cfg, spillMB: cfg.JobSpillMB}
	// What a job gets: the default spill area, or less where the disk cannot hold one for
	// every sandbox at once (the daemon fits it and warns).
	s.cfg.JobSpillMB = d.srv.JobSpillMB()
	fail := func(err error) (*scaleEnv, error) { return nil, errors.Join(err, d.stop()) }
	e.logf("scale: registering the %d files with a daemon with the default job limits (%d MB, spill area %d MB)...", len(t.Files), cfg.JobMemoryMB, s.cfg.JobSpillMB)
	if _, err := d.clients.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: scaleSchema, Files: t.Files}); err != nil {
		return fail(fmt.Errorf("register bench_100m: %w", err))
	}
	access := []api.DatasetAccess{{Name: "bench_100m", Columns: []string{"grp", "value"}}}
	if s.dp, err = d.grant(ctx, api.ApplyGrant{Scenario: "bench scale dp", Purpose: "benchmark", Modes: []string{"dp"}, Epsilon: 10, Delta: 1e-7, MaxQuery: 1, ValidFor: "1d", Datasets: access}); err != nil {
		return fail(err)
	}
	if s.threshold, err = d.grant(ctx, api.ApplyGrant{Scenario: "bench scale threshold", Purpose: "benchmark", Modes: []string{"threshold"}, K: 10, RoundTo: 1, ValidFor: "1d", Datasets: access}); err != nil {
		return fail(err)
	}
	e.logf("scale: one job of each grant, unmeasured (the first projects the files onto the grant's columns)...")
	for _, req := range []api.SubmitJob{dpSubmit(s.dp, scaleQuery), {Grant: s.threshold, SQL: scaleQuery}} {
		if _, _, err := d.job(ctx, req); err != nil {
			return fail(fmt.Errorf("scale warm-up job: %w", err))
		}
	}
	return s, nil
}

// gateThreshold reads a threshold job's exact result and applies the gate, as the daemon does.
func gateThreshold(out []byte, plan *engine.Plan) error {
	rec, err := engine.ReadResult(bytes.NewReader(out), int64(len(out))+1)
	if err != nil {
		return err
	}
	defer rec.Release()
	protected, _, err := gate.Threshold(rec, plan, gate.ThresholdRule{K: 10, RoundTo: 1})
	if err != nil {
		return err
	}
	protected.Release()
	return nil
}

func quoteFiles(files []string) string {
	var b bytes.Buffer
	b.WriteString("[")
	for i, f := range files {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "'%s'", f)
	}
	b.WriteString("]")
	return b.String()
}

func filesSize(files []string) float64 {
	var n float64
	for _, f := range files {
		n += fileSize(f)
	}
	return n
}
