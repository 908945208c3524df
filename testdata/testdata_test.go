package testdata_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/testdata"
)

// TestGenerate checks every generated table against its schema file: the schema parses and
// passes policy's checks, the file's columns and types are exactly the schema's, and the
// declared maximum of rows per privacy unit holds.
func TestGenerate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := testdata.Generate(ctx, dir, 2000); err != nil {
		t.Fatal(err)
	}
	if err := testdata.GenerateBench(ctx, dir, 5000, 700, 10); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		name    string
		minRows int64
	}{{"residents", 2000}, {"social_insurance", 1000}, {"medical_visits", 1000}, {"enterprises", 100}, {"bench_events", 5000}} {
		t.Run(tc.name, func(t *testing.T) {
			y, err := os.ReadFile(filepath.Join(dir, tc.name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			sch, err := policy.ParseSchema(y)
			if err != nil {
				t.Fatalf("schema: %v", err)
			}
			if !sch.Synthetic {
				t.Error("generated data must be declared synthetic")
			}
			file := filepath.Join(dir, tc.name+".parquet")
			rows, err := db.Query(fmt.Sprintf("DESCRIBE SELECT * FROM '%s'", file))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for rows.Next() {
				var name, typ string
				var x1, x2, x3, x4 any
				if err := rows.Scan(&name, &typ, &x1, &x2, &x3, &x4); err != nil {
					t.Fatal(err)
				}
				got = append(got, name+" "+typ)
			}
			rows.Close()
			var want []string
			unit := ""
			for _, c := range sch.Columns {
				want = append(want, c.Name+" "+c.Type)
				if c.PrivacyUnit {
					unit = c.Name
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("file columns %v, schema %v", got, want)
			}
			var n, maxPer int64
			q := fmt.Sprintf("SELECT (SELECT COUNT(*) FROM '%[1]s'), (SELECT max(c) FROM (SELECT COUNT(*) c FROM '%[1]s' GROUP BY %[2]s))", file, unit)
			if err := db.QueryRow(q).Scan(&n, &maxPer); err != nil {
				t.Fatal(err)
			}
			if n < tc.minRows || maxPer > sch.MaxRowsPerUnit {
				t.Fatalf("%d rows (want at least %d), at most %d per unit (declared %d)", n, tc.minRows, maxPer, sch.MaxRowsPerUnit)
			}
		})
	}
}

// TestDeterministic generates twice and compares the bytes.
func TestDeterministic(t *testing.T) {
	ctx := context.Background()
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := testdata.Generate(ctx, d, 500); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(a, "*"))
	if len(files) != 8 {
		t.Fatalf("%d files", len(files))
	}
	for _, f := range files {
		x, _ := os.ReadFile(f)
		y, _ := os.ReadFile(filepath.Join(b, filepath.Base(f)))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs", filepath.Base(f))
		}
	}
}
