package engine_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
)

// valueUnitsTable writes groups of g around k = 5 in which most persons have one row of
// their group's value: ties at k units, k-1 units in k+1 rows, cells whose values cancel
// across persons (the sum near 0, each person's own value large) that pass, cells of one
// row each that one or two persons dominate (on either side of both rules), a person
// spanning many groups with two rows in each, values cancelling within one person, a NULL
// group, and (complete false) rows without a unit.
func valueUnitsTable(t *testing.T, complete bool) string {
	t.Helper()
	var rows []string
	pid := 1000
	add := func(g string, p int, v float64) {
		ps := fmt.Sprint(p)
		if p == 0 {
			ps = "NULL"
		}
		rows = append(rows, fmt.Sprintf("(%s, %s, %g::DOUBLE)", g, ps, v))
	}
	// one row per person, values as given (1 for the rest)
	flat := func(g string, units int, values ...float64) {
		for u := 0; u < units; u++ {
			pid++
			v := 1.0
			if u < len(values) {
				v = values[u]
			}
			add(g, pid, v)
		}
	}
	flat("'tie'", 5)                                                 // exactly k units: passes on its figures
	flat("'cancel'", 12, 300, -300, 250, -250, 200, -200, 100, -100) // |S| tiny, every person large: passes
	flat("'cancel2'", 6, 500, -500, 400, -400, 45, -45)              // passes the (n,k) rule? 900 of 1890: yes
	flat("'dom1'", 12, 5000, -1, 1, -1)                              // one person dominates
	flat("'nk_pass'", 6, 45, 45, 2.5, 2.5, 2.5, 2.5)                 // the top two exactly 90%
	flat("'nk_fail'", 6, 45, 45.5, 2.375, 2.375, 2.375, 2.375)
	flat("'nk_neg'", 6, -45, 45.5, -2.375, 2.375, -2.375, 2.375) // the same, signs mixed
	flat("'p_pass'", 6, 100, 100, 2.5, 2.5, 2.5, 2.5)            // the rest exactly 10% of the largest
	flat("'p_fail'", 6, 100, -100, 2.375, -2.375, 2.375, -2.375)
	flat("'big'", 80) // decided by rows (k·M)
	// k-1 persons in k+1 rows: two of them with two rows, values cancelling within each.
	flat("'short'", 4)
	add("'short'", pid, -1)
	add("'short'", pid-1, -1)
	// A group whose persons cancel within themselves: +700 and -700 each, three of them, and
	// five persons of 1: the persons' total is 5, not 4200.
	for i := 0; i < 3; i++ {
		pid++
		add("'selfcancel'", pid, 700)
		add("'selfcancel'", pid, -700)
	}
	flat("'selfcancel'", 5)
	// Person 1 spans 20 groups with two rows in each, every one of 30 other persons.
	for i := 0; i < 20; i++ {
		add(fmt.Sprintf("'s%d'", i), 1, float64(10*i))
		add(fmt.Sprintf("'s%d'", i), 1, float64(i%3-1))
		v := []float64{1, -2, 3}
		if i%4 == 0 {
			v = []float64{-900}
		}
		flat(fmt.Sprintf("'s%d'", i), 30, v...)
	}
	flat("NULL", 6, -900)
	if !complete {
		for i := 0; i < 6; i++ {
			add("'tie'", 0, 3)
			add("'cancel'", 0, 900)
		}
	}
	return writeParquet(t, "valueunits.parquet", "SELECT * FROM (VALUES "+strings.Join(rows, ", ")+") v(g, pid, v)")
}

