package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// refused asserts that err is a refusal (safe to show the vendor) whose message contains
// every one of want.
func refused(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	var r *Refusal
	if !errors.Is(err, ErrRefused) || !errors.As(err, &r) {
		t.Errorf("%s: err = %v, want a refusal", what, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: refusal %q does not name %q", what, err, w)
		}
	}
}

// unitQueries name the privacy unit or an identifier in disguise; all are refused.
var unitQueries = []string{
	// An output alias spelled like the unit in another case: the binder takes the column.
	"SELECT district AS RESIDENT_ID, COUNT(*) FROM residents WHERE RESIDENT_ID = 1001 GROUP BY district",
	"SELECT district AS Resident_Id, COUNT(*) FROM residents WHERE resident_ID < 1010 GROUP BY district",
	"SELECT age AS RESIDENT_ID, COUNT(*) FROM residents GROUP BY RESIDENT_ID, age",
	"SELECT age AS RESIDENT_ID, COUNT(*) FROM residents GROUP BY age HAVING MAX(RESIDENT_ID) > 5",
	"SELECT district AS RESIDENT_ID, COUNT(*) FROM residents GROUP BY 1 HAVING MIN(RESIDENT_ID) = 1001",
	"SELECT district AS RESIDENT_ID, COUNT(*) FROM residents GROUP BY district ORDER BY MIN(RESIDENT_ID)",
	"SELECT district AS RESIDENT_ID, COUNT(*) FILTER (WHERE RESIDENT_ID = 1001) FROM residents GROUP BY district",
	"SELECT district AS NAME, COUNT(*) FROM residents WHERE NAME LIKE 'P1%' GROUP BY district",
	// Case and quoting.
	`SELECT district, COUNT(*) FROM residents WHERE "Resident_Id" = 1001 GROUP BY district`,
	`SELECT "RESIDENT_ID", COUNT(*) FROM residents GROUP BY ALL`,
	"SELECT district, COUNT(*) FROM residents WHERE RESIDENTS.RESIDENT_ID > 5 GROUP BY district",
	"SELECT district, COUNT(*) FROM residents R WHERE r.Resident_ID > 5 GROUP BY district",
	"SELECT district, COUNT(*) FROM residents WHERE Name = 'P7' GROUP BY district",
	// USING merges the units into one column that is still the unit.
	"SELECT district AS RESIDENT_ID, COUNT(*) FROM residents JOIN visits USING (resident_id) WHERE RESIDENT_ID < 1010 GROUP BY district",
	"SELECT Resident_Id, COUNT(*) FROM residents FULL JOIN visits USING (RESIDENT_ID) GROUP BY 1",
	// The table as a struct packs every column, the unit included.
	"SELECT district AS r, COUNT(*) FROM residents r GROUP BY district HAVING MAX(r) IS NOT NULL",
	"SELECT district, COUNT(DISTINCT r) FROM residents r GROUP BY district",
	// Star expressions.
	"SELECT COLUMNS('resi.*'), COUNT(*) FROM residents GROUP BY ALL",
	"SELECT * EXCLUDE (name, district, age, income), COUNT(*) FROM residents GROUP BY ALL",
	// Counting is allowed, filtering the count on the unit is not.
	"SELECT district, COUNT(DISTINCT resident_id) FILTER (WHERE RESIDENT_ID > 1050) FROM residents GROUP BY district",
	// The unit joined to something that is not a unit.
	"SELECT COUNT(*) FROM residents r JOIN visits v ON r.RESIDENT_ID = v.cost",
}

