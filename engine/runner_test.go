package engine

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bigTable writes n rows with n distinct keys: aggregating by key needs a hash table far
// larger than a few MB.
func bigTable(t *testing.T, n int) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "big.parquet")
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := fmt.Sprintf("COPY (SELECT i AS k, i %% 7 AS g, (i * 31) %% 1000 AS v FROM range(%d) t(i)) TO '%s' (FORMAT parquet)", n, file)
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
	return file
}

// A job that does not fit in its memory limit completes when it has a temporary
// directory, fails without one, and leaves nothing behind in the directory.
func TestRunSpills(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: writes and aggregates 4M rows")
	}
	file := bigTable(t, 4_000_000)
	tables := []Table{{Name: "big", Files: []string{file}, Columns: []Column{{Name: "k"}, {Name: "g"}, {Name: "v"}}}}
	q := "SELECT g, COUNT(*) AS n, SUM(s) AS s FROM (SELECT k, g, SUM(v) AS s FROM big GROUP BY k, g) GROUP BY g ORDER BY g"
	job := Job{SQL: q, Tables: tables, Threads: 1, MemoryLimitMB: 40, MaxResultBytes: 1 << 20}

	var out bytes.Buffer
	err := Run(context.Background(), &job, &out)
	if err == nil || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("without a temporary directory: err %v, want out of memory", err)
	}

	spill := t.TempDir()
	job.TempDir, job.TempMaxMB = spill, 1024
	out.Reset()
	if err := Run(context.Background(), &job, &out); err != nil {
		t.Fatalf("with a temporary directory: %v", err)
	}
	rec, err := ReadResult(&out, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if rec.NumRows() != 7 {
		t.Fatalf("%d groups, want 7", rec.NumRows())
	}
	var total int64
	for i := 0; i < int(rec.NumRows()); i++ {
		var n int64
		fmt.Sscan(rec.Column(1).ValueStr(i), &n)
		total += n
	}
	if total != 4_000_000 {
		t.Errorf("the groups count %d keys, want 4000000", total)
	}
	if ents, _ := os.ReadDir(spill); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}

	// A limit on the temporary directory holds too.
	job.TempMaxMB = 1
	if err := Run(context.Background(), &job, &out); err == nil {
		t.Error("a job that needs more than TempMaxMB of temporary files succeeded")
	}
}

