package runner

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/he"
)

// TestScoreCountsPersons: an he-score job keeps a group when it has at least k persons.
// With the files measured at one row per person the job counts them as rows (no distinct
// count); otherwise as distinct units: a group of 6 rows by 3 persons stays under k=4.
func TestScoreCountsPersons(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "people.parquet")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Group "a": 10 rows of 10 persons; "b": 6 rows of 3 persons; "c": 3 rows of 3 persons.
	if _, err := db.Exec(`COPY (
		SELECT i AS pid, 'a' AS grp, (i * 7 % 10)::DOUBLE AS x FROM range(10) t(i)
		UNION ALL SELECT 100 + i % 3, 'b', i::DOUBLE FROM range(6) t(i)
		UNION ALL SELECT 200 + i, 'c', i::DOUBLE FROM range(3) t(i)
	) TO '` + file + `' (FORMAT parquet)`); err != nil {
		t.Fatal(err)
	}
	_, pub, err := he.GenerateKeys(4)
	if err != nil {
		t.Fatal(err)
	}
	m := &he.Model{Kind: he.KindLogistic, Bias: 0.1, InputRange: 8,
		Features: []he.Feature{{Name: "x", Lower: 0, Upper: 10, Mean: 5, Scale: 5}}, Weights: []float64{0.5}}
	em, err := he.EncryptModel(pub, m)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := pub.MarshalBinary()
	mb, _ := em.MarshalBinary()
	for n, b := range map[string][]byte{"bundle": pb, "model": mb} {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	spec, _ := json.Marshal(Score{Dataset: "people", GroupBy: []string{"grp"}, Unit: "pid", K: 4, Kind: he.KindLogistic, ScoreBound: 1,
		Features: []he.PublicFeature{{Name: "x", Lower: 0, Upper: 10}}})
	for _, tc := range []struct {
		maxRows int64
		want    []string
	}{
		{0, []string{"a"}},      // unknown: distinct persons
		{2, []string{"a"}},      // b has 3 persons in 6 rows
		{1, []string{"a", "b"}}, // claimed one row per person: b's 6 rows count as 6 persons
	} {
		j := &engine.Job{Kind: KindScore, Spec: spec, Threads: 1, MemoryLimitMB: 500, MaxResultBytes: 1 << 26,
			Tables: []engine.Table{{Name: "people", Files: []string{file}, MaxRowsPerUnit: tc.maxRows,
				Columns: []engine.Column{{Name: "pid", Type: "BIGINT"}, {Name: "grp", Type: "VARCHAR"}, {Name: "x", Type: "DOUBLE"}}}},
			Inputs: map[string]string{"bundle": filepath.Join(dir, "bundle"), "model": filepath.Join(dir, "model")}}
		res, err := scoreHE(context.Background(), j)
		if err != nil || res.Error != "" {
			t.Fatalf("max rows %d: %v %q", tc.maxRows, err, res.Error)
		}
		var got []string
		for _, g := range res.Groups {
			got = append(got, *g.Keys[0])
		}
		if len(got) != len(tc.want) || got[0] != tc.want[0] || (len(got) > 1 && got[1] != tc.want[1]) {
			t.Errorf("max rows per person %d: kept groups %v, want %v", tc.maxRows, got, tc.want)
		}
		if res.Dropped != 3-len(tc.want) {
			t.Errorf("max rows per person %d: dropped %d groups, want %d", tc.maxRows, res.Dropped, 3-len(tc.want))
		}
	}
}
