package engine_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	_ "github.com/duckdb/duckdb-go/v2"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
)

// narrowTable writes groups the row counts decide (fewer than k rows; at least k·m rows)
// and groups they leave undecided (k to k·m rows) that pass or fail on their distinct units,
// NULL group keys among both, and rows without a unit. No unit has more than m = 4 rows.
func narrowTable(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "narrow.parquet")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// (group g, second key h, rows, units, first unit): units take turns over the rows.
	groups := []struct {
		g, h        string
		rows, units int
	}{
		{"'small'", "1", 3, 3},     // decided: fails
		{"'big'", "1", 20, 20},     // decided: passes (20 units, bound 5)
		{"'big'", "NULL", 24, 6},   // decided for g alone with the row above; undecided by (g, h)
		{"'mid_pass'", "1", 12, 6}, // undecided, passes
		{"'mid_fail'", "1", 12, 3}, // undecided, fails
		{"NULL", "1", 10, 5},       // NULL key, undecided, passes
		{"NULL", "NULL", 9, 3},     // NULL keys, undecided by (g, h), fails
		{"'tail'", "NULL", 6, 2},   // undecided, fails
		{"'mid_pass'", "2", 4, 4},  // with (g, h): decided, fails
		{"'nullunit'", "1", 8, 8},  // undecided, passes: 8 units plus rows without one
	}
	var parts []string
	first := 1
	for _, g := range groups {
		parts = append(parts, fmt.Sprintf("SELECT %s::VARCHAR AS g, %s::BIGINT AS h, %d + i %% %d AS pid, i AS v FROM range(%d) t(i)", g.g, g.h, first, g.units, g.rows))
		first += g.units
	}
	// Rows without a unit: counted by COUNT(*), not by the row counts of the fast plan.
	parts = append(parts, "SELECT 'nullunit' AS g, 1 AS h, NULL::BIGINT AS pid, 7 AS v FROM range(30)")
	q := fmt.Sprintf("COPY (%s) TO '%s' (FORMAT parquet)", strings.Join(parts, " UNION ALL "), file)
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
	return file
}

// manyTable writes 6,000 groups (more than one Arrow batch): a third fail on their rows (2
// rows, 1 unit), a third are undecided and pass, a third are undecided and fail; one has a
// NULL key.
func manyTable(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "many.parquet")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := fmt.Sprintf(`COPY (
		SELECT CASE WHEN gid = 4 THEN NULL ELSE gid::VARCHAR END AS g, NULL::BIGINT AS h,
			gid * 100 + CASE gid %% 3 WHEN 0 THEN 0 WHEN 1 THEN r ELSE r %% 2 END AS pid, r AS v
		FROM range(6000) a(gid), range(8) b(r)
		WHERE gid %% 3 <> 0 OR r < 2) TO '%s' (FORMAT parquet)`, file)
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
	return file
}

func narrowScope(file string) engine.Scope {
	return engine.Scope{Mode: "threshold", Tables: []engine.Table{{Name: "t", Files: []string{file}, MaxRowsPerUnit: 4, Columns: []engine.Column{
		{Name: "g", Type: "VARCHAR"}, {Name: "h", Type: "BIGINT"}, {Name: "pid", Type: "BIGINT", PrivacyUnit: true}, {Name: "v", Type: "BIGINT"},
	}}}}
}

