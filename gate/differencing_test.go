package gate

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/veil-dp/veil/engine"
)

// diffScope is a threshold scope over 100 residents in two districts of 50: resident 1007
// (north) is the only one aged 101, resident 1077 (south) earns a thousand times the others.
func diffScope(t *testing.T) engine.Scope {
	t.Helper()
	file := filepath.Join(t.TempDir(), "residents.parquet")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf(`COPY (SELECT 1000 + i AS resident_id,
		CASE WHEN i < 50 THEN 'north' ELSE 'south' END AS district,
		CASE WHEN i = 7 THEN 101 ELSE 30 + i %% 5 END AS age,
		CASE WHEN i = 77 THEN 50000000 ELSE 1000 + 10 * i END AS income FROM range(100) t(i)) TO '%s' (FORMAT parquet)`, file)); err != nil {
		t.Fatal(err)
	}
	return engine.Scope{Mode: "threshold", Tables: []engine.Table{{Name: "residents", Files: []string{file}, Columns: []engine.Column{
		{Name: "resident_id", Type: "BIGINT", PrivacyUnit: true},
		{Name: "district", Type: "VARCHAR"},
		{Name: "age", Type: "BIGINT"},
		{Name: "income", Type: "BIGINT"},
	}}}}
}

var diffRules = engine.CheckRules{K: 5, DominanceN: 2, DominanceK: 90, DominanceP: 10}