// TestUnitByAnotherName: the rules about the privacy unit and direct identifiers hold for
// the column DuckDB's binder resolves a name to, whatever the spelling: any case, quoted,
// shadowed by an output alias, through a table alias, USING, GROUP BY ALL, positions, the
// table as a struct, or star expressions.
func TestUnitByAnotherName(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	dp := dpScope("", "")
	for _, q := range unitQueries {
		_, err := v.Validate(ctx, q, scope())
		refused(t, "threshold: "+q, err)
		_, err = v.ValidateDP(ctx, q, dp, DPOptions{Epsilon: 1, Delta: 1e-6})
		refused(t, "dp: "+q, err)
	}
	// The same spellings are fine where the binder resolves them to an ordinary column, or
	// where the unit is only counted.
	for _, q := range []string{
		"SELECT DISTRICT, COUNT(*) FROM RESIDENTS GROUP BY District",
		`SELECT "District" AS d, COUNT(DISTINCT "RESIDENT_ID") FROM residents R WHERE r.AGE > 30 GROUP BY d`,
		"SELECT r.district, COUNT(DISTINCT V.Resident_Id) FROM residents R JOIN visits V ON R.RESIDENT_ID = v.resident_id GROUP BY 1",
	} {
		if _, err := v.Validate(ctx, q, scope()); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// advScope is one dataset whose values are the edge cases of their types: extremes, zero,
// minus one, NaN, infinities, empty and odd strings, the first and last dates.
func advScope(t testing.TB) Scope {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "adv.parquet")
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q := fmt.Sprintf(`COPY (
		WITH ints(v) AS (VALUES ((-9223372036854775808)::BIGINT), (9223372036854775807::BIGINT), ((-1)::BIGINT), (0::BIGINT), (1::BIGINT), (NULL::BIGINT), (2::BIGINT)),
		g AS (SELECT a.v AS i, b.v AS j, row_number() OVER () - 1 AS r FROM ints a, ints b)
		SELECT r AS person_id, 'P' || r AS name, i, j,
			[-2147483648, 2147483647, -1, 0, 1, NULL, 7][r %% 7 + 1]::INTEGER AS n,
			['1.7976931348623157e308'::DOUBLE, '-1.7976931348623157e308'::DOUBLE, 'nan'::DOUBLE, 'inf'::DOUBLE, '-inf'::DOUBLE, 0::DOUBLE, '-0'::DOUBLE, '5e-324'::DOUBLE, NULL, 2.5][r %% 10 + 1] AS x,
			['9999999999999999.99'::DECIMAL(18,2), '-9999999999999999.99'::DECIMAL(18,2), 0, -1, NULL, 0.01][r %% 6 + 1]::DECIMAL(18,2) AS m,
			['', 'x', '123', ' 1', '%%', '\', '_', 'abc', NULL, '2020-01-01', 'nan', 'inf', '-9223372036854775809', repeat('long', 2500), '%%Y', 'year', 'Ω'][r %% 17 + 1] AS s,
			['5877642-06-25'::DATE, '5877641-06-25 (BC)'::DATE, 'infinity'::DATE, '-infinity'::DATE, '2020-02-29'::DATE, NULL, '1970-01-01'::DATE][r %% 7 + 1] AS d,
			['294247-01-10 04:00:54.775806'::TIMESTAMP, '290309-12-22 (BC) 00:00:00'::TIMESTAMP, 'infinity'::TIMESTAMP, '-infinity'::TIMESTAMP, '2020-02-29 12:00:00'::TIMESTAMP, NULL][r %% 6 + 1] AS ts,
			[true, false, NULL][r %% 3 + 1] AS b
		FROM g) TO '%s' (FORMAT parquet)`, f)
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
	return Scope{Mode: "threshold", Tables: []Table{{Name: "adv", Files: []string{f}, Unit: "person", Columns: []Column{
		{Name: "person_id", Type: "BIGINT", PrivacyUnit: true},
		{Name: "name", Type: "VARCHAR", Identifier: true},
		{Name: "i", Type: "BIGINT"}, {Name: "j", Type: "BIGINT"}, {Name: "n", Type: "INTEGER"},
		{Name: "x", Type: "DOUBLE", Bounds: []float64{0, 10}}, {Name: "m", Type: "DECIMAL(18,2)", Bounds: []float64{0, 10}},
		{Name: "s", Type: "VARCHAR"}, {Name: "d", Type: "DATE"}, {Name: "ts", Type: "TIMESTAMP"}, {Name: "b", Type: "BOOLEAN"},
	}}}}
}

// runEach runs each query on the scope's files and returns each query's error.
func runEach(t *testing.T, sc Scope, queries []string) []error {
	t.Helper()
	r := newRunner(t, sc)
	errs := make([]error, len(queries))
	for i, q := range queries {
		if q != "" {
			errs[i] = r.exec(q)
		}
	}
	return errs
}

// badExprs can fail on a value of the adversarial data; want is a word of the refusal.
var badExprs = []struct{ expr, want string }{
	{"CAST(s AS INTEGER)", "TRY_CAST"},
	{"CAST(s AS DATE)", "TRY_CAST"},
	{"CAST(x AS BIGINT)", "TRY_CAST"},
	{"CAST(i AS INTEGER)", "TRY_CAST"},
	{"CAST(d AS TIMESTAMP)", "TRY_CAST"},
	{"i + 1", "can fail"},
	{"m * 2", "can fail"},
	{"m + m", "can fail"},
	{"left(s, i)", "can fail"},
	{"substring(s, i, 2)", "can fail"},
	{"i - j", "can fail"},
	{"i * 2", "can fail"},
	{"-i", "can fail"},
	{"abs(i)", "can fail"},
	{"i // j", "can fail"},
	{"i % j", "can fail"},
	{"n + 1", "can fail"},
	{"ln(x)", "can fail"},
	{"sqrt(x)", "can fail"},
	{"log10(i)", "can fail"},
	{"make_date(2020, n, 1)", "can fail"},
	{"date_trunc('month', d)", "can fail"},
	{"date_diff('microseconds', ts, ts + INTERVAL 1 DAY)", ""},
	{"lpad(s, n, 'x')", "lpad"},
	{"lpad(s, 5, '')", "lpad"},
	{"rpad(s, 5, s)", "rpad"},
	{"strftime(d, s)", "strftime"},
	{"date_part(s, d)", "date_part"},
	{"s LIKE 'a' ESCAPE s", "ESCAPE"},
	{"regexp_matches(s, s)", "regexp_matches"},
	{"i = 'abc'", "abc"},
	{"s = 5", "can fail"},
	{"d > '2020-13-45'", "2020-13-45"},
}

// goodExprs are total (or made total by TRY) and accepted.
var goodExprs = []string{
	"TRY_CAST(s AS INTEGER)", "TRY(CAST(s AS DATE))", "TRY(i + 1)", "CAST(i AS DOUBLE) * 2", "x * 2", "x / 0", "i / j",
	"i // 10", "i % 7", "TRY(i // j)", "TRY(ln(x))", "TRY(sqrt(i))", "TRY(make_date(2020, n, 1))", "CAST(i AS VARCHAR)",
	"CAST(n AS BIGINT)", "CAST(m AS DOUBLE)", "CAST(m AS DOUBLE) * 2", "i * 1.5", "round(x, 2)", "round(m, 1)", "floor(m)", "abs(x)", "-x", "abs(m)",
	"lpad(s, 5, 'x')", "rpad(s, 1000, '-')", "left(s, 3)", "substring(s, 2, 3)", "TRY(substring(s, i, j))", "replace(s, 'ab', 'c')", "upper(s)",
	"length(s)", "s || 'x'", "concat(s, i, x)", "s LIKE '%a%'", "s ILIKE s", "s LIKE 'a!%' ESCAPE '!'", "regexp_matches(s, '^[0-9]+$')",
	"year(d)", "month(ts)", "dayofweek(d)", "date_part('year', ts)", "strftime(ts, '%Y-%m')", "TRY(date_trunc('month', d))",
	"coalesce(i, 0)", "nullif(s, '')", "greatest(i, j)", "CASE WHEN i > 0 THEN 'p' ELSE 'n' END", "i IN (1, 2, 3)",
	"x BETWEEN 0 AND 1", "d > DATE '2020-01-01'", "i > '12'", "isnan(x)", "NOT b",
}

// TestNoDataDependentFailure: in every mode, a query is accepted only if nothing in it can
// fail because of a value (a cast, an overflow, a function given a bad argument): a failure
// that only one person's row causes would tell the vendor a fact about that person through
// the job's status, whatever k or epsilon. TRY_CAST and TRY(...) make such expressions total.
func TestNoDataDependentFailure(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	sc := advScope(t)
	// Each of these fails on some row of the adversarial data when run unchecked, and is
	// refused, in threshold and in dp mode.
	for _, tc := range badExprs {
		for _, q := range []string{
			fmt.Sprintf("SELECT COUNT(*) FROM adv WHERE (%s) IS NOT NULL", tc.expr),
			fmt.Sprintf("SELECT %s AS v, COUNT(*) FROM adv GROUP BY 1", tc.expr),
		} {
			_, err := v.Validate(ctx, q, sc)
			refused(t, q, err, tc.want)
		}
		dp := sc
		dp.Mode = "dp"
		q := fmt.Sprintf("SELECT COUNT(*) FROM adv WHERE (%s) IS NOT NULL", tc.expr)
		_, err := v.ValidateDP(ctx, q, dp, DPOptions{Epsilon: 1})
		refused(t, "dp: "+q, err, tc.want)
	}
	// The refusals are needed: run unchecked, each of these fails on the data.
	var raw []string
	for _, tc := range badExprs {
		if !strings.Contains(tc.expr, "pad(") { // a length from the data allocates gigabytes
			raw = append(raw, fmt.Sprintf("SELECT %s AS v, COUNT(*) FROM adv GROUP BY 1", tc.expr))
		}
	}
	failing := 0
	for _, err := range runEach(t, sc, raw) {
		if err != nil {
			failing++
		}
	}
	if failing != len(raw) {
		t.Errorf("only %d of %d refused expressions fail on the adversarial data: the data does not exercise them", failing, len(raw))
	}
	for _, q := range []string{
		"SELECT COUNT(*), SUM(i), SUM(m), AVG(i), MIN(s), MAX(d), MEDIAN(x), STDDEV(i), VARIANCE(m), CORR(i, j), BOOL_OR(b) FROM adv",
		"SELECT COUNT(*), SUM(i) FILTER (WHERE x > 1), quantile_disc(ts, 0.5), quantile_cont(i, 0.9) FROM adv",
		"SELECT STDDEV(x) FROM adv",
		"SELECT SUM(CAST(m AS DECIMAL(38,2))) FROM adv",
	} {
		plan, err := v.Validate(ctx, q, sc)
		if err != nil {
			if !strings.Contains(q, "STDDEV(x)") && !strings.Contains(q, "DECIMAL(38") {
				t.Errorf("%s: %v", q, err)
			}
			continue
		}
		if strings.Contains(q, "STDDEV(x)") || strings.Contains(q, "DECIMAL(38") {
			t.Errorf("%s: accepted; it can fail on large values", q)
		}
		for _, err := range runEach(t, sc, []string{plan.SQL, plan.FastSQL}) {
			if err != nil {
				t.Errorf("%s: accepted but fails on the data: %v", q, err)
			}
		}
	}
	// Total expressions and the TRY forms are accepted and run on every row.
	var queries, sqls []string
	for _, e := range goodExprs {
		for _, q := range []string{
			fmt.Sprintf("SELECT COUNT(*) FROM adv WHERE (%s) IS NOT NULL", e),
			fmt.Sprintf("SELECT %s AS v, COUNT(*) FROM adv GROUP BY 1", e),
		} {
			plan, err := v.Validate(ctx, q, sc)
			if err != nil {
				t.Errorf("%s: %v", q, err)
				continue
			}
			queries, sqls = append(queries, q), append(sqls, plan.SQL)
		}
	}
	for i, err := range runEach(t, sc, sqls) {
		if err != nil {
			t.Errorf("%s: accepted but fails on the data: %v", queries[i], err)
		}
	}
}

// peakRSS is the process's peak resident set size in bytes.
func peakRSS(t *testing.T) int64 {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Maxrss * 1024
}

// huge is a 2 GB string if anything evaluates it.
const huge = "lpad('x', 2000000000, 'y')"

// hugeQueries would build gigabyte strings if anything evaluated them; all are refused.
var hugeQueries = []string{
	"SELECT COUNT(*), " + huge + " FROM residents",
	"SELECT COUNT(*) FROM residents WHERE district = " + huge,
	"SELECT COUNT(*) FROM residents WHERE district IN (" + huge + ", 'a')",
	"SELECT COUNT(*) FROM residents WHERE district LIKE " + huge,
	"SELECT district, COUNT(*) FROM residents GROUP BY district HAVING COUNT(*) > length(" + huge + ")",
	"SELECT district, ROUND(AVG(age), length(" + huge + ")) FROM residents GROUP BY district",
	"SELECT district, COUNT(*) FROM residents GROUP BY district ORDER BY " + huge,
	"SELECT district, COUNT(*) FROM residents GROUP BY district, " + huge,
	"SELECT district, COUNT(*) FILTER (WHERE age > length(" + huge + ")) FROM residents GROUP BY district",
	"SELECT district, lpad(district, 2000000000, 'y'), COUNT(*) FROM residents GROUP BY ALL",
	"SELECT district, COUNT(*) FROM residents WHERE rpad(district, 2000000000, 'y') = 'x' GROUP BY district",
	"SELECT district, COUNT(*) FROM residents WHERE replace(district, 'o', " + huge + ") = 'x' GROUP BY district",
	"SELECT COUNT(*), repeat('x', 2000000000) FROM residents",
	"SELECT COUNT(*), length(range(2000000000)) FROM residents",
	"SELECT COUNT(*), length(generate_series(1, 2000000000)) FROM residents",
	"SELECT COUNT(*), list_resize([1], 2000000000) FROM residents",
	"SELECT COUNT(*), 'a' || 'b' FROM residents",
	"SELECT COUNT(*) FROM residents WHERE age > 1 + 1",
}

// TestValidatorNeverEvaluates: the validator never evaluates an expression of the vendor's
// query. Constant expressions that DuckDB's binder or optimizer would fold (and so run in
// the daemon, outside any sandbox) are refused before DuckDB binds them, and arguments that
// size an allocation must be literals below a cap. The proof is the peak memory of this
// process: 2 GB strings are never built.
func TestValidatorNeverEvaluates(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	before := peakRSS(t)
	for _, q := range hugeQueries {
		_, err := v.Validate(ctx, q, scope())
		refused(t, q, err)
		_, err = v.ValidateDP(ctx, q, dpScope("", ""), DPOptions{Epsilon: 1, Delta: 1e-6})
		refused(t, "dp: "+q, err)
	}
	if grew := peakRSS(t) - before; grew > 512<<20 {
		t.Errorf("validation raised the peak memory of the process by %d MB: it evaluated a vendor expression", grew>>20)
	}
	// Literals are still fine, in every position.
	for _, q := range []string{
		"SELECT district, ROUND(AVG(age), 2), COUNT(*) FROM residents WHERE age > -5 AND district <> '' GROUP BY district HAVING COUNT(*) > 3 ORDER BY 1 LIMIT 10",
		"SELECT lpad(district, 10, '.'), COUNT(*) FROM residents GROUP BY 1",
	} {
		if _, err := v.Validate(ctx, q, scope()); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// TestValidatorBounds: the validator's DuckDB has a memory limit, validations beyond the
// configured number wait for a free place and give up with their context, and a cancelled
// request stops its validation with the context's error, not a refusal.
func TestValidatorBounds(t *testing.T) {
	v, err := NewValidatorWithConfig(ValidatorConfig{MaxConcurrent: 2, MemoryLimitMB: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var limit string
	if err := v.db.QueryRow("SELECT current_setting('memory_limit')").Scan(&limit); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(limit, "95") && !strings.HasPrefix(limit, "100") {
		t.Errorf("validator memory_limit = %q, want 100 MB", limit)
	}
	const q = "SELECT district, COUNT(*) FROM residents GROUP BY district"
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Validate(cancelled, q, scope()); !errors.Is(err, context.Canceled) || errors.Is(err, ErrRefused) {
		t.Errorf("cancelled validation: %v, want context.Canceled", err)
	}
	// Both places taken: a validation waits, and gives up when its request does.
	for range 2 {
		v.slots <- struct{}{}
	}
	waiting, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := v.ValidateDP(waiting, q, dpScope("", ""), DPOptions{Epsilon: 1, Delta: 1e-6})
		done <- err
	}()
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("waiting validation: %v, want context.Canceled", err)
	}
	<-v.slots
	<-v.slots
	// Many at once: all succeed, never more than two at a time.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Validate(context.Background(), q, scope()); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 || v.peak.Load() > 2 || v.peak.Load() < 1 {
		t.Errorf("%d of 16 concurrent validations failed; %d ran at once (limit 2)", failed.Load(), v.peak.Load())
	}
}

// probes exercise every function of the allow-lists: accept says whether the validator
// must accept the expression (as written) in threshold mode. Each accepted one must run on
// every row of the adversarial data without error.
var probes = map[string][]struct {
	expr   string
	accept bool
}{
	"+":  {{"x + 1", true}, {"i + 1", false}, {"TRY(i + 1)", true}, {"i * 1.5 + 1", true}},
	"-":  {{"x - 1", true}, {"-x", true}, {"d - d", true}, {"-i", false}, {"d - 1", false}},
	"*":  {{"x * 2", true}, {"n * 2", false}, {"TRY(n * 2)", true}},
	"/":  {{"i / j", true}, {"x / 0", true}, {"m / 3", true}},
	"//": {{"i // 10", true}, {"x // 2", true}, {"i // -1", false}, {"TRY(i // j)", true}},
	"%":  {{"i % 7", true}, {"x % 2", true}, {"i % j", false}},
	"^":  {{"x ^ 2", true}}, "**": {{"x ** 2", true}},
	"pow": {{"pow(x, 2)", true}}, "power": {{"power(i, j)", true}},
	"||":                {{"s || 'x'", true}, {"s || i", true}},
	"concat":            {{"concat(s, i, x, d, ts, b)", true}},
	"~~":                {{"s LIKE '%a%'", true}, {"s LIKE s", true}},
	"!~~":               {{"s NOT LIKE s", true}},
	"~~*":               {{"s ILIKE 'A%'", true}},
	"!~~*":              {{"s NOT ILIKE s", true}},
	"like_escape":       {{"s LIKE 'a!%' ESCAPE '!'", true}, {"s LIKE 'a' ESCAPE s", false}},
	"not_like_escape":   {{"s NOT LIKE 'a!%' ESCAPE '!'", true}},
	"ilike_escape":      {{"s ILIKE 'a!%' ESCAPE '!'", true}},
	"not_ilike_escape":  {{"s NOT ILIKE 'a!%' ESCAPE '!'", true}},
	"regexp_matches":    {{"regexp_matches(s, '^[0-9]+$')", true}, {"regexp_matches(s, s)", false}},
	"regexp_full_match": {{"s SIMILAR TO '[0-9]+'", true}},
	"abs":               {{"abs(x)", true}, {"abs(m)", true}, {"abs(i)", false}},
	"sign":              {{"sign(i)", true}, {"sign(x)", true}, {"sign(m)", true}},
	"round":             {{"round(x, 2)", true}, {"round(m, 1)", true}, {"round(i)", true}, {"round(x, n)", true}},
	"floor":             {{"floor(m)", true}, {"floor(x)", true}, {"floor(i)", true}},
	"ceil":              {{"ceil(m)", true}, {"ceil(x)", true}}, "ceiling": {{"ceiling(m)", true}},
	"trunc": {{"trunc(x)", true}, {"trunc(m)", true}},
	"cbrt":  {{"cbrt(x)", true}, {"cbrt(i)", true}}, "exp": {{"exp(x)", true}, {"exp(i)", true}},
	"isnan": {{"isnan(x)", true}}, "isinf": {{"isinf(x)", true}}, "isfinite": {{"isfinite(x)", true}},
	"sqrt": {{"sqrt(x)", false}, {"TRY(sqrt(x))", true}}, "ln": {{"ln(i)", false}, {"TRY(ln(i))", true}},
	"log": {{"log(x)", false}, {"TRY(log(x))", true}}, "log2": {{"TRY(log2(n))", true}}, "log10": {{"TRY(log10(m))", true}},
	"greatest": {{"greatest(i, j)", true}, {"greatest(s, 'a')", true}, {"greatest(n, i)", true}},
	"least":    {{"least(x, 1)", true}},
	"nullif":   {{"nullif(s, '')", true}}, "ifnull": {{"ifnull(i, 0)", true}},
	"lower": {{"lower(s)", true}}, "upper": {{"upper(s)", true}}, "lcase": {{"lcase(s)", true}}, "ucase": {{"ucase(s)", true}},
	"length": {{"length(s)", true}}, "strlen": {{"strlen(s)", true}},
	"substring": {{"substring(s, 2, 3)", true}, {"substring(s, -2)", true}, {"substring(s, i, 1)", false}},
	"substr":    {{"substr(s, 1, 2)", true}},
	"left":      {{"left(s, 3)", true}, {"left(s, i)", false}, {"TRY(left(s, i))", true}}, "right": {{"right(s, -1)", true}},
	"trim": {{"trim(s)", true}, {"trim(s, 'x')", true}}, "ltrim": {{"ltrim(s)", true}}, "rtrim": {{"rtrim(s, s)", true}},
	"starts_with": {{"starts_with(s, 'a')", true}}, "ends_with": {{"ends_with(s, s)", true}},
	"suffix": {{"suffix(s, 'c')", true}}, "prefix": {{"prefix(s, 'a')", true}}, "contains": {{"contains(s, 'b')", true}},
	"replace": {{"replace(s, 'ab', 'c')", true}, {"replace(s, 'a', 'bb')", false}, {"replace(s, s, '')", false}},
	"lpad":    {{"lpad(s, 5, 'x')", true}, {"lpad(s, 1024, 'xy')", true}, {"lpad(s, 1025, 'x')", false}, {"lpad(s, n, 'x')", false}},
	"rpad":    {{"rpad(s, 0, '-')", true}, {"rpad(s, 3, '')", false}},
	"year":    {{"year(d)", true}, {"year(ts)", true}}, "month": {{"month(d)", true}}, "day": {{"day(ts)", true}},
	"quarter": {{"quarter(d)", true}}, "week": {{"week(d)", true}}, "weekofyear": {{"weekofyear(ts)", true}},
	"dayofweek": {{"dayofweek(d)", true}}, "dayofyear": {{"dayofyear(ts)", true}}, "isodow": {{"isodow(d)", true}},
	"isoyear": {{"isoyear(d)", true}, {"isoyear(ts)", true}}, "hour": {{"hour(ts)", true}}, "minute": {{"minute(ts)", true}},
	"monthname": {{"monthname(d)", true}}, "dayname": {{"dayname(ts)", true}}, "last_day": {{"last_day(d)", true}, {"last_day(ts)", true}},
	"date_part":  {{"date_part('year', d)", true}, {"date_part('doy', ts)", true}, {"date_part('epoch', ts)", false}, {"date_part(s, d)", false}},
	"datepart":   {{"datepart('month', ts)", true}},
	"date_trunc": {{"date_trunc('month', ts)", false}, {"TRY(date_trunc('month', d))", true}}, "datetrunc": {{"TRY(datetrunc('year', ts))", true}},
	"date_diff": {{"date_diff('day', d, d)", false}, {"TRY(date_diff('second', ts, ts))", true}}, "datediff": {{"TRY(datediff('day', d, d))", true}},
	"date_sub": {{"TRY(date_sub('month', d, d))", true}}, "datesub": {{"TRY(datesub('year', ts, ts))", true}},
	"strftime":  {{"strftime(d, '%Y-%m-%d')", true}, {"strftime(ts, '%c')", true}, {"strftime(d, s)", false}},
	"make_date": {{"make_date(2020, n, 1)", false}, {"TRY(make_date(i, n, j))", true}},
}

// aggProbes do the same for the aggregates, over the whole table.
var aggProbes = map[string][]struct {
	expr   string
	accept bool
}{
	"count": {{"COUNT(s)", true}, {"COUNT(DISTINCT person_id)", true}}, "count_star": {{"COUNT(*)", true}},
	"min": {{"MIN(s)", true}, {"MIN(d)", true}}, "max": {{"MAX(x)", true}, {"MAX(ts)", true}},
	"bool_and": {{"BOOL_AND(b)", true}}, "bool_or": {{"BOOL_OR(i > 0)", true}},
	"sum": {{"SUM(i)", true}, {"SUM(x)", true}, {"SUM(m)", true}, {"SUM(n)", true}, {"SUM(CAST(i AS HUGEINT))", false}},
	"avg": {{"AVG(i)", true}, {"AVG(m)", true}, {"AVG(x)", true}}, "mean": {{"MEAN(n)", true}},
	"median":        {{"MEDIAN(i)", true}, {"MEDIAN(x)", true}, {"MEDIAN(m)", true}, {"MEDIAN(d)", false}},
	"quantile_cont": {{"QUANTILE_CONT(i, 0.3)", true}, {"QUANTILE_CONT(x, 0.9)", true}},
	"quantile_disc": {{"QUANTILE_DISC(ts, 0.5)", true}, {"QUANTILE_DISC(s, 0.1)", true}}, "quantile": {{"QUANTILE(d, 0.5)", true}},
	"stddev":      {{"STDDEV(i)", true}, {"STDDEV(x)", false}, {"STDDEV(TRY_CAST(x AS DECIMAL(18,4)))", true}},
	"stddev_samp": {{"STDDEV_SAMP(m)", true}}, "stddev_pop": {{"STDDEV_POP(n)", true}},
	"variance": {{"VARIANCE(i)", true}}, "var_samp": {{"VAR_SAMP(m)", true}}, "var_pop": {{"VAR_POP(x)", false}},
	"corr": {{"CORR(i, j)", true}, {"CORR(x, i)", false}}, "covar_samp": {{"COVAR_SAMP(i, m)", true}}, "covar_pop": {{"COVAR_POP(n, i)", true}},
}

// TestAllowListProbes: every function of the allow-lists has probes, the validator decides
// each probe as expected, and whatever it accepts runs on the adversarial data.
func TestAllowListProbes(t *testing.T) {
	for name := range scalars {
		if len(probes[name]) == 0 {
			t.Errorf("scalar %s has no probe", name)
		}
	}
	for name := range aggregates {
		if len(aggProbes[name]) == 0 {
			t.Errorf("aggregate %s has no probe", name)
		}
	}
	v := newValidator(t)
	ctx := context.Background()
	sc := advScope(t)
	var queries, sqls []string
	try := func(q string, accept bool) {
		plan, err := v.Validate(ctx, q, sc)
		switch {
		case accept && err != nil:
			t.Errorf("%s: %v", q, err)
		case !accept && err == nil:
			t.Errorf("%s: accepted", q)
		case err == nil:
			queries, sqls = append(queries, q), append(sqls, plan.SQL)
		}
	}
	for _, ps := range probes {
		for _, p := range ps {
			try(fmt.Sprintf("SELECT %s AS v, COUNT(*) FROM adv GROUP BY 1", p.expr), p.accept)
		}
	}
	for _, ps := range aggProbes {
		for _, p := range ps {
			try(fmt.Sprintf("SELECT b, %s FROM adv GROUP BY b", p.expr), p.accept)
		}
	}
	for i, err := range runEach(t, sc, sqls) {
		if err != nil {
			t.Errorf("%s: accepted but fails on the data: %v", queries[i], err)
		}
	}
}

// escapeQueries try to leave the allow-list: table functions, files, session state, system
// catalogs, statements that are not SELECT, recursion, lambdas, macros, queries in strings,
// cross joins that pair every row with every row, literals that fail only when a row reaches
// them, and text that is not UTF-8.
var escapeQueries = []string{
	"SELECT COUNT(*) FROM duckdb_settings()",
	"SELECT COUNT(*) FROM duckdb_tables()",
	"SELECT COUNT(*) FROM pragma_table_info('residents')",
	"SELECT COUNT(*) FROM query_table('residents')",
	"SELECT COUNT(*) FROM query('SELECT resident_id FROM residents')",
	"SELECT COUNT(*) FROM glob('/etc/*')",
	"SELECT COUNT(*) FROM read_parquet('/data/*.parquet')",
	"SELECT COUNT(*) FROM information_schema.tables",
	"SELECT COUNT(*) FROM duckdb_settings",
	"SELECT COUNT(*) FROM sqlite_master",
	"SELECT COUNT(*), current_setting('threads') FROM residents",
	"SELECT district, COUNT(*) FROM residents WHERE age = getvariable('veil_secret') GROUP BY district",
	"SUMMARIZE residents",
	"DESCRIBE residents",
	"SHOW TABLES",
	"FROM residents",
	"CREATE MACRO m(x) AS x",
	"WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT COUNT(*) FROM t",
	"SELECT COUNT(*), list_transform([age], x -> x + 1) FROM residents",
	"SELECT district, COUNT(*) FROM residents r WHERE struct_extract(r, 'resident_id') = 1001 GROUP BY district",
	"SELECT district, COUNT(*) FROM residents r WHERE r['resident_id'] = 1001 GROUP BY district",
	"SELECT district, COUNT(*) FROM residents WHERE district = 'a' COLLATE nocase GROUP BY district",
	"SELECT COUNT(*) FROM (VALUES (1)) t(x)",
	"PIVOT residents ON district USING COUNT(*)",
	"SELECT COUNT(*) FROM residents POSITIONAL JOIN visits",
	"SELECT COUNT(*) FROM residents r ASOF JOIN visits v ON r.resident_id >= v.resident_id",
	"SELECT COUNT(*) FROM residents r SEMI JOIN visits v ON r.resident_id = v.resident_id",
	"SELECT COUNT(*) FROM residents, LATERAL (SELECT age) t",
	"SELECT COUNT(*), unnest([age]) FROM residents",
	"SELECT COUNT(*) FROM residents WHERE rowid > 3",
	"SELECT COUNT(*) FROM residents AT (VERSION => 1)",
	// Cross joins: the result's size is the product of the datasets'.
	"SELECT COUNT(*) FROM residents r JOIN visits v ON TRUE",
	"SELECT COUNT(*) FROM residents r JOIN visits v ON 1 = 1",
	"SELECT COUNT(*) FROM residents r JOIN visits v ON r.age = r.income",
	"SELECT COUNT(*) FROM residents r JOIN visits v ON r.district < v.hospital",
	// A literal that cannot be converted fails only when a row reaches it: here, only if
	// someone in district tiny exists.
	"SELECT COUNT(*) FROM residents WHERE district = 'tiny' AND age > 'abc'",
	"SELECT COUNT(*) FROM residents WHERE district = 'tiny' AND age IN ('1', 'x')",
	"SELECT COUNT(*) FROM residents WHERE district = 'tiny' AND age BETWEEN 1 AND '9999999999999999999999'",
	// Text that grows with the query: one person's long value could exhaust the memory.
	"SELECT COUNT(*) FROM residents WHERE district || district || district || district || district = 'x'",
	"SELECT COUNT(*) FROM residents WHERE concat(district, district, concat(district, district, district)) IS NULL",
	"SELECT COUNT(*) FROM residents WHERE concat(district, district, district) || CASE WHEN age > 1 THEN district || district END = 'x'",
	"SELECT MAX(district || district || district) || MIN(district || district) FROM residents",
	// A number beyond a double's range: DuckDB's serializer writes Infinity, which is not JSON.
	"SELECT COUNT(*) FROM residents WHERE age < 1" + strings.Repeat("0", 400),
	// Not UTF-8, or a NUL.
	"SELECT COUNT(*) FROM residents WHERE district = '\xff'",
	"SELECT COUNT(*) FROM residents WHERE district = '\x00'",
}

// TestSQLEscapes: each escape is refused, in threshold and in dp mode, with a refusal (not
// an internal error), and the same holds for a DATE compared with a timestamp (the cast of
// a date beyond the timestamp range fails).
func TestSQLEscapes(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	for _, q := range escapeQueries {
		_, err := v.Validate(ctx, q, scope())
		if strings.Contains(q, "district || district") || strings.Contains(q, "district, district") || strings.Contains(q, "MAX(district ||") {
			refused(t, q, err, "times as long")
		} else {
			refused(t, q, err)
		}
		_, err = v.ValidateDP(ctx, q, dpScope("", ""), DPOptions{Epsilon: 1, Delta: 1e-6})
		refused(t, "dp: "+q, err)
	}
	sc := advScope(t)
	for _, q := range []string{
		"SELECT COUNT(*) FROM adv WHERE d > TIMESTAMP '2020-01-01 00:00:00'",
		"SELECT COUNT(*) FROM adv WHERE d = ts",
	} {
		_, err := v.Validate(ctx, q, sc)
		refused(t, q, err, "can fail")
	}
}

// BenchmarkValidate times the validation of a threshold join and of a dp query, the shapes
// the daemon sees most.
func BenchmarkValidate(b *testing.B) {
	v := newValidator(b)
	ctx := context.Background()
	sc, dp := scope(), dpScope("", "")
	b.Run("threshold", func(b *testing.B) {
		for range b.N {
			if _, err := v.Validate(ctx, "SELECT r.district, COUNT(DISTINCT r.resident_id) AS persons, SUM(v.cost) FROM residents r JOIN visits v ON r.resident_id = v.resident_id WHERE r.age > 30 GROUP BY r.district", sc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("dp", func(b *testing.B) {
		for range b.N {
			if _, err := v.ValidateDP(ctx, "SELECT district, COUNT(*) AS n, AVG(age) AS a FROM residents WHERE income > 1000 GROUP BY district", dp, DPOptions{Epsilon: 1, Delta: 1e-6}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