// A threshold job whose row counts leave some groups undecided counts distinct units for
// those groups only, and its protected output is the exact plan's for every group: the
// same rows, the same suppressions, NULL group keys included.
func TestNarrowedPlanMatchesExact(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	small, many := narrowTable(t), manyTable(t)
	for _, tc := range []struct {
		file, sql string
		narrowed  bool // only the undecided groups were counted exactly
	}{
		{small, "SELECT g, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY g ORDER BY g", true},
		// By (g, h) every group the rows decide has its exact units: none has (2k-1)·M rows
		// or more, below which a bound would tell near k apart from the exact count.
		{small, "SELECT g, h, COUNT(*) AS n FROM t GROUP BY g, h ORDER BY g, h", false},
		{small, "SELECT g, h, COUNT(*) AS n FROM t GROUP BY ALL HAVING COUNT(*) > 3 ORDER BY n, g, h", false},
		{small, "SELECT lower(g) AS lg, COUNT(*) AS n FROM t WHERE v < 100 GROUP BY lower(g) ORDER BY 1", true},
		{small, "SELECT COUNT(*) AS n FROM t WHERE g = 'mid_pass'", false}, // no keys: one group
		{many, "SELECT g, COUNT(*) AS n, AVG(v) AS a FROM t GROUP BY g ORDER BY g", true},
		{many, "SELECT h, g, COUNT(*) AS n FROM t GROUP BY h, g", true},
	} {
		sc := narrowScope(tc.file)
		plan, err := v.Validate(ctx, tc.sql, sc)
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		if plan.FastSQL == "" {
			t.Fatalf("%s: no fast plan", tc.sql)
		}
		run := func(fastSQL string) (arrow.RecordBatch, string, gate.ThresholdReport) {
			job := &engine.Job{SQL: plan.SQL, FastSQL: fastSQL, K: 5, MaxRowsPerUnit: 4, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}
			var buf bytes.Buffer
			if err := engine.Run(ctx, job, &buf); err != nil {
				t.Fatalf("%s: run: %v", tc.sql, err)
			}
			rec, err := engine.ReadResult(&buf, 8<<20)
			if err != nil {
				t.Fatal(err)
			}
			out, rep, err := gate.Threshold(rec, plan, gate.ThresholdRule{K: 5, RoundTo: 1})
			if err != nil {
				t.Fatalf("%s: gate: %v", tc.sql, err)
			}
			defer out.Release()
			var rows []string
			for r := 0; r < int(out.NumRows()); r++ {
				var cells []string
				for c := 0; c < int(out.NumCols()); c++ {
					cells = append(cells, out.Column(c).ValueStr(r))
				}
				rows = append(rows, strings.Join(cells, "|"))
			}
			if !strings.Contains(tc.sql, "ORDER BY") {
				sortStrings(rows)
			}
			return rec, strings.Join(rows, "\n"), rep
		}
		exactRec, exact, exactRep := run("") // the exact plan for every group: the old plan
		fastRec, got, rep := run(plan.FastSQL)
		if got != exact || rep.Released != exactRep.Released || rep.Suppressed != exactRep.Suppressed || rep.Groups != exactRep.Groups {
			t.Errorf("%s:\nnarrowed (released %d, suppressed %d):\n%s\nexact (released %d, suppressed %d):\n%s", tc.sql, rep.Released, rep.Suppressed, got, exactRep.Released, exactRep.Suppressed, exact)
		}
		// The runner answered with units, not row counts.
		if name := fastRec.Schema().Field(plan.Columns).Name; name != plan.Units[0] {
			t.Errorf("%s: the result has %s, want %s", tc.sql, name, plan.Units[0])
		}
		// Narrowed, the groups the rows decide carry their bounds (n below k, ceil(n/M) from
		// (2k-1)·M rows on), not their distinct units: some differ from the exact plan's counts.
		if differ := unitsDiffer(t, fastRec, exactRec, plan); differ != tc.narrowed {
			t.Errorf("%s: hidden units differ from the exact plan's: %v, want %v", tc.sql, differ, tc.narrowed)
		}
		if tc.narrowed && (exactRep.Suppressed == 0 || exactRep.Released == 0) {
			t.Errorf("%s: released %d, suppressed %d: the case decides nothing", tc.sql, exactRep.Released, exactRep.Suppressed)
		}
		exactRec.Release()
		fastRec.Release()
	}
}

// unitsDiffer reports whether some row has other hidden units in a than in b, the rows
// matched by their visible columns.
func unitsDiffer(t *testing.T, a, b arrow.RecordBatch, plan *engine.Plan) bool {
	t.Helper()
	units := func(rec arrow.RecordBatch) map[string]int64 {
		m := map[string]int64{}
		u := rec.Column(plan.Columns).(*array.Int64)
		for r := 0; r < int(rec.NumRows()); r++ {
			var cells []string
			for c := 0; c < plan.Columns; c++ {
				cells = append(cells, rec.Column(c).ValueStr(r))
			}
			m[strings.Join(cells, "|")] = u.Value(r)
		}
		return m
	}
	ua, ub := units(a), units(b)
	if len(ua) != len(ub) {
		t.Fatalf("%d rows against %d", len(ua), len(ub))
	}
	for k, v := range ua {
		if ub[k] != v {
			return true
		}
	}
	return false
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
