package engine

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

func dpScope(res, vis string) Scope {
	sc := scope(res, vis)
	sc.Mode = "dp"
	for i := range sc.Tables {
		sc.Tables[i].Unit = "person"
	}
	sc.Tables[0].Columns[2].Domain = []string{"north", "south", "tiny", "east"}
	sc.Tables[0].Columns[3].Bounds = []float64{0, 120}
	return sc
}

// dpRefuseCases are dp queries the validator refuses, with a word the refusal names.
var dpRefuseCases = []struct{ sql, want string }{
	{"SELECT district, COUNT(*) FROM residents WHERE resident_id = 1001 GROUP BY district", "privacy unit"},
	{"SELECT district, COUNT(*) FROM residents WHERE resident_id > 5 GROUP BY district", "privacy unit"},
	{"SELECT district, COUNT(*) FROM residents GROUP BY ROLLUP (district)", "ROLLUP"},
	{"SELECT district, COUNT(*) FROM residents GROUP BY CUBE (district)", "ROLLUP"},
	{"SELECT district, COUNT(*) FROM residents GROUP BY GROUPING SETS ((district), ())", "ROLLUP"},
	{"SELECT COUNT(*) FROM residents UNION SELECT COUNT(*) FROM visits", "set operations"},
	{"SELECT COUNT(*) FROM residents EXCEPT SELECT COUNT(*) FROM visits", "set operations"},
	{"SELECT district, COUNT(*) FROM residents WHERE CAST(district AS INTEGER) > 3 GROUP BY district", "TRY_CAST"},
	{"SELECT district, COUNT(*) FROM residents WHERE income * age > 3 GROUP BY district", "can fail"},
	{"SELECT district, COUNT(*) FROM residents WHERE 100 / (age - 30) > 1 GROUP BY district", "can fail"},
	{"SELECT district, COUNT(*) FROM residents WHERE error('x') IS NULL GROUP BY district", "not allowed"},
	{"SELECT district, COUNT(*) FROM residents WHERE district = 5 GROUP BY district", "quote the value"},
	{"SELECT district, COUNT(*) OVER () FROM residents GROUP BY district", "window"},
	{"SELECT district, COUNT(*) FROM residents GROUP BY district HAVING COUNT(*) > 5", "HAVING"},
	{"SELECT district, COUNT(*) FROM residents GROUP BY district ORDER BY 2 DESC LIMIT 1", "ORDER BY"},
	{"SELECT district, SUM(income) FROM residents GROUP BY district", "no bounds"},
	{"SELECT district, MAX(age) FROM residents GROUP BY district", "not available in dp mode"},
	{"SELECT district, SUM(age * 2) FROM residents GROUP BY district", "plain column"},
	{"SELECT age + 1, COUNT(*) FROM residents GROUP BY age + 1", "plain columns"},
	{"SELECT COUNT(*) FROM residents r LEFT JOIN visits v ON r.resident_id = v.resident_id", "inner joins"},
	{"SELECT COUNT(*) FROM residents r JOIN visits v ON r.age = v.cost", "privacy units"},
	{"SELECT name, COUNT(*) FROM residents GROUP BY name", "direct identifier"},
	{"SELECT hospital, COUNT(*) FROM visits GROUP BY hospital", "needs a delta"},
	// COUNT(unit) counts rows in SQL (and in threshold mode, as count_resident_id): dp mode
	// does not guess whether rows or persons are meant.
	{"SELECT district, COUNT(resident_id) FROM residents GROUP BY district", "COUNT(DISTINCT resident_id) for persons"},
	{"SELECT district, COUNT(r.resident_id) AS n FROM residents r GROUP BY district", "COUNT(*) for rows"},
}

