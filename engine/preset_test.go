package engine

import (
	"context"
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
