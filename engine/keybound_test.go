package engine_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
)

// keyBoundTable writes rows in which no unit has more than 2 rows with one value of g,
// while unit 1 has 40 rows in all, every one with h = 'hub': the rows-per-unit maximum by
// g is 2, by h and overall 40. Around k = 5 and that maximum it has groups of exactly k
// units, of k-1 units with up to 2k-1 rows, a dominated group, groups on the boundaries of
// the (n,k) and the p% rule, values that cancel within a unit, a NULL group, groups that
// lower(g) merges (a unit with 4 rows in the merged group), and, where complete is false,
// rows without a unit.
func keyBoundTable(t *testing.T, complete bool) string {
	t.Helper()
	var rows []string
	add := func(g, h string, pid int, v float64) {
		p := fmt.Sprint(pid)
		if pid == 0 {
			p = "NULL"
		}
		rows = append(rows, fmt.Sprintf("(%s, %s, %s, %g::DOUBLE)", g, h, p, v))
	}
	pid := 100
	group := func(g string, units, rowsEach int, values ...float64) {
		i := 0
		for u := 0; u < units; u++ {
			pid++
			for r := 0; r < rowsEach; r++ {
				v := 1.0
				if i < len(values) {
					v = values[i]
				}
				add(g, fmt.Sprintf("'h%d'", pid%7), pid, v)
				i++
			}
		}
	}
	// Unit 1: two rows in each of 20 groups, 40 in all, every one in the hub.
	for i := 0; i < 20; i++ {
		add(fmt.Sprintf("'s%d'", i), "'hub'", 1, float64(i%3-1))
		add(fmt.Sprintf("'s%d'", i), "'hub'", 1, float64(i))
	}
	// The spread groups: 30 units of one row each besides unit 1, every third group
	// dominated by one of them.
	for i := 0; i < 20; i++ {
		v := []float64{1, 2, 3}
		if i%3 == 0 {
			v = []float64{5000}
		}
		group(fmt.Sprintf("'s%d'", i), 30, 1, v...)
	}
	group("'tie'", 5, 2)                                // k units, k·2 rows: decided by rows, passes
	group("'tie9'", 5, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1) // trimmed below to 9 rows
	rows = rows[:len(rows)-1]
	group("'short'", 4, 2)                               // k-1 units, 8 rows: suppressed
	group("'below'", 4, 1)                               // fails on rows
	group("'dom'", 10, 2, 1000)                          // one unit dominates
	group("'nk_pass'", 6, 1, 45, 45, 2.5, 2.5, 2.5, 2.5) // top two exactly 90%
	group("'nk_fail'", 6, 1, 45, 45.5, 2.375, 2.375, 2.375, 2.375)
	group("'p_pass'", 6, 1, 100, 100, 2.5, 2.5, 2.5, 2.5) // the rest exactly 10% of the largest
	group("'p_fail'", 6, 1, 100, 100, 2.375, 2.375, 2.375, 2.375)
	group("'cancel'", 6, 2, 500, -500, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1) // a unit of +500 and -500
	group("NULL", 6, 2, -900)
	// lower(g) merges mix and MIX: three units of 2 rows in each, 4 in the merged group.
	for u := 0; u < 3; u++ {
		pid++
		for _, g := range []string{"'mix'", "'MIX'"} {
			add(g, "'h1'", pid, 1)
			add(g, "'h1'", pid, 1)
		}
	}
	if !complete {
		for i := 0; i < 30; i++ {
			add("'tie'", "'h2'", 0, 3)
			add("'short'", "'h2'", 0, 3)
			add("'s1'", "'hub'", 0, 700)
		}
	}
	return writeParquet(t, "keybound.parquet", "SELECT * FROM (VALUES "+strings.Join(rows, ", ")+") v(g, h, pid, v)")
}