// runChecked runs a threshold query with its checks against priors and gates it; it
// returns the released rows as "a|b" strings by first column and the report.
func runChecked(t *testing.T, v *engine.Validator, sc engine.Scope, query string, priors []engine.Prior, checked bool) (map[string]string, ThresholdReport) {
	t.Helper()
	ctx := context.Background()
	plan, err := v.Validate(ctx, query, sc)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	var checks []engine.Check
	if checked {
		if checks, err = v.Checks(ctx, plan, sc, priors, diffRules); err != nil {
			t.Fatalf("%s: checks: %v", query, err)
		}
	}
	job := &engine.Job{SQL: plan.SQL, FastSQL: plan.FastSQL, K: diffRules.K, MaxRowsPerUnit: plan.MaxRowsPerUnit, Tables: sc.Tables, Threads: 1, MemoryLimitMB: 256, MaxResultBytes: 1 << 20}
	for i, c := range checks {
		job.Checks, job.CheckFast = append(job.Checks, c.SQL), append(job.CheckFast, c.FastSQL)
		if c.Kind == engine.CheckDominance {
			job.DominanceCheck, job.DominanceRules, job.Dominance = i+1, &diffRules, plan.Dominance
		}
	}
	var buf bytes.Buffer
	if err := engine.Run(ctx, job, &buf); err != nil {
		t.Fatalf("%s: run: %v", query, err)
	}
	recs, err := engine.ReadResults(&buf, 1<<20, len(checks))
	if err != nil {
		t.Fatal(err)
	}
	var results []CheckResult
	for i, c := range checks {
		results = append(results, CheckResult{Kind: c.Kind, Priors: c.Priors, Rec: recs[i+1]})
	}
	out, rep, err := ThresholdChecked(recs[0], plan, ThresholdRule{K: diffRules.K}, results)
	for _, r := range recs {
		r.Release()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	rows := map[string]string{}
	for r := 0; r < int(out.NumRows()); r++ {
		var cells []string
		for c := 1; c < int(out.NumCols()); c++ {
			cells = append(cells, out.Column(c).ValueStr(r))
		}
		key := "all"
		if plan.Columns > 1 {
			key = out.Column(0).ValueStr(r)
		} else {
			cells = []string{out.Column(0).ValueStr(r)}
		}
		rows[key] = strings.Join(cells, "|")
	}
	return rows, rep
}

// TestDifferencingPair is the attack: two threshold queries differing by one person, by an
// attribute only that person has. Unchecked, subtracting the outputs gives the person's
// income exactly; checked, the cell of the second query is suppressed whatever the order and
// however the filter is written, and the report names the prior it was paired with.
func TestDifferencingPair(t *testing.T) {
	sc := diffScope(t)
	v := newValidator(t)
	all := "SELECT district, SUM(income) AS s FROM residents GROUP BY district"
	for _, q := range []string{
		"SELECT district, SUM(income) AS s FROM residents WHERE age <> 101 GROUP BY district",
		"SELECT district AS d, SUM(income) AS s FROM residents r WHERE r.age < 100 GROUP BY 1",
		"SELECT district, SUM(income) AS s FROM residents WHERE NOT (age = 101) GROUP BY ALL",
	} {
		// Today's gate releases both north cells; their difference is resident 1007's income.
		a, _ := runChecked(t, v, sc, all, nil, false)
		b, _ := runChecked(t, v, sc, q, nil, false)
		var x, y int64
		fmt.Sscan(a["north"], &x)
		fmt.Sscan(b["north"], &y)
		if x-y != 1070 {
			t.Fatalf("%s: unchecked, the pair gives %d, not resident 1007's income 1070 (north %q vs %q)", q, x-y, a["north"], b["north"])
		}

		for _, order := range [][2]string{{all, q}, {q, all}} {
			rows, rep := runChecked(t, v, sc, order[1], []engine.Prior{{Job: "j-prior", Query: order[0]}}, true)
			if _, ok := rows["north"]; ok || rep.Differencing != 1 || len(rep.Paired) != 1 || rep.Paired[0] != "j-prior" {
				t.Errorf("%s after %s: north released (%v), report %+v", order[1], order[0], rows, rep)
			}
		}
	}

	// Filtering on the person directly is refused outright.
	if _, err := v.Validate(context.Background(), "SELECT district, SUM(income) FROM residents WHERE resident_id <> 1007 GROUP BY district", sc); !errors.Is(err, engine.ErrRefused) {
		t.Errorf("a filter on the privacy unit: %v", err)
	}
}

// TestDifferencingHarmless: a pair whose cells differ by K or more persons in every cell, or
// not at all, is released as before.
func TestDifferencingHarmless(t *testing.T) {
	sc := diffScope(t)
	v := newValidator(t)
	all := "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"
	for _, tc := range []struct {
		q    string
		want string
	}{
		{"SELECT district, COUNT(*) AS n FROM residents WHERE age < 33 GROUP BY district", "north=29 south=30"},
		{all, "north=50 south=50"},
	} {
		rows, rep := runChecked(t, v, sc, tc.q, []engine.Prior{{Job: "j-prior", Query: all}}, true)
		if got := fmt.Sprintf("north=%s south=%s", rows["north"], rows["south"]); got != tc.want || rep.Differencing != 0 {
			t.Errorf("%s: %s, report %+v; want %s", tc.q, got, rep, tc.want)
		}
	}
}

// TestDominance: a sum or average dominated by one person is suppressed (south, with
// resident 1077); an extreme is released only when K persons share it.
func TestDominance(t *testing.T) {
	for _, m := range []int64{0, 1} { // exact check always; skipped where the bound decides
		testDominance(t, m)
	}
}

func testDominance(t *testing.T, m int64) {
	sc := diffScope(t)
	sc.Tables[0].MaxRowsPerUnit = m
	v := newValidator(t)
	for _, tc := range []struct {
		q         string
		want      string
		dominance int
	}{
		{"SELECT district, SUM(income) AS s FROM residents GROUP BY district", "north=62250 south=", 1},
		{"SELECT district, AVG(income) AS s FROM residents GROUP BY district", "north=1245 south=", 1},
		{"SELECT district, COUNT(*) AS n FROM residents GROUP BY district", "north=50 south=50", 0},
		{"SELECT district, SUM(income) AS s FROM residents WHERE district = 'north' GROUP BY district", "north=62250 south=", 0},
		{"SELECT district, MIN(age) AS a FROM residents GROUP BY district", "north=30 south=30", 0},
		{"SELECT district, MAX(age) AS a FROM residents GROUP BY district", "north= south=34", 1},
		{"SELECT MAX(income) AS m FROM residents", "all=", 1},
	} {
		rows, rep := runChecked(t, v, sc, tc.q, nil, true)
		got := fmt.Sprintf("north=%s south=%s", rows["north"], rows["south"])
		if strings.HasPrefix(tc.want, "all=") {
			got = "all=" + rows["all"]
		}
		if got != tc.want || rep.Dominance != tc.dominance {
			t.Errorf("%s (m=%d): %s, report %+v; want %s with %d dominance", tc.q, m, got, rep, tc.want, tc.dominance)
		}
	}
}

// TestDifferencingVariants: the guard decides on rows, not persons or text: one visit of one
// person removed in a join, an ungrouped pair, a grouping by expression and by alias, and
// the fast plan's result all get the cell suppressed.
func TestDifferencingVariants(t *testing.T) {
	res, vis := writeResidents(t)
	v := newValidator(t)
	for _, m := range []int64{0, 2} {
		sc := thresholdScope(res, vis)
		sc.Tables[0].MaxRowsPerUnit = m // the fast plan where it applies
		for _, tc := range []struct{ prior, q, cell string }{
			{"SELECT r.district, SUM(v.cost) AS c FROM residents r JOIN visits v ON r.resident_id = v.resident_id GROUP BY 1",
				"SELECT r.district, SUM(v.cost) AS c FROM residents r JOIN visits v ON r.resident_id = v.resident_id WHERE v.cost <> 100.0 GROUP BY 1", "north"},
			{"SELECT COUNT(*) AS n FROM residents", "SELECT COUNT(*) AS n FROM residents WHERE income <> 39000 OR age <> 59", "all"},
			{"SELECT upper(district) AS d, COUNT(*) AS n FROM residents GROUP BY upper(district)",
				"SELECT upper(district) AS d, COUNT(*) AS n FROM residents WHERE NOT (age = 59 AND income = 39000) GROUP BY d HAVING COUNT(*) > 0", "NORTH"},
		} {
			rows, _ := runChecked(t, v, sc, tc.q, nil, true)
			if _, ok := rows[tc.cell]; !ok {
				t.Fatalf("%s: unchecked, %s is not released: %v", tc.q, tc.cell, rows)
			}
			checked, rep := runChecked(t, v, sc, tc.q, []engine.Prior{{Job: "j-prior", Query: tc.prior}}, true)
			if _, ok := checked[tc.cell]; ok || rep.Differencing == 0 {
				t.Errorf("%s (m=%d): %s released against the prior: %v %+v", tc.q, m, tc.cell, checked, rep)
			}
		}
	}
}

// TestDominanceSure: the runner skips the exact dominance check only where the bound from
// the rows-per-person maximum shows every cell passes.
func TestDominanceSure(t *testing.T) {
	sc := diffScope(t)
	v := newValidator(t)
	ctx := context.Background()
	for _, tc := range []struct {
		q    string
		m    int64
		sure bool
	}{
		{"SELECT district, SUM(income) AS s FROM residents WHERE district = 'north' GROUP BY district", 1, true},
		{"SELECT district, SUM(income) AS s FROM residents WHERE district = 'north' GROUP BY district", 50, false},                       // 50 rows could be one person's
		{"SELECT district, SUM(income) AS s FROM residents GROUP BY district", 1, false},                                                 // resident 1077 dominates south
		{"SELECT district, SUM(CAST(income AS DOUBLE) - 1245) AS s FROM residents WHERE district = 'north' GROUP BY district", 1, false}, // values cancel out
		{"SELECT district, AVG(CAST(income AS DOUBLE) - 1000) AS s FROM residents WHERE district = 'north' GROUP BY district", 1, true},
		{"SELECT district, SUM(income) FILTER (WHERE age > 31) AS s FROM residents WHERE district = 'north' GROUP BY district", 1, true},
		{"SELECT district, SUM(income) AS s FROM residents WHERE district = 'north' GROUP BY district", 0, false}, // no maximum known
	} {
		plan, err := v.Validate(ctx, tc.q, sc)
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Dominance) != 3 { // sum, largest magnitude, sum of squares
			t.Fatalf("%s: dominance columns %v", tc.q, plan.Dominance)
		}
		var buf bytes.Buffer
		if err := engine.Run(ctx, &engine.Job{SQL: plan.SQL, Tables: sc.Tables, Threads: 1, MemoryLimitMB: 256, MaxResultBytes: 1 << 20}, &buf); err != nil {
			t.Fatal(err)
		}
		rec, err := engine.ReadResult(&buf, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if got := engine.DominanceSure([]arrow.RecordBatch{rec}, plan.Dominance, tc.m, diffRules); got != tc.sure {
			t.Errorf("%s (m=%d): sure %v, want %v", tc.q, tc.m, got, tc.sure)
		}
		rec.Release()
	}
	// An extreme always needs the exact check.
	if plan, err := v.Validate(ctx, "SELECT district, SUM(income) AS s, MAX(age) AS a FROM residents GROUP BY district", sc); err != nil || len(plan.Dominance) != 0 {
		t.Errorf("with MAX: %v %v", plan.Dominance, err)
	}
}

// TestDifferencingSkipsUnpairable: a prior that reads another FROM cannot select the same
// rows as the query and is skipped; a prior that no longer parses or binds against the
// query's tables cannot be ruled out and refuses the job, naming the prior.
func TestDifferencingSkipsUnpairable(t *testing.T) {
	res, vis := writeResidents(t)
	v := newValidator(t)
	sc := thresholdScope(res, vis)
	q := "SELECT district, COUNT(*) AS n FROM residents WHERE age <> 59 GROUP BY district"
	rows, rep := runChecked(t, v, sc, q, []engine.Prior{
		{Job: "j-join", Query: "SELECT r.district, COUNT(*) AS n FROM residents r JOIN visits v ON r.resident_id = v.resident_id GROUP BY 1"},
	}, true)
	if rep.Differencing != 0 || rows["north"] == "" {
		t.Errorf("a prior over another FROM: %v %+v", rows, rep)
	}
	ctx := context.Background()
	plan, err := v.Validate(ctx, q, sc)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []engine.Prior{
		{Job: "j-gone", Query: "SELECT district, COUNT(*) AS n FROM residents WHERE religion = 'x' GROUP BY district"},
		{Job: "j-text", Query: "not sql"},
		{Job: "j-type", Query: "SELECT district, COUNT(*) AS n FROM residents WHERE district + 1 > 2 GROUP BY district"},
	} {
		ok := engine.Prior{Job: "j-ok", Query: "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"}
		_, err := v.Checks(ctx, plan, sc, []engine.Prior{ok, p}, diffRules)
		var pe *engine.PriorError
		if !errors.As(err, &pe) || pe.Job != p.Job || !strings.Contains(err.Error(), p.Job) {
			t.Errorf("prior %s (%s): %v, want a refusal naming it", p.Job, p.Query, err)
		}
	}
}

// TestDifferencingFastPath: with a known maximum of rows per person the difference check
// counts the differing rows first (count(*) where every row names a person); its verdicts are the exact count's, whether the row count
// decides (m=1, m=3) or leaves cells undecided and the exact count runs (m=1000).
func TestDifferencingFastPath(t *testing.T) {
	ctx := context.Background()
	v := newValidator(t)
	base := diffScope(t)
	all := "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"
	queries := []string{
		"SELECT district, COUNT(*) AS n FROM residents WHERE age <> 101 GROUP BY district",     // one person: north fails
		"SELECT district, COUNT(*) AS n FROM residents WHERE age < 33 GROUP BY district",       // 20 in each: passes
		"SELECT district, COUNT(*) AS n FROM residents WHERE income >= 1040 GROUP BY district", // 4 of north differ: fails
		all,
	}
	var want []string
	for _, m := range []int64{0, 1, 3, 1000} {
		sc := base
		sc.Tables = append([]engine.Table{}, base.Tables...)
		sc.Tables[0].MaxRowsPerUnit = m
		sc.Tables[0].UnitComplete = m == 3 // count(*) instead of count(unit)
		for i, q := range queries {
			plan, err := v.Validate(ctx, q, sc)
			if err != nil {
				t.Fatal(err)
			}
			checks, err := v.Checks(ctx, plan, sc, []engine.Prior{{Job: "j-prior", Query: all}}, diffRules)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range checks {
				if c.Kind == engine.CheckDifference && (c.FastSQL != "") != (m > 0) {
					t.Errorf("m=%d: fast variant %q", m, c.FastSQL)
				}
			}
			rows, rep := runChecked(t, v, sc, q, []engine.Prior{{Job: "j-prior", Query: all}}, true)
			got := fmt.Sprintf("north=%q south=%q differencing=%d", rows["north"], rows["south"], rep.Differencing)
			if m == 0 {
				want = append(want, got)
			} else if got != want[i] {
				t.Errorf("m=%d %s: %s, exact %s", m, q, got, want[i])
			}
		}
	}
	if !strings.Contains(want[0], "north=\"\"") || !strings.Contains(want[2], "north=\"\"") || strings.Contains(want[1], "\"\"") || !strings.Contains(want[3], "north=\"50\"") {
		t.Errorf("exact verdicts: %v", want)
	}
}
