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
	job := &engine.Job{SQL: plan.SQL, Tables: sc.Tables, Threads: 1, MemoryLimitMB: 256, MaxResultBytes: 1 << 20}
	for _, c := range checks {
		job.Checks = append(job.Checks, c.SQL)
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
	sc := diffScope(t)
	v := newValidator(t)
	for _, tc := range []struct {
		q         string
		want      string
		dominance int
	}{
		{"SELECT district, SUM(income) AS s FROM residents GROUP BY district", "north=62250 south=", 1},
		{"SELECT district, AVG(income) AS s FROM residents GROUP BY district", "north=1245 south=", 1},
		{"SELECT district, COUNT(*) AS n FROM residents GROUP BY district", "north=50 south=50", 0},
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
			t.Errorf("%s: %s, report %+v; want %s with %d dominance", tc.q, got, rep, tc.want, tc.dominance)
		}
	}
}
