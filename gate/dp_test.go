package gate

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/ledger"
)

// writeResidents writes 100 residents (60 in north, 37 in south, 3 in tiny; ages 20-69)
// and 200 visits, two per resident, as Parquet.
func writeResidents(t *testing.T) (residents, visits string) {
	t.Helper()
	dir := t.TempDir()
	residents, visits = filepath.Join(dir, "residents.parquet"), filepath.Join(dir, "visits.parquet")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf(`COPY (SELECT 1000 + i AS resident_id, 'P' || i AS name,
		CASE WHEN i >= 97 THEN 'tiny' WHEN i >= 60 THEN 'south' ELSE 'north' END AS district,
		20 + i %% 50 AS age, 1000 * (i %% 40) AS income FROM range(100) t(i)) TO '%s' (FORMAT parquet);
		COPY (SELECT 1000 + i // 2 AS resident_id, 10.0 * i AS cost, 'h' || (i %% 3) AS hospital
		FROM range(200) t(i)) TO '%s' (FORMAT parquet)`, residents, visits)); err != nil {
		t.Fatal(err)
	}
	return residents, visits
}

func newValidator(t *testing.T) *engine.Validator {
	t.Helper()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// gateFixture returns a dp scope over the residents, with a public district domain that also
// holds a district nobody lives in.
func gateFixture(t *testing.T) (engine.Scope, *engine.Validator) {
	t.Helper()
	file, _ := writeResidents(t)
	sc := engine.Scope{Mode: "dp", Tables: []engine.Table{{Name: "residents", Files: []string{file}, Unit: "person", Columns: []engine.Column{
		{Name: "resident_id", Type: "BIGINT", PrivacyUnit: true},
		{Name: "district", Type: "VARCHAR", Domain: []string{"north", "south", "tiny", "east"}},
		{Name: "age", Type: "BIGINT", Bounds: []float64{0, 120}},
	}}}}
	return sc, newValidator(t)
}

// TestDPGate runs a dp query through the gate: every group of the public domain appears,
// empty ones included, with intervals; values are noisy.
func TestDPGate(t *testing.T) {
	sc, v := gateFixture(t)
	plan, err := v.ValidateDP(context.Background(), "SELECT COUNT(*) AS n, district, AVG(age) AS mean_age, MEDIAN(age) AS med FROM residents GROUP BY district", sc, engine.DPOptions{Epsilon: 3})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := engine.Run(context.Background(), &engine.Job{SQL: plan.SQL, Tables: sc.Tables, Threads: 1, MaxResultBytes: 1 << 20, Secret: 1}, &buf); err != nil {
		t.Fatal(err)
	}
	rec, err := engine.ReadResult(&buf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	spend, err := ledger.Spend(3, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, rep, err := DP(rec, plan, spend)
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	var names []string
	for _, f := range out.Schema().Fields() {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, ","); got != "n,n_ci_lower,n_ci_upper,district,mean_age,mean_age_ci_lower,mean_age_ci_upper,med,med_ci_lower,med_ci_upper" {
		t.Fatalf("columns %s", got)
	}
	if out.NumRows() != 4 || rep.Released != 4 || rep.Selection != nil {
		t.Fatalf("%d rows, report %+v: want the 4 domain values", out.NumRows(), rep)
	}
	if d := out.Column(3).(*array.String); d.Value(0) != "east" || d.Value(3) != "tiny" {
		t.Errorf("groups not sorted by key or not the domain: %v", d)
	}
	if len(rep.Columns) != 3 || rep.Columns[0].Epsilon != 1 || rep.Columns[0].Scale != 1 {
		t.Errorf("report %+v: each of 3 aggregates gets ε=1, count scale 1", rep.Columns)
	}
	n := out.Column(0).(*array.Int64)
	lo, hi := out.Column(1).(*array.Float64), out.Column(2).(*array.Float64)
	if n.Value(1) < 30 || n.Value(1) > 90 || !(lo.Value(1) <= float64(n.Value(1)) && float64(n.Value(1)) <= hi.Value(1)) {
		t.Errorf("north: count %d with interval [%g, %g], exact 60", n.Value(1), lo.Value(1), hi.Value(1))
	}
	if m := out.Column(7).(*array.Float64); m.Value(1) < 0 || m.Value(1) > 120 || !out.Column(8).IsNull(1) {
		t.Errorf("median %v outside the bounds, or with an interval", m.Value(1))
	}
}
