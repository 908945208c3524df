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

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
)

// dominanceTable writes cells whose hidden dominance columns decide them (many persons of
// small contributions), cells they leave undecided that pass or fail the exact rules, cells
// on the boundary of the (n,k) and the p% rule on either side, a NULL key, negative values,
// a dominated cell of fewer than k persons, and 3,000 generated cells (more than one Arrow
// batch), every other one dominated. No person has more than 4 rows.
func dominanceTable(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "dominance.parquet")
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cell := func(g string, first int, values ...float64) string {
		var rows []string
		for i, v := range values {
			rows = append(rows, fmt.Sprintf("(%s, %d, %g::DOUBLE)", g, first+i, v))
		}
		return "SELECT * FROM (VALUES " + strings.Join(rows, ", ") + ") v(g, pid, v)"
	}
	parts := []string{
		// decided: 40 persons of 4 rows of 1 each
		"SELECT 'sure' AS g, 1000 + i // 4 AS pid, 1::DOUBLE AS v FROM range(160) t(i)",
		cell("'pass'", 2000, 10, 5, 5, 5, 5, 5),
		cell("'fail'", 2100, 1000, 1, 1, 1, 1, 1),
		cell("'nk_edge_pass'", 2200, 45, 45, 2.5, 2.5, 2.5, 2.5),           // top two exactly 90%
		cell("'nk_edge_fail'", 2300, 45, 45.5, 2.375, 2.375, 2.375, 2.375), // 90.5%
		cell("'p_edge_pass'", 2400, 100, 100, 2.5, 2.5, 2.5, 2.5),          // the rest exactly 10% of the largest
		cell("'p_edge_fail'", 2500, 100, 100, 2.375, 2.375, 2.375, 2.375),
		cell("NULL", 2600, -1000, 1, 1, 1, 1, 1), // NULL key, negative, fails
		cell("'neg_pass'", 2700, -10, -5, -5, -5, -5, -5),
		cell("'small'", 2800, 1000, 1, 1), // fewer than k persons: suppressed anyway
		// generated: 5 persons each; every other cell has one of 1000 against four of 1
		`SELECT 'c' || gid AS g, 10000 + gid * 5 + p AS pid,
			CASE WHEN gid % 2 = 0 AND p = 0 THEN 1000 ELSE 1 END::DOUBLE AS v
		FROM range(3000) a(gid), range(5) b(p)`,
	}
	q := fmt.Sprintf("COPY (%s) TO '%s' (FORMAT parquet)", strings.Join(parts, " UNION ALL "), file)
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
	return file
}

