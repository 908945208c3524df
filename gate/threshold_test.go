package gate

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/veil-dp/veil/engine"
)

// thresholdScope is a threshold grant's view of the residents and their visits.
func thresholdScope(residents, visits string) engine.Scope {
	return engine.Scope{Mode: "threshold", Tables: []engine.Table{
		{Name: "residents", Files: []string{residents}, Columns: []engine.Column{
			{Name: "resident_id", Type: "BIGINT", PrivacyUnit: true},
			{Name: "name", Type: "VARCHAR", Identifier: true},
			{Name: "district", Type: "VARCHAR"},
			{Name: "age", Type: "BIGINT"},
			{Name: "income", Type: "BIGINT"},
		}},
		{Name: "visits", Files: []string{visits}, Columns: []engine.Column{
			{Name: "resident_id", Type: "BIGINT", PrivacyUnit: true},
			{Name: "cost", Type: "DOUBLE"},
			{Name: "hospital", Type: "VARCHAR"},
		}},
	}}
}

func TestRunAndThreshold(t *testing.T) {
	res, vis := writeResidents(t)
	v := newValidator(t)
	ctx := context.Background()
	for _, tc := range []struct {
		sql        string
		k, round   int
		want       string // protected output, rows as "a|b|..."
		suppressed int
	}{
		{"SELECT district, COUNT(*) AS n, SUM(income) AS s FROM residents GROUP BY district ORDER BY district", 5, 5,
			"north|60|970000 south|35|726000", 1},
		{"SELECT district, COUNT(*) AS n FROM residents GROUP BY district ORDER BY district", 5, 1, "north|60 south|37", 1},
		{"SELECT district, COUNT(*) AS n FROM residents GROUP BY district ORDER BY district", 61, 1, "", 3},
		{"SELECT r.district, COUNT(*) AS visits FROM residents r JOIN visits v ON r.resident_id = v.resident_id GROUP BY 1 ORDER BY 1", 4, 10,
			"north|120 south|70", 1},
		{"SELECT COUNT(*) FROM residents WHERE district = 'tiny'", 5, 1, "", 1},
	} {
		// Each query runs with the rows-per-unit maximum unknown (exact distinct counts), with
		// the true maximum (the fast plan decides), and with a loose one (the fast plan cannot
		// decide and the runner falls back): the protected output must not change.
		for _, m := range []int64{0, 1, 50} {
			sc := thresholdScope(res, vis)
			sc.Tables[0].MaxRowsPerUnit = m
			plan, err := v.Validate(ctx, tc.sql, sc)
			if err != nil {
				t.Fatalf("%s: %v", tc.sql, err)
			}
			if (plan.FastSQL != "") != (m > 0 && len(plan.Units) == 1) {
				t.Fatalf("%s (m=%d): fast plan %q", tc.sql, m, plan.FastSQL)
			}
			var buf bytes.Buffer
			job := &engine.Job{SQL: plan.SQL, FastSQL: plan.FastSQL, K: tc.k, MaxRowsPerUnit: plan.MaxRowsPerUnit, Tables: sc.Tables, Threads: 1, MemoryLimitMB: 256, MaxResultBytes: 1 << 20}
			if err := engine.Run(ctx, job, &buf); err != nil {
				t.Fatalf("%s: run: %v", tc.sql, err)
			}
			rec, err := engine.ReadResult(&buf, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			last := rec.Schema().Field(plan.Columns).Name // the hidden group keys follow it
			// With one row per unit the fast plan always decides; without a maximum it never runs.
			if (m == 1 && plan.FastSQL != "" && last != engine.RowsColumn) || (m == 0 && last == engine.RowsColumn) {
				t.Errorf("%s (m=%d): result ends with %s", tc.sql, m, last)
			}
			out, rep, err := Threshold(rec, plan, ThresholdRule{K: tc.k, RoundTo: tc.round})
			rec.Release()
			if err != nil {
				t.Fatal(err)
			}
			var rows []string
			for r := 0; r < int(out.NumRows()); r++ {
				var cells []string
				for c := 0; c < int(out.NumCols()); c++ {
					cells = append(cells, out.Column(c).ValueStr(r))
				}
				rows = append(rows, strings.Join(cells, "|"))
			}
			if got := strings.Join(rows, " "); got != tc.want || rep.Suppressed != tc.suppressed || int(out.NumCols()) != plan.Columns {
				t.Errorf("%s (k=%d, m=%d): got %q suppressed %d cols %d, want %q suppressed %d", tc.sql, tc.k, m, got, rep.Suppressed, out.NumCols(), tc.want, tc.suppressed)
			}
			out.Release()
		}
	}
}

// TestBoundedGate feeds the gate row counts directly: a row is released on row counts only
// when K*M rows guarantee K units; anything in between is suppressed, never released.
func TestBoundedGate(t *testing.T) {
	plan := &engine.Plan{Columns: 1, Units: []string{engine.UnitsPrefix + "_0"}, FastSQL: "x", MaxRowsPerUnit: 3}
	schema := arrow.NewSchema([]arrow.Field{{Name: "g", Type: arrow.BinaryTypes.String}, {Name: engine.RowsColumn, Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues([]string{"few", "between", "enough"}, nil)
	b.Field(1).(*array.Int64Builder).AppendValues([]int64{4, 14, 15}, nil) // K=5, M=3: 15 rows => >= 5 units
	rec := b.NewRecordBatch()
	defer rec.Release()
	out, rep, err := Threshold(rec, plan, ThresholdRule{K: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	if out.NumRows() != 1 || out.Column(0).ValueStr(0) != "enough" || rep.Suppressed != 2 || out.NumCols() != 1 {
		t.Fatalf("released %d rows (%v), report %+v", out.NumRows(), out.Column(0), rep)
	}
}

func TestRoundTo(t *testing.T) {
	for _, tc := range []struct{ v, m, want int64 }{{0, 5, 0}, {2, 5, 0}, {3, 5, 5}, {7, 5, 5}, {8, 5, 10}, {37, 10, 40}, {35, 10, 40}} {
		if got := roundTo(tc.v, tc.m); got != tc.want {
			t.Errorf("roundTo(%d, %d) = %d, want %d", tc.v, tc.m, got, tc.want)
		}
	}
}