// The spill area gives the job's SQL no way to read or write files there by name. (DuckDB
// always allows its own temporary directory, a fresh directory with a random name below
// TempDir; finding that name needs current_setting, which the validator refuses.)
func TestTempDirStaysPrivate(t *testing.T) {
	spill := t.TempDir()
	if err := os.WriteFile(filepath.Join(spill, "x.csv"), []byte("a\n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, vis := writeParquet(t)
	sc := scope(res, vis)
	for _, q := range []string{
		"SELECT * FROM read_csv('" + spill + "/x.csv')",
		"SELECT * FROM glob('" + spill + "/*')",
		"COPY (SELECT 1) TO '" + spill + "/y.csv'",
		"SELECT * FROM glob('" + spill + "/*/*')",
		"SET temp_directory='/tmp'",
		"SET max_temp_directory_size='100GB'",
	} {
		var buf bytes.Buffer
		if err := Run(context.Background(), &Job{SQL: q, Tables: sc.Tables, Threads: 1, MaxResultBytes: 1 << 20, TempDir: spill, TempMaxMB: 10}, &buf); err == nil {
			t.Errorf("%q ran in the runner", q)
		}
	}
}

// A runner's database, opened before its job is known, serves that one job only.
func TestRunnerRunsOneJob(t *testing.T) {
	res, vis := writeParquet(t)
	sc := scope(res, vis)
	r, err := OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	job := &Job{SQL: "SELECT district, COUNT(*) FROM residents GROUP BY district", Tables: sc.Tables, Threads: 1, MaxResultBytes: 1 << 20}
	var out bytes.Buffer
	if err := r.Run(context.Background(), job, &out); err != nil {
		t.Fatal(err)
	}
	if out.Len() == 0 {
		t.Fatal("no result")
	}
	if err := r.Run(context.Background(), job, &out); err == nil {
		t.Fatal("a runner ran a second job")
	}
	if err := r.Stream(context.Background(), job, []string{"SELECT 1"}, nil); err == nil {
		t.Fatal("a runner streamed for a second job")
	}
}

// A dp job (one with a secret) aggregates into arrays for units of a range up to
// 2^DPPerfectHashBits; other jobs keep DuckDB's default.
func TestDPJobPerfectHash(t *testing.T) {
	file := bigTable(t, 10)
	tables := []Table{{Name: "big", Files: []string{file}, Columns: []Column{{Name: "k"}, {Name: "g"}, {Name: "v"}}}}
	for _, c := range []struct {
		secret int64
		want   string
	}{{0, "12"}, {5, fmt.Sprint(DPPerfectHashBits)}} {
		var out bytes.Buffer
		job := Job{SQL: "SELECT current_setting('perfect_ht_threshold')::VARCHAR AS b", Tables: tables, Threads: 1, MaxResultBytes: 1 << 20, Secret: c.secret}
		if err := Run(context.Background(), &job, &out); err != nil {
			t.Fatal(err)
		}
		rec, err := ReadResult(&out, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if got := rec.Column(0).ValueStr(0); got != c.want {
			t.Errorf("secret %d: perfect_ht_threshold %s, want %s", c.secret, got, c.want)
		}
		rec.Release()
	}
}

// peakRSSKB is the process's peak resident memory (VmHWM) in KiB; reset sets it to what is
// resident now.
func peakRSSKB(t *testing.T, reset bool) int64 {
	t.Helper()
	if reset {
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			t.Skipf("cannot reset the peak resident memory: %v", err)
		}
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			var kb int64
			fmt.Sscan(f[1], &kb)
			return kb
		}
	}
	t.Skip("no VmHWM")
	return 0
}

// A dp job's per-unit aggregation into an array (DPPerfectHashBits) is memory DuckDB does not
// count against its memory_limit: one entry of every state per possible unit of the units'
// range, whatever the number of rows. The widest dp query on two rows whose units lie 200,000
// apart (a range of fewer than 2^18) stays within the job's memory limit all the same.
func TestDPPerfectHashWithinMemoryLimit(t *testing.T) {
	file := filepath.Join(t.TempDir(), "wide.parquet")
	var cols, sums []string
	bounds := map[string][2]float64{}
	for i := range MaxDPAggregates {
		cols = append(cols, fmt.Sprintf("%d.5::DOUBLE AS v%d", i, i))
		sums = append(sums, fmt.Sprintf("SUM(v%d)", i))
		bounds[fmt.Sprintf("v%d", i)] = [2]float64{0, 100}
	}
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf("COPY (SELECT u::BIGINT AS pid, %s FROM (VALUES (0), (%d)) AS x(u)) TO '%s' (FORMAT parquet)", strings.Join(cols, ", "), 200000, file)
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
	db.Close()
	columns := []Column{{Name: "pid", Type: "BIGINT", PrivacyUnit: true}}
	for i := range MaxDPAggregates {
		columns = append(columns, Column{Name: fmt.Sprintf("v%d", i), Type: "DOUBLE"})
	}
	sc := Scope{Mode: "dp", Tables: []Table{{Name: "wide", Files: []string{file}, Columns: columns}}}
	plan, err := newValidator(t).ValidateDP(context.Background(), "SELECT "+strings.Join(sums, ", ")+" FROM wide", sc, DPOptions{Epsilon: 1, Delta: 1e-6, MaxRows: 2, Bounds: bounds})
	if err != nil {
		t.Fatal(err)
	}
	const limitMB = 64
	job := Job{SQL: plan.SQL, Tables: sc.Tables, Threads: 2, MemoryLimitMB: limitMB, MaxResultBytes: 1 << 20, Secret: 7, DPStateBytes: plan.DP.StateBytes()}
	r, err := OpenRunner()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out bytes.Buffer
	before := peakRSSKB(t, true)
	if err := r.Run(context.Background(), &job, &out); err != nil {
		t.Fatal(err)
	}
	if grew := (peakRSSKB(t, false) - before) >> 10; grew > limitMB {
		t.Errorf("the job's peak memory grew by %d MB, beyond its memory limit of %d MB", grew, limitMB)
	}
	// A count and a sum on the daemon's default limits keep the full arrays.
	narrow := &DPPlan{Aggs: []DPAgg{{Kind: AggCount}, {Kind: AggSum}}}
	if bits := perfectHash(2, 1536, narrow.StateBytes()); bits != DPPerfectHashBits {
		t.Errorf("a count and a sum on 2 threads and 1536 MB: perfect_ht_threshold %d, want %d", bits, DPPerfectHashBits)
	}
}