// The dominance check restricted to the cells the query's result leaves undecided gives
// the gate what the exact check over every cell gives: the same released rows, the same
// dominance suppressions, on cells that pass, fail and sit on either side of both rules'
// boundaries.
func TestRestrictedDominanceMatchesExact(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	file := dominanceTable(t)
	sc := engine.Scope{Mode: "threshold", Tables: []engine.Table{{Name: "t", Files: []string{file}, MaxRowsPerUnit: 4, UnitComplete: true, Columns: []engine.Column{
		{Name: "g", Type: "VARCHAR"}, {Name: "pid", Type: "BIGINT", PrivacyUnit: true}, {Name: "v", Type: "DOUBLE"},
	}}}}
	for _, tc := range []struct {
		sql   string
		rules engine.CheckRules
	}{
		{"SELECT g, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY g", engine.CheckRules{K: 5, DominanceN: 2, DominanceK: 90, DominanceP: 10}},
		{"SELECT g, AVG(v) AS a FROM t GROUP BY g", engine.CheckRules{K: 5, DominanceP: 10}},
		{"SELECT g, SUM(v) AS s, AVG(v) FILTER (WHERE v < 50) AS a FROM t GROUP BY 1", engine.CheckRules{K: 5, DominanceN: 2, DominanceK: 90}},
	} {
		plan, err := v.Validate(ctx, tc.sql, sc)
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		checks, err := v.Checks(ctx, plan, sc, nil, tc.rules)
		if err != nil || len(checks) != 1 || checks[0].Kind != engine.CheckDominance || checks[0].CellSQL == "" || len(plan.Dominance) == 0 {
			t.Fatalf("%s: checks %+v, dominance columns %v: %v", tc.sql, checks, plan.Dominance, err)
		}
		run := func(restricted bool) (string, gate.ThresholdReport, int64) {
			job := &engine.Job{SQL: plan.SQL, FastSQL: plan.FastSQL, K: tc.rules.K, MaxRowsPerUnit: 4, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20,
				Checks: []string{checks[0].SQL}, CheckFast: []string{""}, DominanceCheck: 1, DominanceRules: &tc.rules}
			if restricted {
				job.Dominance, job.DominanceCells = plan.Dominance, checks[0].CellSQL
			}
			var buf bytes.Buffer
			if err := engine.Run(ctx, job, &buf); err != nil {
				t.Fatalf("%s: run: %v", tc.sql, err)
			}
			recs, err := engine.ReadResults(&buf, 8<<20, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer recs[0].Release()
			defer recs[1].Release()
			out, rep, err := gate.ThresholdChecked(recs[0], plan, gate.ThresholdRule{K: tc.rules.K, RoundTo: 1}, []gate.CheckResult{{Kind: engine.CheckDominance, Rec: recs[1]}})
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
			sortStrings(rows)
			return strings.Join(rows, "\n"), rep, recs[1].NumRows()
		}
		exact, exactRep, exactFails := run(false)
		got, rep, fails := run(true)
		if got != exact || !reflect.DeepEqual(rep, exactRep) {
			t.Errorf("%s:\nrestricted %+v:\n%s\nexact %+v:\n%s", tc.sql, rep, got, exactRep, exact)
		}
		// The restricted check left the decided cells and the cell of fewer than k persons
		// alone (the exact check names the latter); both suppress by dominance.
		if fails >= exactFails || exactRep.Dominance < 1500 {
			t.Errorf("%s: restricted check named %d cells, exact %d; %d suppressed by dominance", tc.sql, fails, exactFails, exactRep.Dominance)
		}
	}
}

// A threshold query without rows is decided by its row counts: the runner writes no cells
// without running the exact plan or the checks, and the gate receives what the full run
// gives it (no rows, in the row-counting plan's schema as from any result its row counts
// decide; the checks' streams with the same schemas: the full run's checks may name cells
// of no row, which the gate matches with none) and gives the same output and report.
func TestEmptyResultShortCircuits(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	sc := narrowScope(narrowTable(t))
	rules := engine.CheckRules{K: 5, DominanceN: 2, DominanceK: 90, DominanceP: 10}
	for _, q := range []string{
		"SELECT g, COUNT(*) AS n, SUM(v) AS s FROM t WHERE v < 0 GROUP BY g",
		"SELECT g, h, COUNT(*) AS n FROM t WHERE v > 1000 GROUP BY g, h",
		"SELECT g, COUNT(*) AS n, MAX(v) AS m FROM t GROUP BY g HAVING COUNT(*) > 1000",
	} {
		plan, err := v.Validate(ctx, q, sc)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		checks, err := v.Checks(ctx, plan, sc, []engine.Prior{{Job: "j-prior", Query: "SELECT g, COUNT(*) AS n FROM t GROUP BY g"}}, rules)
		if err != nil || len(checks) == 0 {
			t.Fatalf("%s: checks %v: %v", q, checks, err)
		}
		run := func(fastSQL string) (string, string) {
			job := &engine.Job{SQL: plan.SQL, FastSQL: fastSQL, K: 5, MaxRowsPerUnit: 4, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}
			var results []gate.CheckResult
			for i, c := range checks {
				job.Checks, job.CheckFast = append(job.Checks, c.SQL), append(job.CheckFast, c.FastSQL)
				if c.Kind == engine.CheckDominance {
					job.DominanceCheck, job.DominanceRules, job.Dominance, job.DominanceCells = i+1, &rules, plan.Dominance, c.CellSQL
				}
			}
			var buf bytes.Buffer
			if err := engine.Run(ctx, job, &buf); err != nil {
				t.Fatalf("%s: run: %v", q, err)
			}
			recs, err := engine.ReadResults(&buf, 8<<20, len(checks))
			if err != nil {
				t.Fatal(err)
			}
			var streams []string
			for i, r := range recs {
				if i == 0 {
					// The exact plan's columns, or the row-counting plan's (its row count
					// where the other has the units).
					schema := strings.Replace(r.Schema().String(), engine.RowsColumn, plan.Units[0], 1)
					streams = append(streams, fmt.Sprintf("%s rows=%d", schema, r.NumRows()))
				} else {
					// A check may name cells of no row (HAVING drops them, or only a
					// prior selects their rows): the gate matches them with none.
					streams = append(streams, r.Schema().String())
					results = append(results, gate.CheckResult{Kind: checks[i-1].Kind, Priors: checks[i-1].Priors, Rec: r})
				}
			}
			out, rep, err := gate.ThresholdChecked(recs[0], plan, gate.ThresholdRule{K: 5, RoundTo: 1}, results)
			release(recs)
			if err != nil {
				t.Fatalf("%s: gate: %v", q, err)
			}
			defer out.Release()
			return strings.Join(streams, "\n"), fmt.Sprintf("%s rows=%d %+v", out.Schema(), out.NumRows(), rep)
		}
		fullIn, fullOut := run("")
		fastIn, fastOut := run(plan.FastSQL)
		if fastIn != fullIn || fastOut != fullOut {
			t.Errorf("%s:\nshort-circuited:\n%s\n%s\nfull:\n%s\n%s", q, fastIn, fastOut, fullIn, fullOut)
		}
		if !strings.Contains(fullIn, "rows=0") {
			t.Errorf("%s: %s", q, fullIn)
		}
	}
}

func release(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}
