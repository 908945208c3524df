package engine_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/veil-dp/veil/engine"
)

// A job failing on a value of the data is a failure on the data whatever the value says: a
// DuckDB error quotes the value it could not convert, and a value reading like DuckDB's own
// out-of-memory or full-disk message must not make the job's class (which the vendor reads)
// a resource limit, or the class would tell the vendor what a value of the data says.
func TestResourceLimitNotFromData(t *testing.T) {
	for _, text := range []string{"No space left on device", "Out of Memory Error", "max_temp_directory_size"} {
		file := writeParquet(t, "limit.parquet", "SELECT '"+text+"' AS s, 1 AS pid")
		job := &engine.Job{SQL: "SELECT sum(CAST(s AS INTEGER)) AS n FROM t", Tables: []engine.Table{{Name: "t", Files: []string{file}, Columns: []engine.Column{
			{Name: "s", Type: "VARCHAR"}, {Name: "pid", Type: "INTEGER", PrivacyUnit: true}}}}, Threads: 1, MemoryLimitMB: 256, MaxResultBytes: 1 << 20}
		var buf bytes.Buffer
		err := engine.Run(context.Background(), job, &buf)
		if err == nil {
			t.Fatalf("%q: the cast succeeded", text)
		}
		if engine.IsResourceLimit(err) {
			t.Errorf("%q: a conversion error on a value reads as a resource limit: %v", text, err)
		}
	}
}