// A group of a query grouped by a column as it is holds the rows of one value of it, so the
// rows-per-unit maximum measured by that column bounds a unit's rows in the group, and the
// fast plan with that bound (and the dominance bounds with it) releases exactly what the
// exact plan with the exact checks releases: ties at k, k-1 units of many rows, dominance
// on either side of both rules, a NULL group, HAVING, ORDER BY and LIMIT, a WHERE, several
// keys, positions and GROUP BY ALL. A key that is an expression (lower(g) merges groups),
// a query without keys and a join get no such bound.
func TestKeyColumnBoundMatchesExact(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const k = 5
	rules := engine.CheckRules{K: k, DominanceN: 2, DominanceK: 90, DominanceP: 10}
	var total gate.ThresholdReport
	for _, complete := range []bool{true, false} {
		file := keyBoundTable(t, complete)
		most, missing, err := engine.UnitStats(ctx, []string{file}, "pid")
		if err != nil || most != 40 || (missing == 0) != complete {
			t.Fatalf("rows per unit %d, without a unit %d: %v", most, missing, err)
		}
		by, err := engine.UnitStatsBy(ctx, []string{file}, "pid", map[string]string{"g": "g", "h": "h", "v": "v"})
		if err != nil || by["g"] != 2 || by["h"] != 40 {
			t.Fatalf("rows per unit by column %v: %v", by, err)
		}
		tbl := engine.Table{Name: "t", Files: []string{file}, MaxRowsPerUnit: most, UnitComplete: complete, MaxRowsPerUnitBy: by, Columns: []engine.Column{
			{Name: "g", Type: "VARCHAR"}, {Name: "h", Type: "VARCHAR"}, {Name: "pid", Type: "BIGINT", PrivacyUnit: true}, {Name: "v", Type: "DOUBLE"},
		}}
		other := engine.Table{Name: "u", Files: []string{file}, MaxRowsPerUnit: most, UnitComplete: complete, MaxRowsPerUnitBy: by, Columns: tbl.Columns}
		sc := engine.Scope{Mode: "threshold", Tables: []engine.Table{tbl, other}}
		for _, tc := range []struct {
			q string
			m int64 // the bound the plan may rely on; 0: no fast plan; -1: refused
		}{
			{"SELECT g, COUNT(*) AS n FROM t GROUP BY g", 2},
			{"SELECT g, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY g", 2},
			{"SELECT g, AVG(v) AS a, COUNT(*) AS n FROM t WHERE v > -600 GROUP BY g HAVING COUNT(*) > 3 ORDER BY g LIMIT 30", 2},
			{"SELECT g, SUM(v) AS s FROM t GROUP BY 1 ORDER BY s DESC LIMIT 8", 2},
			{"SELECT x.g, h, COUNT(*) AS n, SUM(v) AS s FROM t AS x GROUP BY ALL", 2},
			{"SELECT h, g, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY h, g", 2},
			{"SELECT h, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY h", 40},
			{"SELECT lower(g) AS lg, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY lower(g)", 40},
			{"SELECT lower(g) AS g2, COUNT(*) AS n FROM t GROUP BY g2", 40},
			{"SELECT COUNT(*) AS n, SUM(v) AS s FROM t", 40},
			{"SELECT h AS g, COUNT(*) AS n FROM t GROUP BY h", 40},
			// DuckDB groups by the column g, not the alias: refused, as lower(h) is not grouped.
			{"SELECT lower(h) AS g, COUNT(*) AS n FROM t GROUP BY g", -1},
			{"SELECT g AS h, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY g", 2},
			{"SELECT t.g, COUNT(*) AS n, SUM(t.v) AS s FROM t JOIN u ON t.pid = u.pid GROUP BY t.g", 0},
		} {
			plan, err := v.Validate(ctx, tc.q, sc)
			if tc.m < 0 {
				if !errors.Is(err, engine.ErrRefused) {
					t.Errorf("%s: %v, want a refusal", tc.q, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", tc.q, err)
			}
			m := plan.RowsPerUnit(tbl)
			if fast := plan.FastFor(tbl); (fast == "") != (tc.m == 0) || (tc.m > 0 && m != tc.m) {
				t.Errorf("%s: bound %d (key columns %v), want %d; fast plan %q", tc.q, m, plan.KeyColumns, tc.m, fast)
				continue
			}
			checks, err := v.Checks(ctx, plan, sc, nil, rules)
			if err != nil {
				t.Fatal(err)
			}
			var cells, units string
			for _, c := range checks {
				if c.Kind == engine.CheckDominance {
					cells, units = c.CellSQL, c.UnitsSQL
				}
			}
			exactPlan := *plan
			exactPlan.FastSQL, exactPlan.MaxRowsPerUnit = "", 0
			exact, exactRep, er := protected(t, &engine.Job{SQL: plan.SQL, K: k, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}, &exactPlan, k, &rules, checks)
			release(er)
			// The fast plan with the bound, then the undecided cells' units and verdicts in
			// one pass (DominanceUnits), or in two (the exact plan, DominanceCells).
			// A relation whose cells do not hold their groups' rows is not relied on: the
			// runner narrows and checks as before.
			tampered := ""
			if units != "" {
				tampered = "SELECT * REPLACE (__veil_rows + 1 AS __veil_rows, __veil_units_0 + 100 AS __veil_units_0) FROM (" + units + ") AS x"
			}
			variants := []string{""}
			if units != "" {
				variants = []string{units, "", tampered}
			}
			for _, variant := range variants {
				onePass := variant != ""
				fastPlan := *plan
				fastPlan.FastSQL, fastPlan.MaxRowsPerUnit = plan.FastFor(tbl), m
				job := &engine.Job{SQL: plan.SQL, FastSQL: fastPlan.FastSQL, K: k, MaxRowsPerUnit: m, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20,
					Dominance: plan.Dominance, DominanceCells: cells}
				job.DominanceUnits = variant
				if fastPlan.FastSQL == "" {
					job.MaxRowsPerUnit = 0
				}
				before := engine.OnePasses()
				got, rep, gr := protected(t, job, &fastPlan, k, &rules, checks)
				release(gr)
				ran := engine.OnePasses() > before
				if variant == units && tc.m > 0 && units != "" && (tc.m < 40 || !complete) && !ran {
					t.Errorf("complete=%v %s: the one pass did not run", complete, tc.q)
				}
				if variant == tampered && ran {
					t.Errorf("complete=%v %s: the one pass relied on cells of other rows", complete, tc.q)
				}
				if got != exact || !reflect.DeepEqual(rep, exactRep) {
					t.Errorf("complete=%v one pass=%v %s:\nbound %d %+v:\n%s\nexact %+v:\n%s", complete, onePass, tc.q, m, rep, got, exactRep, exact)
				}
			}
			if exactRep.Groups == 0 {
				t.Errorf("complete=%v %s: no groups", complete, tc.q)
			}
			total.Released += exactRep.Released
			total.Suppressed += exactRep.Suppressed
			total.Dominance += exactRep.Dominance
		}
	}
	if total.Released < 20 || total.Suppressed < 10 || total.Dominance < 20 {
		t.Errorf("%+v: the cases decide too little", total)
	}
}

// RowsPerUnit takes the smallest measured maximum of the plan's key columns (names as DuckDB
// resolves them, ignoring ASCII case), never one above the table's, and nothing where the
// table's is unknown.
func TestRowsPerUnit(t *testing.T) {
	tbl := engine.Table{MaxRowsPerUnit: 40, MaxRowsPerUnitBy: map[string]int64{"g": 2, "h": 50, "v": 0, "w": 7}}
	for _, tc := range []struct {
		keys []string
		want int64
	}{
		{nil, 40}, {[]string{"g"}, 2}, {[]string{"G"}, 2}, {[]string{"h"}, 40}, {[]string{"v"}, 40},
		{[]string{"w", "g"}, 2}, {[]string{"w", "h"}, 7}, {[]string{"x"}, 40},
	} {
		p := engine.Plan{KeyColumns: tc.keys}
		if got := p.RowsPerUnit(tbl); got != tc.want {
			t.Errorf("keys %v: %d, want %d", tc.keys, got, tc.want)
		}
	}
	unknown := tbl
	unknown.MaxRowsPerUnit = 0
	if got := (&engine.Plan{KeyColumns: []string{"g"}}).RowsPerUnit(unknown); got != 0 {
		t.Errorf("unknown maximum: %d", got)
	}
}