// dpAcceptCases are dp queries the validator accepts.
var dpAcceptCases = []string{
	"SELECT COUNT(*) FROM residents",
	"SELECT COUNT(DISTINCT resident_id) AS persons FROM residents WHERE age > 30",
	"SELECT district, COUNT(*), SUM(age), AVG(age), MEDIAN(age), quantile_cont(age, 0.25) FROM residents GROUP BY district",
	"SELECT r.district, COUNT(*) FROM residents r JOIN visits v ON r.resident_id = v.resident_id WHERE v.cost > 10 GROUP BY r.district",
	"SELECT District, COUNT(*) FROM Residents WHERE TRY(ln(age)) > 1 AND district LIKE 'n%' GROUP BY DISTRICT",
}

func TestDPAccepts(t *testing.T) {
	v := newValidator(t)
	for _, q := range dpAcceptCases {
		plan, err := v.ValidateDP(context.Background(), q, dpScope("", ""), DPOptions{Epsilon: 1, Delta: 1e-6})
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		if plan.DP == nil || plan.SQL == "" || len(plan.DP.Aggs) == 0 {
			t.Errorf("%s: plan %+v", q, plan)
		}
	}
}

func TestDPRefuses(t *testing.T) {
	v := newValidator(t)
	sc := dpScope("", "")
	opt := DPOptions{Epsilon: 1, Delta: 1e-6}
	for _, tc := range dpRefuseCases {
		o := opt
		if strings.Contains(tc.want, "delta") {
			o.Delta = 0
		}
		_, err := v.ValidateDP(context.Background(), tc.sql, sc, o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n  got %v\n  want an error containing %q", tc.sql, err, tc.want)
		}
	}
	for _, o := range []DPOptions{{}, {Epsilon: -1}, {Epsilon: 1, MaxGroups: 5000}, {Epsilon: 1, Bounds: map[string][2]float64{"age": {5, 1}}}, {Epsilon: 1, Delta: 0.5}} {
		if _, err := v.ValidateDP(context.Background(), "SELECT COUNT(*) FROM residents", sc, o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

// unitRow is one row of the random dataset of the reference test.
type unitRow struct {
	unit  int64
	group string
	value float64
}

func writeRows(t *testing.T, rows []unitRow) string {
	t.Helper()
	dir := t.TempDir()
	csv := filepath.Join(dir, "x.csv")
	var b strings.Builder
	b.WriteString("resident_id,hospital,cost\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "%d,%s,%g\n", r.unit, r.group, r.value)
	}
	if err := os.WriteFile(csv, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	pq := filepath.Join(dir, "visits.parquet")
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf(`COPY (SELECT resident_id::BIGINT AS resident_id, cost::DOUBLE AS cost, hospital::VARCHAR AS hospital FROM read_csv('%s', header=true, columns={'resident_id': 'BIGINT', 'hospital': 'VARCHAR', 'cost': 'DOUBLE'})) TO '%s' (FORMAT parquet)`, csv, pq)); err != nil {
		t.Fatal(err)
	}
	return pq
}

type partial struct {
	units, n int64
	s        float64
}

// runDP runs a dp plan's bounded (or direct) SQL unsandboxed and returns the partials by
// group, for the first aggregate: count (n) or sum (s).
func runDP(t *testing.T, plan *Plan, sc Scope, direct bool, secret int64) map[string]partial {
	t.Helper()
	sql := plan.SQL
	if direct {
		sql = plan.DP.DirectSQL
	}
	var tables []Table
	for _, tb := range sc.Tables {
		if len(tb.Files) > 0 && tb.Files[0] != "" {
			tables = append(tables, tb)
		}
	}
	var buf bytes.Buffer
	job := &Job{SQL: sql, Tables: tables, Threads: 2, MemoryLimitMB: 512, MaxResultBytes: 64 << 20, Secret: secret}
	if err := Run(context.Background(), job, &buf); err != nil {
		t.Fatalf("run: %v\n%s", err, sql)
	}
	rec, err := ReadResult(&buf, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	out := map[string]partial{}
	col := func(name string) arrow.Array { return rec.Column(rec.Schema().FieldIndices(name)[0]) }
	for r := 0; r < int(rec.NumRows()); r++ {
		key := ""
		if len(plan.DP.Keys) > 0 {
			key = col("__veil_k0").(*array.String).Value(r)
		}
		p := partial{units: col(DPUnitsColumn).(*array.Int64).Value(r)}
		switch plan.DP.Aggs[0].Kind {
		case AggCount:
			p.n = col("__veil_a0_n").(*array.Int64).Value(r)
		case AggSum:
			p.s = col("__veil_a0_s").(*array.Float64).Value(r)
		}
		out[key] = p
	}
	return out
}

// reference computes the bounded partials in Go, slowly and plainly: per unit and group the
// rows, at most maxRows of them at the unit's average clamped value. With chosen nil every
// group of a unit is kept (the test gives maxGroups above any unit's number of groups);
// otherwise only the unit's chosen group.
func reference(rows []unitRow, maxRows int64, lo, hi float64, chosen map[int64]string) map[string]partial {
	type ug struct {
		u int64
		g string
	}
	n := map[ug]int64{}
	s := map[ug]float64{}
	for _, r := range rows {
		if chosen != nil && chosen[r.unit] != r.group {
			continue
		}
		k := ug{r.unit, r.group}
		n[k]++
		s[k] += math.Min(math.Max(r.value, lo), hi)
	}
	out := map[string]partial{}
	for k, c := range n {
		p := out[k.g]
		p.units++
		p.n += min(c, maxRows)
		p.s += s[k] / float64(c) * float64(min(c, maxRows))
		out[k.g] = p
	}
	return out
}

func randomRows(rng *rand.Rand, units int) []unitRow {
	var rows []unitRow
	for u := range units {
		groups := 1 + rng.IntN(4)
		for range groups {
			g := fmt.Sprintf("h%d", rng.IntN(6))
			for range 1 + rng.IntN(8) {
				rows = append(rows, unitRow{unit: int64(u), group: g, value: rng.Float64()*300 - 50})
			}
		}
	}
	return rows
}

// TestDPBoundingMatchesReference checks the contribution bounding in SQL against the Go
// reference on random data, for counts and clamped sums, and the group bound separately.
func TestDPBoundingMatchesReference(t *testing.T) {
	v := newValidator(t)
	rng := rand.New(rand.NewPCG(7, 11))
	rows := randomRows(rng, 400)
	pq := writeRows(t, rows)
	sc := dpScope("", pq)
	ctx := context.Background()
	// With max_groups 1 the plan chooses each unit's group before aggregating; the reference
	// takes the same choice (the smallest hash of unit, key and secret) from DuckDB and
	// bounds the rest in Go.
	const secret = 99
	chosen := map[int64]string{}
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	cr, err := db.Query(fmt.Sprintf("SELECT resident_id, arg_min(hospital, hash(resident_id, hospital, %d::BIGINT)) FROM read_parquet('%s') GROUP BY resident_id", secret, pq))
	if err != nil {
		t.Fatal(err)
	}
	for cr.Next() {
		var u int64
		var g string
		if err := cr.Scan(&u, &g); err != nil {
			t.Fatal(err)
		}
		chosen[u] = g
	}
	cr.Close()
	for _, maxGroups := range []int64{1, 10} {
		for _, maxRows := range []int64{1, 3, 100} {
			for _, q := range []string{"SELECT hospital, COUNT(*) FROM visits GROUP BY hospital", "SELECT hospital, SUM(cost) FROM visits GROUP BY hospital"} {
				plan, err := v.ValidateDP(ctx, q, sc, DPOptions{Epsilon: 1, Delta: 1e-6, MaxGroups: maxGroups, MaxRows: maxRows, Bounds: map[string][2]float64{"cost": {0, 200}}})
				if err != nil {
					t.Fatal(err)
				}
				got := runDP(t, plan, sc, false, secret)
				want := reference(rows, maxRows, 0, 200, nil)
				if maxGroups == 1 {
					want = reference(rows, maxRows, 0, 200, chosen)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: %d groups, reference %d", q, len(got), len(want))
				}
				for g, w := range want {
					p := got[g]
					if p.units != w.units || (plan.DP.Aggs[0].Kind == AggCount && p.n != w.n) || math.Abs(p.s-w.s) > 1e-6*math.Max(1, math.Abs(w.s)) && plan.DP.Aggs[0].Kind == AggSum {
						t.Errorf("%s (max_groups %d, max_rows %d) group %s: got %+v, reference %+v", q, maxGroups, maxRows, g, p, w)
					}
				}
			}
		}
	}
	// max_groups: each unit is counted in at most G groups, and the choice depends on the
	// job's secret.
	groupsOf := map[int64]map[string]bool{}
	for _, r := range rows {
		if groupsOf[r.unit] == nil {
			groupsOf[r.unit] = map[string]bool{}
		}
		groupsOf[r.unit][r.group] = true
	}
	for _, G := range []int64{1, 2} {
		var want int64
		for _, gs := range groupsOf {
			want += min(int64(len(gs)), G)
		}
		plan, err := v.ValidateDP(ctx, "SELECT hospital, COUNT(DISTINCT resident_id) FROM visits GROUP BY hospital", sc, DPOptions{Epsilon: 1, Delta: 1e-6, MaxGroups: G})
		if err != nil {
			t.Fatal(err)
		}
		a, b := runDP(t, plan, sc, false, 1), runDP(t, plan, sc, false, 2)
		var sumA, sumB int64
		differ := false
		for g, p := range a {
			sumA += p.units
			sumB += b[g].units
			differ = differ || p.units != b[g].units
		}
		if sumA != want || sumB != want {
			t.Errorf("max_groups %d: units summed over groups %d and %d, want %d", G, sumA, sumB, want)
		}
		if !differ {
			t.Errorf("max_groups %d: two secrets chose the same groups for every unit", G)
		}
	}
}

// TestDPOnePersonBounded: a person who owns 500 rows moves each count by at most max_rows,
// in at most max_groups groups.
func TestDPOnePersonBounded(t *testing.T) {
	v := newValidator(t)
	rows := randomRows(rand.New(rand.NewPCG(1, 2)), 200)
	var heavy []unitRow
	for i := range 500 {
		heavy = append(heavy, unitRow{unit: 999999, group: fmt.Sprintf("h%d", i%6), value: 1e9})
	}
	ctx := context.Background()
	for _, opt := range []DPOptions{{MaxGroups: 1, MaxRows: 1}, {MaxGroups: 2, MaxRows: 5}} {
		opt.Epsilon, opt.Delta = 1, 1e-6
		opt.Bounds = map[string][2]float64{"cost": {0, 200}}
		for _, q := range []string{"SELECT hospital, COUNT(*) FROM visits GROUP BY hospital", "SELECT hospital, SUM(cost) FROM visits GROUP BY hospital"} {
			without := dpScope("", writeRows(t, rows))
			with := dpScope("", writeRows(t, append(append([]unitRow{}, rows...), heavy...)))
			plan, err := v.ValidateDP(ctx, q, with, opt)
			if err != nil {
				t.Fatal(err)
			}
			a, b := runDP(t, plan, without, false, 5), runDP(t, plan, with, false, 5)
			changed := 0
			for g := range b {
				dn, ds := b[g].n-a[g].n, b[g].s-a[g].s
				if dn != 0 || math.Abs(ds) > 1e-6 {
					changed++
				}
				if dn > opt.MaxRows || ds > float64(opt.MaxRows)*200+1e-6 || b[g].units-a[g].units > 1 {
					t.Errorf("%s %+v: the heavy person moved group %s by n=%d s=%g", q, opt, g, dn, ds)
				}
			}
			if changed > int(opt.MaxGroups) {
				t.Errorf("%s: the heavy person changed %d groups, max_groups is %d", q, changed, opt.MaxGroups)
			}
		}
	}
}

// TestDPDirectEqualsBounded: where every person has one row, the direct plan computes what
// the bounded plan does.
func TestDPDirectEqualsBounded(t *testing.T) {
	res, vis := writeParquet(t)
	v := newValidator(t)
	sc := dpScope(res, vis)
	for _, q := range []string{
		"SELECT district, COUNT(*) FROM residents GROUP BY district",
		"SELECT district, SUM(age) FROM residents WHERE income > 5000 GROUP BY district",
	} {
		plan, err := v.ValidateDP(context.Background(), q, sc, DPOptions{Epsilon: 1})
		if err != nil {
			t.Fatal(err)
		}
		if plan.DP.DirectSQL == "" {
			t.Fatal("single-dataset plan without a direct variant")
		}
		a, b := runDP(t, plan, sc, false, 3), runDP(t, plan, sc, true, 3)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("%s: bounded %v, direct %v", q, a, b)
		}
	}
}

// TestUnitStats: the measured maximum of rows per unit ignores rows without a unit, and
// those rows are counted, so that the direct plan (which does not look for them) is chosen
// only for data that has none.
func TestUnitStats(t *testing.T) {
	dir := t.TempDir()
	pq := filepath.Join(dir, "u.parquet")
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(fmt.Sprintf(`COPY (SELECT * FROM (VALUES (1, 'a'), (2, 'a'), (2, 'b'), (NULL, 'a'), (NULL, 'b'), (NULL, 'b')) t(resident_id, hospital)) TO '%s' (FORMAT parquet)`, pq)); err != nil {
		t.Fatal(err)
	}
	most, missing, err := UnitStats(context.Background(), []string{pq}, "resident_id")
	if err != nil {
		t.Fatal(err)
	}
	if most != 2 || missing != 3 {
		t.Errorf("UnitStats = %d rows per unit at most, %d rows without a unit; want 2 and 3", most, missing)
	}
	one := filepath.Join(dir, "one.parquet")
	if _, err := db.Exec(fmt.Sprintf(`COPY (SELECT * FROM (VALUES (1, 'a'), (2, 'a'), (3, 'b')) t(resident_id, hospital)) TO '%s' (FORMAT parquet)`, one)); err != nil {
		t.Fatal(err)
	}
	if most, missing, err = UnitStats(context.Background(), []string{one}, "resident_id"); err != nil || most != 1 || missing != 0 {
		t.Errorf("UnitStats on one row per unit = %d, %d, %v; want 1, 0", most, missing, err)
	}
}

// TestCountUnitNamed: COUNT(unit) without DISTINCT is SQL's count of rows with a unit: in
// threshold mode it runs and is named count_<unit> (COUNT(DISTINCT unit), persons, is
// count_units); dp mode refuses it rather than count persons under it (dpRefuseCases).
func TestCountUnitNamed(t *testing.T) {
	v := newValidator(t)
	plan, err := v.Validate(context.Background(), "SELECT hospital, COUNT(resident_id), COUNT(DISTINCT resident_id), COUNT(*) FROM visits GROUP BY hospital", scope("", ""))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Names, ","); got != "hospital,count_resident_id,count_units,count" {
		t.Errorf("names %q", got)
	}
}

// With max_groups 1 the plan finds a unit's group by the smallest hash of unit, key and
// secret and joins its rows on that hash; it counts what the choice by arg_min of the key
// (the plan before) counts: the same units and rows per group, for several secrets, on
// units of many rows in many groups, NULL group keys, rows without a unit, and a cap
// (max_rows) below and above a unit's rows in one group.
func TestDPChoiceByHashMatchesArgMin(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	var rows []unitRow
	for u := range 300 {
		groups, per := 1+u%5, 1+u%7
		if u%50 == 0 {
			groups, per = 30, 2 // a unit of 60 rows in 30 groups
		}
		for g := range groups {
			name := fmt.Sprintf("h%d", (u+g*7)%40)
			if (u+g)%11 == 0 {
				name = "" // NULL: the CSV's empty field
			}
			for range per {
				rows = append(rows, unitRow{unit: int64(u), group: name, value: float64(u % 13)})
			}
		}
	}
	pq := writeRows(t, rows)
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Rows without a unit are no one's.
	withNull := filepath.Join(t.TempDir(), "visits.parquet")
	if _, err := db.Exec(fmt.Sprintf("COPY (SELECT * FROM read_parquet('%s') UNION ALL SELECT NULL, 'h1', 5 FROM range(40)) TO '%s' (FORMAT parquet)", pq, withNull)); err != nil {
		t.Fatal(err)
	}
	sc := dpScope("", withNull)
	for _, maxRows := range []int64{1, 3, 100} {
		plan, err := v.ValidateDP(ctx, "SELECT hospital, COUNT(*) FROM visits GROUP BY hospital", sc, DPOptions{Epsilon: 1, Delta: 1e-6, MaxGroups: 1, MaxRows: maxRows})
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []int64{1, 99, -7} {
			got := runDP(t, plan, sc, false, secret)
			ref := fmt.Sprintf(`WITH r AS (SELECT resident_id AS u, hospital AS k FROM read_parquet('%[1]s') WHERE resident_id IS NOT NULL)
				SELECT CAST(k AS VARCHAR), count(*), sum(least(n, %[2]d)) FROM (
					SELECT e.u, e.k, count(*) AS n FROM r AS e SEMI JOIN (
						SELECT u AS cu, arg_min({'k': k}, hash(u, k, %[3]d::BIGINT)) AS ck FROM r GROUP BY u) AS x
					ON e.u = x.cu AND e.k IS NOT DISTINCT FROM x.ck.k GROUP BY e.u, e.k)
				GROUP BY k`, withNull, maxRows, secret)
			rr, err := db.Query(ref)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]partial{}
			for rr.Next() {
				var k sql.NullString
				var p partial
				if err := rr.Scan(&k, &p.units, &p.n); err != nil {
					t.Fatal(err)
				}
				want[k.String] = p
			}
			rr.Close()
			if !reflect.DeepEqual(got, want) || len(want) < 30 {
				t.Errorf("max_rows %d, secret %d: got %v, the choice by arg_min %v", maxRows, secret, got, want)
			}
		}
	}
}

// dumpResult runs sql as a dp job's bounded plan and returns its result, one sorted line per
// group with every column (floats to 9 significant digits: the plans add in different orders).
func dumpResult(t *testing.T, sql string, sc Scope, secret int64) []string {
	t.Helper()
	var buf bytes.Buffer
	job := &Job{SQL: sql, Tables: sc.Tables[1:], Threads: 2, MemoryLimitMB: 512, MaxResultBytes: 64 << 20, Secret: secret}
	if err := Run(context.Background(), job, &buf); err != nil {
		t.Fatalf("run: %v\n%s", err, sql)
	}
	rec, err := ReadResult(&buf, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	var lines []string
	for r := 0; r < int(rec.NumRows()); r++ {
		var b strings.Builder
		for c := 0; c < int(rec.NumCols()); c++ {
			col := rec.Column(c)
			switch {
			case col.IsNull(r):
				b.WriteString("NULL")
			case col.DataType().ID() == arrow.FLOAT64:
				fmt.Fprintf(&b, "%.9g", col.(*array.Float64).Value(r))
			default:
				b.WriteString(col.ValueStr(r))
			}
			b.WriteString("|")
		}
		lines = append(lines, b.String())
	}
	slices.Sort(lines)
	return lines
}

// TestDPChoiceJoinMatchesSemiJoin: the max_groups 1 plan joins the rows with their unit's
// choice on the unit alone and compares the hashes after the join; it bounds every unit's
// contribution as the plan before did, which semi-joined on unit and hash. Both run on
// adversarial data (a unit of 500 rows in 60 groups, one of 300 rows in one group, NULL
// keys, rows without a unit), for counts, sums, averages, medians and counts of units, one
// and two keys, a cap below and above the units' rows, several secrets, and with a coarse
// hash that makes most of a unit's keys tie (every key, with one bucket): every column of
// every group must be the same, and each unit must still count in one group only.
func TestDPChoiceJoinMatchesSemiJoin(t *testing.T) {
	ctx := context.Background()
	rows := randomRows(rand.New(rand.NewPCG(3, 5)), 200)
	for i := range 500 {
		rows = append(rows, unitRow{unit: 5000, group: fmt.Sprintf("m%d", i%60), value: float64(i % 250)})
	}
	for i := range 300 {
		rows = append(rows, unitRow{unit: 5001, group: "h1", value: float64(i)})
	}
	for u := range 40 {
		rows = append(rows, unitRow{unit: int64(6000 + u), group: "", value: 7}, unitRow{unit: int64(6000 + u), group: fmt.Sprintf("h%d", u%3), value: 9})
	}
	units := map[int64]bool{}
	for _, r := range rows {
		units[r.unit] = true
	}
	pq := writeRows(t, rows)
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	withNull := filepath.Join(t.TempDir(), "visits.parquet")
	if _, err := db.Exec(fmt.Sprintf("COPY (SELECT * FROM read_parquet('%s') UNION ALL SELECT NULL, 50, 'h2' FROM range(40)) TO '%s' (FORMAT parquet)", pq, withNull)); err != nil {
		t.Fatal(err)
	}
	sc := dpScope("", withNull)
	queries := []string{
		"SELECT hospital, COUNT(*) FROM visits GROUP BY hospital",
		"SELECT hospital, SUM(cost), AVG(cost), MEDIAN(cost), COUNT(DISTINCT resident_id) FROM visits GROUP BY hospital",
		"SELECT hospital, cost, COUNT(*) FROM visits GROUP BY hospital, cost",
	}
	hashes := map[string]func(string) string{
		"hash":       choiceHash,
		"3 buckets":  func(a string) string { return "(hash(" + a + ") % 3)" },
		"one bucket": func(a string) string { return "(hash(" + a + ") % 1)" },
	}
	defer func(h func(string) string) { choiceHash = h }(choiceHash)
	for name, h := range hashes {
		choiceHash = h
		v := newValidator(t) // a validator of its own: the plans it keeps were made with the hash before
		eh := h("__veil_e.__veil_u, __veil_e.__veil_k0, getvariable('veil_secret')")
		for _, q := range queries {
			if strings.Contains(q, "cost, COUNT") {
				eh = h("__veil_e.__veil_u, __veil_e.__veil_k0, __veil_e.__veil_k1, getvariable('veil_secret')")
			}
			for _, maxRows := range []int64{1, 3, 100} {
				plan, err := v.ValidateDP(ctx, q, sc, DPOptions{Epsilon: 1, Delta: 1e-6, MaxGroups: 1, MaxRows: maxRows, Bounds: map[string][2]float64{"cost": {0, 200}}})
				if err != nil {
					t.Fatal(err)
				}
				join := ") AS __veil_x ON __veil_e.__veil_u = __veil_x.__veil_cu WHERE (" + eh + " = __veil_x.__veil_ch) IS TRUE"
				if strings.Count(plan.SQL, " AS __veil_e JOIN (") != 1 || strings.Count(plan.SQL, join) != 1 {
					t.Fatalf("%s: not the plan this test knows:\n%s", q, plan.SQL)
				}
				before := strings.Replace(strings.Replace(plan.SQL, " AS __veil_e JOIN (", " AS __veil_e SEMI JOIN (", 1),
					join, ") AS __veil_x ON __veil_e.__veil_u = __veil_x.__veil_cu AND "+eh+" = __veil_x.__veil_ch", 1)
				for _, secret := range []int64{1, -7} {
					got, want := dumpResult(t, plan.SQL, sc, secret), dumpResult(t, before, sc, secret)
					if !slices.Equal(got, want) {
						t.Errorf("%s, %s (max_rows %d, secret %d):\ngot  %v\nwant %v", q, name, maxRows, secret, got, want)
					}
					if !strings.Contains(q, "COUNT(*)") {
						continue
					}
					// One group per unit: the units column adds up to the units with rows.
					var sum int64
					for _, l := range got {
						f := strings.Split(l, "|")
						var n int64
						fmt.Sscan(f[len(f)-3], &n)
						sum += n
					}
					if sum != int64(len(units)) {
						t.Errorf("%s, %s (max_rows %d, secret %d): %d units counted, %d units have rows", q, name, maxRows, secret, sum, len(units))
					}
				}
			}
		}
	}
}
