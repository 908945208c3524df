package engine_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
)

// writeParquet writes the rows of q to a fresh Parquet file.
func writeParquet(t *testing.T, name, q string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf("COPY (%s) TO '%s' (FORMAT parquet)", q, file)); err != nil {
		t.Fatal(err)
	}
	return file
}

// protected runs a threshold job and gates it: the protected output's rows (sorted), the
// report, and the result the runner wrote.
func protected(t *testing.T, job *engine.Job, plan *engine.Plan, k int, rules *engine.CheckRules, checks []engine.Check) (string, gate.ThresholdReport, []arrow.RecordBatch) {
	t.Helper()
	for i, c := range checks {
		job.Checks, job.CheckFast = append(job.Checks, c.SQL), append(job.CheckFast, c.FastSQL)
		if c.Kind == engine.CheckDominance {
			job.DominanceCheck, job.DominanceRules = i+1, rules
		}
	}
	var buf bytes.Buffer
	if err := engine.Run(context.Background(), job, &buf); err != nil {
		t.Fatalf("run: %v", err)
	}
	recs, err := engine.ReadResults(&buf, 64<<20, len(checks))
	if err != nil {
		t.Fatal(err)
	}
	var results []gate.CheckResult
	for i, c := range checks {
		results = append(results, gate.CheckResult{Kind: c.Kind, Priors: c.Priors, Rec: recs[i+1]})
	}
	out, rep, err := gate.ThresholdChecked(recs[0], plan, gate.ThresholdRule{K: k, RoundTo: 1}, results)
	if err != nil {
		t.Fatalf("gate: %v", err)
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
	sortStrings(rows)
	return strings.Join(rows, "\n"), rep, recs
}

// On a dataset version where every row has a unit, the fast plan counts every row
// (count(*), without reading the unit column), and the job's protected output is the exact
// plan's: groups of k-1, k and k·M-1 rows, groups just at k units, a unit with M rows in a
// group of few units, NULL group keys. The plan runs so only on such a version.
func TestFastAllMatchesExact(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const k, m = 5, 4
	// (group, rows, units): unit i of a group has the rows r with r % units = i.
	groups := []struct {
		g           string
		rows, units int
	}{
		{"'below'", k - 1, k - 1},      // fails on rows
		{"'at_k'", k, k},               // undecided, exactly k units: passes
		{"'at_k_short'", 2 * k, k - 1}, // undecided, k-1 units (some of 3 rows): fails
		{"'many_rows'", k*m - 1, k},    // undecided, units of M rows (and one of M-1): passes
		{"'many_short'", k*m - m, k - 1},
		{"'decided'", k * m, k}, // k·M rows: passes on rows
		{"NULL", k + 1, k},
		{"NULL", 3, 3},
		{"'big'", 400, 200},
	}
	var parts []string
	first := 1
	for _, g := range groups {
		parts = append(parts, fmt.Sprintf("SELECT %s::VARCHAR AS g, %d + i %% %d AS pid, i::DOUBLE AS v FROM range(%d) t(i)", g.g, first, g.units, g.rows))
		first += g.units
	}
	file := writeParquet(t, "complete.parquet", strings.Join(parts, " UNION ALL "))
	most, missing, err := engine.UnitStats(ctx, []string{file}, "pid")
	if err != nil || most != m || missing != 0 {
		t.Fatalf("rows per unit %d, without a unit %d: %v", most, missing, err)
	}
	table := func(complete bool) engine.Scope {
		return engine.Scope{Mode: "threshold", Tables: []engine.Table{{Name: "t", Files: []string{file}, MaxRowsPerUnit: m, UnitComplete: complete, Columns: []engine.Column{
			{Name: "g", Type: "VARCHAR"}, {Name: "pid", Type: "BIGINT", PrivacyUnit: true}, {Name: "v", Type: "DOUBLE"},
		}}}}
	}
	rules := engine.CheckRules{K: k, DominanceN: 2, DominanceK: 85, DominanceP: 10}
	for _, q := range []string{
		"SELECT g, COUNT(*) AS n FROM t GROUP BY g",
		"SELECT g, COUNT(*) AS n, SUM(v) AS s FROM t WHERE v < 300 GROUP BY g",
		"SELECT g, COUNT(*) AS n FROM t GROUP BY g HAVING COUNT(*) >= 5",
	} {
		sc := table(true)
		plan, err := v.Validate(ctx, q, sc)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if !plan.FastAll || !strings.Contains(plan.FastSQL, "count_star() AS __veil_rows") {
			t.Fatalf("%s: fast plan %q (all rows %v)", q, plan.FastSQL, plan.FastAll)
		}
		if plan.FastFor(table(false).Tables[0]) != "" || plan.FastFor(sc.Tables[0]) != plan.FastSQL {
			t.Errorf("%s: a plan counting every row runs on a version with rows without a unit", q)
		}
		if p, err := v.Validate(ctx, q, table(false)); err != nil || p.FastAll || strings.Contains(p.FastSQL, "count_star() AS __veil_rows") {
			t.Errorf("%s: without every row having a unit: %q: %v", q, p.FastSQL, err)
		}
		checks, err := v.Checks(ctx, plan, sc, nil, rules)
		if err != nil {
			t.Fatal(err)
		}
		job := func(fast string) *engine.Job {
			return &engine.Job{SQL: plan.SQL, FastSQL: fast, K: k, MaxRowsPerUnit: m, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}
		}
		exact, exactRep, er := protected(t, job(""), plan, k, &rules, checks)
		got, rep, gr := protected(t, job(plan.FastSQL), plan, k, &rules, checks)
		release(er)
		release(gr)
		if got != exact || !reflect.DeepEqual(rep, exactRep) {
			t.Errorf("%s:\ncounting every row %+v:\n%s\nexact %+v:\n%s", q, rep, got, exactRep, exact)
		}
		if exactRep.Released == 0 || exactRep.Suppressed < 2 {
			t.Errorf("%s: %+v: the case decides nothing", q, exactRep)
		}
	}
}

// The sum of squares bounds a person's contribution (sqrt(M·Q), Cauchy-Schwarz) more
// tightly than M·max|x| where values vary; the cells it clears pass the exact dominance
// check, and the gate's output is the exact check's: 3,000 generated cells of 3 to 12
// persons of 1 to M rows, small values with signs and a few large ones, cells where every
// person has M rows of one value (where the bound is tight), cells of k persons.
func TestSquaresBoundMatchesExact(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const k = 5
	file := writeParquet(t, "squares.parquet", `
		SELECT 'c' || c AS g, c * 100 + p AS pid,
			CASE WHEN c % 50 = 0 THEN 5
			     WHEN c % 50 = 1 AND p < 2 THEN 40
			     WHEN c % 50 = 1 THEN 5
			     ELSE ((hash(c, p, r) % 201)::BIGINT - 100) / CASE WHEN hash(c, p) % 9 = 0 THEN 1 ELSE 10 END + (c % 4) * 3
			END::DOUBLE AS v
		FROM range(3000) a(c), range(12) b(p), range(6) d(r)
		WHERE p < 3 + c % 10 AND (c % 50 <= 1 OR r < 1 + hash(c, p) % 6)`)
	most, missing, err := engine.UnitStats(ctx, []string{file}, "pid")
	if err != nil || most != 6 || missing != 0 {
		t.Fatalf("rows per unit %d, without a unit %d: %v", most, missing, err)
	}
	sc := engine.Scope{Mode: "threshold", Tables: []engine.Table{{Name: "t", Files: []string{file}, MaxRowsPerUnit: most, UnitComplete: true, Columns: []engine.Column{
		{Name: "g", Type: "VARCHAR"}, {Name: "pid", Type: "BIGINT", PrivacyUnit: true}, {Name: "v", Type: "DOUBLE"},
	}}}}
	for _, tc := range []struct {
		sql   string
		rules engine.CheckRules
	}{
		{"SELECT g, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY g", engine.CheckRules{K: k, DominanceN: 2, DominanceK: 85, DominanceP: 10}},
		{"SELECT g, AVG(v) AS a FROM t GROUP BY g", engine.CheckRules{K: k, DominanceP: 10}},
		{"SELECT g, SUM(v) FILTER (WHERE v > 0) AS s FROM t GROUP BY g", engine.CheckRules{K: k, DominanceN: 2, DominanceK: 85}},
	} {
		plan, err := v.Validate(ctx, tc.sql, sc)
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		checks, err := v.Checks(ctx, plan, sc, nil, tc.rules)
		if err != nil || len(checks) != 1 || checks[0].Kind != engine.CheckDominance {
			t.Fatalf("%s: %+v: %v", tc.sql, checks, err)
		}
		job := func(bounded bool) *engine.Job {
			j := &engine.Job{SQL: plan.SQL, FastSQL: plan.FastSQL, K: k, MaxRowsPerUnit: most, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}
			if bounded {
				j.Dominance, j.DominanceCells = plan.Dominance, checks[0].CellSQL
			}
			return j
		}
		exact, exactRep, er := protected(t, job(false), plan, k, &tc.rules, checks)
		got, rep, gr := protected(t, job(true), plan, k, &tc.rules, checks)
		release(gr)
		if got != exact || !reflect.DeepEqual(rep, exactRep) {
			t.Errorf("%s:\nbounded %+v:\n%s\nexact %+v:\n%s", tc.sql, rep, got, exactRep, exact)
		}
		// Directly: no cell the bound clears is one the exact check names, and the squares
		// clear cells the maxima alone do not.
		var pairs []string
		for _, n := range plan.Dominance {
			if !strings.HasPrefix(n, engine.DominanceSquares) {
				pairs = append(pairs, n)
			}
		}
		if len(pairs) == len(plan.Dominance) {
			t.Fatalf("%s: no sum of squares among %v", tc.sql, plan.Dominance)
		}
		withSquares, ok1 := engine.DominanceUndecided(er[:1], plan.Dominance, most, tc.rules)
		withMaxes, ok2 := engine.DominanceUndecided(er[:1], pairs, most, tc.rules)
		if !ok1 || !ok2 || len(withSquares) >= len(withMaxes) {
			t.Errorf("%s: undecided with squares %d, with maxima alone %d", tc.sql, len(withSquares), len(withMaxes))
		}
		failing := map[string]bool{}
		fails := er[1]
		for r := 0; r < int(fails.NumRows()); r++ {
			failing[fails.Column(0).ValueStr(r)] = true
		}
		undecided := map[int]bool{}
		for _, r := range withSquares {
			undecided[r] = true
		}
		res := er[0]
		units := res.Column(plan.Columns).(*array.Int64)
		key := res.Column(res.Schema().FieldIndices(plan.Keys[0])[0])
		cleared := 0
		for r := 0; r < int(res.NumRows()); r++ {
			if units.Value(r) >= k && !undecided[r] {
				cleared++
				if failing[key.ValueStr(r)] {
					t.Errorf("%s: cell %s cleared by the bound fails the exact check", tc.sql, key.ValueStr(r))
				}
			}
		}
		if cleared == 0 || len(failing) == 0 || exactRep.Dominance == 0 {
			t.Errorf("%s: %d cleared, %d failing, %+v: the case decides nothing", tc.sql, cleared, len(failing), exactRep)
		}
		release(er)
	}
}

// Rows without a unit are one contributor to the exact dominance check (its per-person
// query groups them under NULL), and there may be any number of them, so the bound of M rows
// a person does not bound them: on a table where some rows have no unit, the bounded check
// must decide what the exact one decides, here cells where the unit-less rows dominate.
func TestUnitlessRowsDominance(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const k = 5
	// 40 cells of 10 persons of one row each; in every other cell 60 rows without a unit
	// carry large values.
	file := writeParquet(t, "unitless.parquet", `
		SELECT 'c' || c AS g, c * 100 + p AS pid, 1.0::DOUBLE AS v FROM range(40) a(c), range(10) b(p)
		UNION ALL SELECT 'c' || c, NULL, 50.0 FROM range(40) a(c), range(60) b(r) WHERE c % 2 = 0`)
	most, missing, err := engine.UnitStats(ctx, []string{file}, "pid")
	if err != nil || most != 1 || missing == 0 {
		t.Fatalf("rows per unit %d, without a unit %d: %v", most, missing, err)
	}
	sc := engine.Scope{Mode: "threshold", Tables: []engine.Table{{Name: "t", Files: []string{file}, MaxRowsPerUnit: most, UnitComplete: false, Columns: []engine.Column{
		{Name: "g", Type: "VARCHAR"}, {Name: "pid", Type: "BIGINT", PrivacyUnit: true}, {Name: "v", Type: "DOUBLE"},
	}}}}
	rules := engine.CheckRules{K: k, DominanceN: 1, DominanceK: 50, DominanceP: 10}
	plan, err := v.Validate(ctx, "SELECT g, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY g", sc)
	if err != nil {
		t.Fatal(err)
	}
	checks, err := v.Checks(ctx, plan, sc, nil, rules)
	if err != nil || len(checks) != 1 || checks[0].Kind != engine.CheckDominance {
		t.Fatalf("%+v: %v", checks, err)
	}
	job := func(bounded bool) *engine.Job {
		j := &engine.Job{SQL: plan.SQL, FastSQL: plan.FastFor(sc.Tables[0]), K: k, MaxRowsPerUnit: most, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}
		if bounded {
			j.Dominance, j.DominanceCells = plan.Dominance, checks[0].CellSQL
		}
		return j
	}
	exact, exactRep, er := protected(t, job(false), plan, k, &rules, checks)
	release(er)
	got, rep, gr := protected(t, job(true), plan, k, &rules, checks)
	release(gr)
	if exactRep.Dominance == 0 {
		t.Fatalf("the exact check suppresses nothing (%+v): the case decides nothing", exactRep)
	}
	if got != exact || !reflect.DeepEqual(rep, exactRep) {
		t.Errorf("bounded %+v:\n%s\nexact %+v:\n%s", rep, got, exactRep, exact)
	}
}
