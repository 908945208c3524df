package engine

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sourceFiles writes a dataset of two Parquet files with several row groups each.
func sourceFiles(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var files []string
	for i, n := range []int{5000, 3000} {
		f := filepath.Join(dir, fmt.Sprintf("part%d.parquet", i))
		if _, err := db.Exec(fmt.Sprintf(`COPY (SELECT %d * 10000 + r AS resident_id, 'P' || r AS name, ['north', 'south'][r %% 2 + 1] AS district,
			(r %% 90)::INTEGER AS age, r * 1.25 AS income, (r %% 7)::DECIMAL(10,2) AS score, DATE '2020-01-01' + (r %% 365)::INTEGER AS seen,
			'secret-' || r AS religion FROM range(%d) t(r)) TO '%s' (FORMAT parquet, ROW_GROUP_SIZE 1024)`, i, n, f)); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

func fileDigest(t *testing.T, files []string) string {
	t.Helper()
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestProjectColumns: the projection of a dataset's files holds exactly the given columns,
// with the same types, the same rows in the same order and the same row groups; it is the
// same bytes every time it is made, and a second call reuses the first one's files.
func TestProjectColumns(t *testing.T) {
	ctx := context.Background()
	src := sourceFiles(t)
	cols := []string{"seen", "district", "resident_id", "score", "age"} // any order, not the file's
	dir := filepath.Join(t.TempDir(), ProjectionKey("v1", cols))
	out, err := ProjectColumns(ctx, src, cols, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(src) {
		t.Fatalf("%d projected files for %d source files", len(out), len(src))
	}
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range src {
		// Exactly the columns, in the file's order, with the file's types.
		want, err := Inspect(ctx, src[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		got, err := Inspect(ctx, out[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		var wantCols []FileColumn
		for _, c := range want.Columns {
			if slices.Contains(cols, c.Name) {
				wantCols = append(wantCols, c)
			}
		}
		if fmt.Sprint(got.Columns) != fmt.Sprint(wantCols) || got.Rows != want.Rows {
			t.Errorf("file %d: columns %v rows %d, want %v rows %d", i, got.Columns, got.Rows, wantCols, want.Rows)
		}
		// The same rows in the same order.
		q := `SELECT md5(string_agg(concat_ws('|', resident_id, district, age, score, seen), ',' ORDER BY file_row_number)) FROM read_parquet('%s', file_row_number = true)`
		var a, b string
		if err := db.QueryRow(fmt.Sprintf(q, src[i])).Scan(&a); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(fmt.Sprintf(q, out[i])).Scan(&b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("file %d: the projection's rows differ from the source's", i)
		}
		// The same row groups.
		rg := `SELECT list(num_rows ORDER BY row_group_id)::VARCHAR FROM (SELECT DISTINCT row_group_id, row_group_num_rows AS num_rows FROM parquet_metadata('%s'))`
		if err := db.QueryRow(fmt.Sprintf(rg, src[i])).Scan(&a); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(fmt.Sprintf(rg, out[i])).Scan(&b); err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("file %d: row groups %s, source %s", i, b, a)
		}
	}
	// An ungranted column is not in the files at all.
	if _, err := db.Exec(fmt.Sprintf("SELECT religion FROM read_parquet(%s)", quoteList(out))); err == nil || !strings.Contains(err.Error(), "religion") {
		t.Errorf("the projection holds religion: %v", err)
	}
	// Deterministic: made again elsewhere, the same bytes; asked again, the same files.
	digest := fileDigest(t, out)
	again, err := ProjectColumns(ctx, src, []string{"age", "score", "resident_id", "district", "seen"}, filepath.Join(t.TempDir(), "p"))
	if err != nil {
		t.Fatal(err)
	}
	if fileDigest(t, again) != digest {
		t.Error("two projections of the same files and columns differ")
	}
	st, _ := os.Stat(out[0])
	reused, err := ProjectColumns(ctx, src, cols, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(reused[0]); fmt.Sprint(reused) != fmt.Sprint(out) || !st2.ModTime().Equal(st.ModTime()) {
		t.Error("a second call rewrote the projection instead of reusing it")
	}
	if ProjectionKey("v1", cols) != ProjectionKey("v1", []string{"age", "score", "seen", "district", "resident_id"}) ||
		ProjectionKey("v1", cols) == ProjectionKey("v2", cols) || ProjectionKey("v1", cols) == ProjectionKey("v1", cols[1:]) {
		t.Error("ProjectionKey does not name (version, column set)")
	}
	// Bad requests leave nothing behind.
	for _, bad := range [][]string{nil, {"age", "nope"}, {"age", "age"}} {
		d := filepath.Join(t.TempDir(), "bad")
		if _, err := ProjectColumns(ctx, src, bad, d); err == nil {
			t.Errorf("columns %v: projected", bad)
		}
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("columns %v: %s was left behind", bad, d)
		}
	}
}
