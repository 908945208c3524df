package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duckdb/duckdb-go/v2"
)

// A runner opened with settings ahead gives its job the database a runner without them
// gives it: the job's own threads and memory limit (or DuckDB's default) whatever was preset.
func TestRunnerPreset(t *testing.T) {
	res, vis := writeParquet(t)
	sc := scope(res, vis)
	settings := func(p Preset, j *Job) (threads, memory string) {
		t.Helper()
		r, err := OpenRunnerWith(p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		err = r.session(context.Background(), j, func(*duckdb.Arrow) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if err := r.conn.QueryRowContext(context.Background(), "SELECT current_setting('threads')::VARCHAR, current_setting('memory_limit')::VARCHAR").Scan(&threads, &memory); err != nil {
			t.Fatal(err)
		}
		return threads, memory
	}
	for _, j := range []*Job{
		{SQL: "SELECT 1", Tables: sc.Tables, Threads: 2, MemoryLimitMB: 300},
		{SQL: "SELECT 1", Tables: sc.Tables, Threads: 1, MemoryLimitMB: 200},
		{SQL: "SELECT 1", Tables: sc.Tables, Threads: 1},
	} {
		wantT, wantM := settings(Preset{}, j)
		for _, p := range []Preset{{Threads: 2, MemoryLimitMB: 300}, {Threads: 1}, {MemoryLimitMB: 200}} {
			if gotT, gotM := settings(p, j); gotT != wantT || gotM != wantM {
				t.Errorf("job threads %d memory %d, preset %+v: threads %s, memory %s; without a preset %s, %s", j.Threads, j.MemoryLimitMB, p, gotT, gotM, wantT, wantM)
			}
		}
	}
}

// A runner given its spill area ahead gives its job the temporary directory a runner
// without it gives: a fresh private directory below the job's TempDir with the job's limit,
// or none for a job without one; and nothing is left in either area after the job.
func TestRunnerPresetTemp(t *testing.T) {
	res, vis := writeParquet(t)
	sc := scope(res, vis)
	ahead, other := t.TempDir(), t.TempDir()
	settings := func(p Preset, j *Job) (dir, size string) {
		t.Helper()
		r, err := OpenRunnerWith(p)
		if err != nil {
			t.Fatal(err)
		}
		err = r.session(context.Background(), j, func(ar *duckdb.Arrow) error {
			// The job's SQL cannot read the settings (the validator refuses current_setting).
			rr, err := ar.QueryContext(context.Background(), "SELECT current_setting('temp_directory')::VARCHAR, current_setting('max_temp_directory_size')::VARCHAR")
			if err != nil {
				return err
			}
			defer rr.Release()
			for rr.Next() {
				rec := rr.RecordBatch()
				dir, size = strings.Clone(rec.Column(0).ValueStr(0)), strings.Clone(rec.Column(1).ValueStr(0))
			}
			return rr.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{ahead, other} {
			if ents, _ := os.ReadDir(d); len(ents) != 0 {
				t.Errorf("preset %+v, job temp %q: %d entries left in %s", p, j.TempDir, len(ents), d)
			}
		}
		switch {
		case j.TempDir == "" && dir != "":
			t.Errorf("preset %+v, job without a spill area: temp_directory %q", p, dir)
		case j.TempDir != "" && (filepath.Dir(dir) != j.TempDir || !strings.HasPrefix(filepath.Base(dir), "duckdb-")):
			t.Errorf("preset %+v, job temp %q: temp_directory %q, want a private directory below it", p, j.TempDir, dir)
		}
		return dir, size
	}
	for _, j := range []*Job{
		{SQL: "SELECT 1", Tables: sc.Tables, Threads: 1, TempDir: ahead, TempMaxMB: 100},
		{SQL: "SELECT 1", Tables: sc.Tables, Threads: 1, TempDir: ahead, TempMaxMB: 50},
		{SQL: "SELECT 1", Tables: sc.Tables, Threads: 1, TempDir: other, TempMaxMB: 100},
		{SQL: "SELECT 1", Tables: sc.Tables, Threads: 1},
	} {
		_, want := settings(Preset{}, j)
		for _, p := range []Preset{{TempDir: ahead, TempMaxMB: 100}, {Threads: 1, TempDir: ahead, TempMaxMB: 50}} {
			if _, got := settings(p, j); got != want {
				t.Errorf("job temp %q %d MB, preset %+v: max_temp_directory_size %s; without a preset %s", j.TempDir, j.TempMaxMB, p, got, want)
			}
		}
	}
}