// The rows, units and most rows of one person of each value of a key column (ValueUnits,
// measured at registration) decide groups between k and k·M rows and dominance cells whose
// values cancel, with no second pass where they decide every one; the protected output and
// report are the exact plan's with the exact checks: ties at k, k-1 persons in k+1 rows,
// both rules' boundaries, mixed signs, a person spanning groups, values cancelling within a
// person, a NULL group, a WHERE, HAVING, two keys, an expression key, rows without a unit.
// Figures that lie (units too many) change the output: the test would see a bound too weak.
func TestValueUnitsMatchExact(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const k = 5
	rules := engine.CheckRules{K: k, DominanceN: 2, DominanceK: 90, DominanceP: 10}
	var total gate.ThresholdReport
	lied := 0
	for _, complete := range []bool{true, false} {
		file := valueUnitsTable(t, complete)
		most, missing, err := engine.UnitStats(ctx, []string{file}, "pid")
		if err != nil || most != 40 || (missing == 0) != complete {
			t.Fatalf("rows per unit %d, without a unit %d: %v", most, missing, err)
		}
		by, err := engine.UnitStatsBy(ctx, []string{file}, "pid", map[string]string{"g": "g", "v": "v"})
		if err != nil || by["g"] != 2 {
			t.Fatalf("rows per unit by column %v: %v", by, err)
		}
		vu, err := engine.ValueUnitStats(ctx, []string{file}, "pid", map[string]string{"g": "g", "v": "v"})
		if err != nil || len(vu) != 1 || vu["g"]["tie"] != (engine.ValueUnits{Rows: 5, Units: 5, Max: 1}) ||
			vu["g"]["short"] != (engine.ValueUnits{Rows: 6, Units: 4, Max: 2}) || vu["g"]["s3"] != (engine.ValueUnits{Rows: 32, Units: 31, Max: 2}) {
			t.Fatalf("units by value %v: %v", vu, err)
		}
		tbl := engine.Table{Name: "t", Files: []string{file}, MaxRowsPerUnit: most, UnitComplete: complete, MaxRowsPerUnitBy: by, ValueUnits: vu, Columns: []engine.Column{
			{Name: "g", Type: "VARCHAR"}, {Name: "pid", Type: "BIGINT", PrivacyUnit: true}, {Name: "v", Type: "DOUBLE"},
		}}
		sc := engine.Scope{Mode: "threshold", Tables: []engine.Table{tbl}}
		for _, tc := range []struct {
			q     string
			byKey bool // the plan looks its keys up
			none  bool // and no second pass runs
		}{
			{"SELECT g, COUNT(*) AS n FROM t GROUP BY g", true, false}, // the NULL group has no figures
			{"SELECT g, COUNT(*) AS n FROM t WHERE g IS NOT NULL GROUP BY g", true, true},
			{"SELECT g, COUNT(*) AS n, SUM(v) AS s FROM t GROUP BY g", true, false},
			{"SELECT g, AVG(v) AS a FROM t GROUP BY g", true, false},
			// Cells of one row per person that pass (their sums cancel) or that their
			// largest person alone fails, a group the figures suppress; none on a rule's
			// boundary or failing by its second person (the bounds know the largest value
			// only), none of a person of two rows that dominates: no second pass.
			{"SELECT g, AVG(v) AS a FROM t WHERE g IN ('tie', 'cancel', 'cancel2', 'dom1', 'big', 'short') GROUP BY g", true, true},
			{"SELECT g, SUM(v) AS s, COUNT(*) AS n FROM t WHERE g IN ('tie', 'cancel', 'dom1', 'short') AND v > -280 GROUP BY g", true, true},
			{"SELECT g, AVG(v) AS a, COUNT(*) AS n FROM t WHERE v > -600 GROUP BY g HAVING COUNT(*) > 3 ORDER BY g", true, false},
			{"SELECT g, SUM(v) FILTER (WHERE v < 400) AS s FROM t GROUP BY 1", true, false},
			{"SELECT g, g || 'x' AS gx, SUM(v) AS s FROM t GROUP BY g, gx", true, false},
			{"SELECT lower(g) AS lg, SUM(v) AS s FROM t GROUP BY lower(g)", false, false},
			{"SELECT upper(g) AS g, COUNT(*) AS n FROM t GROUP BY g", true, false},
			{"SELECT upper(g) AS g, COUNT(*) AS n FROM t GROUP BY 1", false, false},
			{"SELECT g || '' AS g, COUNT(*) AS n FROM t WHERE v > -280 GROUP BY ALL", false, false},
		} {
			plan, err := v.Validate(ctx, tc.q, sc)
			if err != nil {
				t.Fatalf("%s: %v", tc.q, err)
			}
			keyUnits := plan.KeyUnits(tbl)
			if (keyUnits != nil) != tc.byKey {
				t.Fatalf("%s: key units %v (keys %v)", tc.q, keyUnits != nil, plan.KeyOf)
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
			m := plan.RowsPerUnit(tbl)
			fastPlan := *plan
			fastPlan.FastSQL, fastPlan.MaxRowsPerUnit = plan.FastFor(tbl), m
			run := func(ku []map[string]engine.ValueUnits) (string, gate.ThresholdReport, bool) {
				job := &engine.Job{SQL: plan.SQL, FastSQL: fastPlan.FastSQL, K: k, MaxRowsPerUnit: m, KeyUnits: ku, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20,
					Dominance: plan.Dominance, DominanceCells: cells, DominanceUnits: units}
				before := engine.Restricts()
				got, rep, gr := protected(t, job, &fastPlan, k, &rules, checks)
				release(gr)
				return got, rep, engine.Restricts() == before
			}
			got, rep, none := run(keyUnits)
			if got != exact || !reflect.DeepEqual(rep, exactRep) {
				t.Errorf("complete=%v %s:\nby value %+v:\n%s\nexact %+v:\n%s", complete, tc.q, rep, got, exactRep, exact)
			}
			if tc.none && complete && !none {
				t.Errorf("complete=%v %s: a second pass ran", complete, tc.q)
			}
			// Figures that lie: every value one unit per row. Where that decides a group or
			// cell the truth does not, the output differs from the exact one.
			if keyUnits != nil {
				liar := make([]map[string]engine.ValueUnits, len(keyUnits))
				for i, m := range keyUnits {
					if m == nil {
						continue
					}
					liar[i] = map[string]engine.ValueUnits{}
					for val, u := range m {
						liar[i][val] = engine.ValueUnits{Rows: u.Rows, Units: u.Rows, Max: 1}
					}
				}
				if lgot, lrep, _ := run(liar); lgot != exact || !reflect.DeepEqual(lrep, exactRep) {
					lied++
				}
			}
			total.Released += exactRep.Released
			total.Suppressed += exactRep.Suppressed
			total.Dominance += exactRep.Dominance
		}
	}
	if total.Released < 20 || total.Suppressed < 10 || total.Dominance < 10 || lied == 0 {
		t.Errorf("%+v, %d lies seen: the cases decide too little", total, lied)
	}
}

// The report's near-k count (shown to the vendor with the job) is the exact plan's whatever
// the figures of a value: a group the figures decide reads as near k only where its persons
// are fewer than 2k. Otherwise a vendor varying a WHERE (and reading its own count) finds
// where the flag turns, which is the value's rows beyond each person's first (Rows-Units)
// or its heaviest person's rows (Max), figures the catalog hides. Here value 'a' has ten
// persons, one of them with ten rows; kept are five of that person's rows and the other
// nine persons' one each: 14 rows, 10 persons (not near k = 5), whose figures bound them
// only by 14 - 9 = 5 persons.
func TestValueUnitsNearKIsExact(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const k = 5
	var rows []string
	for r := 1; r <= 10; r++ {
		rows = append(rows, fmt.Sprintf("('a', 1, %d)", r))
	}
	for p := 2; p <= 10; p++ {
		rows = append(rows, fmt.Sprintf("('a', %d, 0)", p))
	}
	for p := 100; p < 160; p++ { // another value: M stays 10, kM 50 above the group's rows
		rows = append(rows, fmt.Sprintf("('b', %d, 0)", p))
	}
	file := writeParquet(t, "nearvalue.parquet", "SELECT * FROM (VALUES "+strings.Join(rows, ", ")+") v(g, pid, r)")
	most, _, err := engine.UnitStats(ctx, []string{file}, "pid")
	if err != nil {
		t.Fatal(err)
	}
	vu, err := engine.ValueUnitStats(ctx, []string{file}, "pid", map[string]string{"g": "g"})
	if err != nil || vu["g"]["a"] != (engine.ValueUnits{Rows: 19, Units: 10, Max: 10}) {
		t.Fatalf("units by value %v: %v", vu, err)
	}
	tbl := engine.Table{Name: "t", Files: []string{file}, MaxRowsPerUnit: most, UnitComplete: true, ValueUnits: vu, Columns: []engine.Column{
		{Name: "g", Type: "VARCHAR"}, {Name: "pid", Type: "BIGINT", PrivacyUnit: true}, {Name: "r", Type: "BIGINT"},
	}}
	sc := engine.Scope{Mode: "threshold", Tables: []engine.Table{tbl}}
	for _, q := range []string{
		"SELECT g, COUNT(*) AS n FROM t WHERE r <= 5 GROUP BY g",
		"SELECT g, COUNT(*) AS n FROM t WHERE r <= 6 GROUP BY g",
		"SELECT g, COUNT(*) AS n FROM t GROUP BY g",
	} {
		plan, err := v.Validate(ctx, q, sc)
		if err != nil {
			t.Fatal(err)
		}
		exactPlan := *plan
		exactPlan.FastSQL, exactPlan.MaxRowsPerUnit = "", 0
		exact, exactRep, er := protected(t, &engine.Job{SQL: plan.SQL, K: k, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}, &exactPlan, k, nil, nil)
		release(er)
		m := plan.RowsPerUnit(tbl)
		fastPlan := *plan
		fastPlan.FastSQL, fastPlan.MaxRowsPerUnit = plan.FastFor(tbl), m
		job := &engine.Job{SQL: plan.SQL, FastSQL: fastPlan.FastSQL, K: k, MaxRowsPerUnit: m, KeyUnits: plan.KeyUnits(tbl), Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}
		got, rep, gr := protected(t, job, &fastPlan, k, nil, nil)
		release(gr)
		if got != exact || !reflect.DeepEqual(rep, exactRep) {
			t.Errorf("%s:\nby value %+v:\n%s\nexact %+v:\n%s", q, rep, got, exactRep, exact)
		}
	}
}

// Likewise for the rows-per-person bound: a group of n rows, at least k·M, has at least
// ceil(n/M) persons, which is under 2k up to (2k-1)·M rows. Flagging near k there a group of
// more persons would let a vendor varying a WHERE find where the flag turns, (2k-1)·M + 1
// rows: M, the heaviest person's rows, which the catalog hides. Here M is 10 (one person of
// 'z'), k·M 50: groups of 55 and 60 persons of one row each, 95 rows of ten persons, and
// 191 rows whose bound is 2k.
func TestRowsBoundNearKIsExact(t *testing.T) {
	ctx := context.Background()
	v, err := engine.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	const k = 5
	var rows []string
	pid := 0
	flat := func(g string, persons, each int) {
		for p := 0; p < persons; p++ {
			pid++
			for r := 0; r < each; r++ {
				rows = append(rows, fmt.Sprintf("('%s', %d, %d)", g, pid, r))
			}
		}
	}
	flat("a", 60, 1)
	flat("b", 55, 1)
	flat("c", 9, 10)
	flat("c", 5, 1)
	flat("d", 191, 1)
	flat("z", 1, 10)
	file := writeParquet(t, "nearrows.parquet", "SELECT * FROM (VALUES "+strings.Join(rows, ", ")+") v(g, pid, r)")
	most, _, err := engine.UnitStats(ctx, []string{file}, "pid")
	if err != nil || most != 10 {
		t.Fatalf("rows per unit %d: %v", most, err)
	}
	tbl := engine.Table{Name: "t", Files: []string{file}, MaxRowsPerUnit: most, UnitComplete: true, Columns: []engine.Column{
		{Name: "g", Type: "VARCHAR"}, {Name: "pid", Type: "BIGINT", PrivacyUnit: true}, {Name: "r", Type: "BIGINT"},
	}}
	sc := engine.Scope{Mode: "threshold", Tables: []engine.Table{tbl}}
	for _, q := range []string{
		"SELECT g, COUNT(*) AS n FROM t GROUP BY g",
		"SELECT g, COUNT(*) AS n FROM t WHERE r < 9 GROUP BY g",
	} {
		plan, err := v.Validate(ctx, q, sc)
		if err != nil {
			t.Fatal(err)
		}
		exactPlan := *plan
		exactPlan.FastSQL, exactPlan.MaxRowsPerUnit = "", 0
		exact, exactRep, er := protected(t, &engine.Job{SQL: plan.SQL, K: k, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}, &exactPlan, k, nil, nil)
		release(er)
		m := plan.RowsPerUnit(tbl)
		fastPlan := *plan
		fastPlan.FastSQL, fastPlan.MaxRowsPerUnit = plan.FastFor(tbl), m
		job := &engine.Job{SQL: plan.SQL, FastSQL: fastPlan.FastSQL, K: k, MaxRowsPerUnit: m, Tables: sc.Tables, Threads: 2, MemoryLimitMB: 256, MaxResultBytes: 8 << 20}
		got, rep, gr := protected(t, job, &fastPlan, k, nil, nil)
		release(gr)
		if got != exact || !reflect.DeepEqual(rep, exactRep) {
			t.Errorf("%s:\nby rows %+v:\n%s\nexact %+v:\n%s", q, rep, got, exactRep, exact)
		}
	}
}
