package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/duckdb/duckdb-go/v2"

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

// benchScale measures dp and threshold group-bys on 100M rows by the runner in a sandbox
// prepared ahead, under the default 2 GiB limit with a spill area on disk, against raw
// DuckDB's floors on the same files in the same run (interleaved): the two-level aggregate
// (per person and group, then per group) for dp, COUNT(DISTINCT person) per group for
// threshold. It also runs the dp job once without a spill area, which is expected to fail.
func (e *env) scaleRows() int {
	if e.o.ScaleRows > 0 {
		return e.o.ScaleRows
	}
	return scaleRows
}

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
	dpPlan, err := v.ValidateDP(ctx, "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM bench_100m GROUP BY grp",
		engine.Scope{Mode: "dp", Tables: []engine.Table{t}}, engine.DPOptions{Epsilon: 1, Delta: 1e-8, MaxGroups: 1, MaxRows: 10})
	if err != nil {
		return err
	}
	thPlan, err := v.Validate(ctx, "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM bench_100m GROUP BY grp", engine.Scope{Mode: "threshold", Tables: []engine.Table{t}})
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

	// Without a spill area first: the job the issue is about, which cannot finish.
	e.logf("scale: dp group-by on %d rows without a spill area (expected to fail)...", rows)
	_, res, _, err := sb.run(ctx, dpJob, jobLimits, true)
	noSpill := "finished"
	if err != nil {
		if res == nil {
			return err
		}
		noSpill = "failed (" + string(res.Status) + ")"
	}
	e.logf("  without a spill area: %s", noSpill)
	raw, err := openRaw()
	if err != nil {
		return err
	}
	defer raw.close()
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
	src := "read_parquet(" + quoteFiles(t.Files) + ")"
	var peakDP, peakTh int64
	floorDP := "SELECT grp, SUM(n), SUM(v) FROM (SELECT person_id, grp, COUNT(*) AS n, SUM(value) AS v FROM " + src + " GROUP BY person_id, grp) GROUP BY grp"
	e.logf("scale: raw floors and the runner with a spill area, interleaved (minutes per step; the files are cached: no warm-up round)...")
	s, err := rounds(0, min(e.o.Reps, 2), sb.settle,
		step{"floor-dp", func() (time.Duration, error) { return raw.time(ctx, floorDP) }},
		step{"floor-dp-limited", func() (time.Duration, error) { return limited.time(ctx, floorDP) }},
		step{"dp-inproc", func() (time.Duration, error) {
			start := time.Now()
			err := engine.Run(ctx, &inproc, io.Discard)
			return time.Since(start), err
		}},
		step{"dp", func() (time.Duration, error) {
			d, res, _, err := sb.run(ctx, dpJob, spill, true)
			if err == nil {
				peakDP = max(peakDP, res.Usage.PeakMemoryBytes)
			}
			return d, err
		}},
		step{"floor-threshold", func() (time.Duration, error) {
			return raw.time(ctx, "SELECT grp, COUNT(*), SUM(value), COUNT(DISTINCT person_id) FROM "+src+" GROUP BY grp")
		}},
		step{"threshold", func() (time.Duration, error) {
			d, res, out, err := sb.run(ctx, thJob, spill, true)
			if err == nil {
				peakTh = max(peakTh, res.Usage.PeakMemoryBytes)
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
		e.pairedRatio("dp_groupby_100m_sandbox_vs_floor_ratio", s, "dp", "floor-dp", "raw DuckDB two-level aggregate per (person, group) then per group, same files, threads=2, no memory limit",
			"DP COUNT(*) and SUM per group, max_groups 1, max_rows 10, ε=1. "+note),
		e.pairedRatio("threshold_100m_sandbox_vs_floor_ratio", s, "threshold", "floor-threshold", "raw DuckDB GROUP BY with COUNT(DISTINCT person), same files, threads=2, no memory limit",
			"threshold k=10 COUNT and SUM per group, with the gate. "+note),
		e.st.value("dp_groupby_100m_peak_mem_mb", float64(peakDP>>20), "MB", "peak memory of the sandboxed runner (cgroup) running the dp group-by on 100M rows under the default 2 GiB limit. "+note),
		e.st.value("threshold_100m_peak_mem_mb", float64(peakTh>>20), "MB", "peak memory of the sandboxed runner (cgroup) running the threshold group-by on 100M rows under the default 2 GiB limit. "+note),
	)
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
