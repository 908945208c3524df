package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func scope(files ...string) Scope {
	f := func(i int) []string {
		if i < len(files) {
			return []string{files[i]}
		}
		return nil
	}
	return Scope{Mode: "threshold", Tables: []Table{
		{Name: "residents", Files: f(0), Columns: []Column{
			{Name: "resident_id", Type: "BIGINT", PrivacyUnit: true},
			{Name: "name", Type: "VARCHAR", Identifier: true},
			{Name: "district", Type: "VARCHAR"},
			{Name: "age", Type: "BIGINT"},
			{Name: "income", Type: "BIGINT"},
		}},
		{Name: "visits", Files: f(1), Columns: []Column{
			{Name: "resident_id", Type: "BIGINT", PrivacyUnit: true},
			{Name: "cost", Type: "DOUBLE"},
			{Name: "hospital", Type: "VARCHAR"},
		}},
	}}
}

func newValidator(t testing.TB) *Validator {
	t.Helper()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// acceptCases are threshold queries the validator accepts (they also seed FuzzValidate).
var acceptCases = []struct {
	sql    string
	units  int
	counts []int
}{
	{"SELECT district, COUNT(*) AS n, SUM(income) FROM residents GROUP BY district", 1, []int{1}},
	{"SELECT COUNT(*) FROM residents", 1, []int{0}},
	{"SELECT district, AVG(age) FROM residents WHERE age BETWEEN 20 AND 60 AND district IN ('a', 'b') GROUP BY 1 ORDER BY 1 LIMIT 5", 1, nil},
	{"SELECT r.district, COUNT(DISTINCT r.resident_id) AS persons, SUM(v.cost) FROM residents r JOIN visits v ON r.resident_id = v.resident_id GROUP BY r.district", 2, []int{1}},
	{"SELECT district, COUNT(*) FILTER (WHERE age > 30), CASE WHEN SUM(income) > 0 THEN 1 ELSE 0 END FROM residents GROUP BY district HAVING COUNT(*) > 1", 1, []int{1}},
	{"SELECT district AS d, ROUND(AVG(CAST(income AS DOUBLE)), 2) FROM residents GROUP BY d", 1, nil},
	{"SELECT hospital, COUNT(*) FROM visits JOIN residents USING (resident_id) WHERE district LIKE 'n%' GROUP BY ALL", 2, []int{1}},
}

func TestValidateAccepts(t *testing.T) {
	v := newValidator(t)
	for _, tc := range acceptCases {
		p, err := v.Validate(context.Background(), tc.sql, scope())
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		if len(p.Units) != tc.units || fmt.Sprint(p.Counts) != fmt.Sprint(tc.counts) || !strings.Contains(p.SQL, UnitsPrefix) {
			t.Errorf("%s: plan %+v", tc.sql, p)
		}
	}
}

// refuseCases are threshold queries the validator refuses, with a word the refusal names.
var refuseCases = []struct{ sql, want string }{
	{"", "empty"},
	{"SELECT district, SUM(religion) FROM residents GROUP BY district", "religion"},
	{"SELECT COUNT(*) FROM read_csv('/etc/passwd')", "read_csv"},
	{"SELECT COUNT(*) FROM '/data/residents/x.parquet'", "files and URLs"},
	{"SELECT COUNT(*) FROM enterprises", "enterprises"},
	{"SELECT COUNT(*) FROM main.residents", "qualified"},
	{"SELECT district, COUNT(*) FROM residents GROUP BY district; SELECT 1", "exactly one"},
	{"SELECT COUNT(*) FROM residents; COPY residents TO '/tmp/x.csv'", "COPY"},
	{"COPY residents TO '/tmp/x.csv'", "COPY"},
	{"ATTACH '/tmp/x.db'", "ATTACH"},
	{"INSTALL httpfs", "INSTALL"},
	{"LOAD httpfs", "LOAD"},
	{"SET threads=1", "SET"},
	{"PRAGMA version", "PRAGMA"},
	{"CREATE TABLE x AS SELECT 1", "CREATE"},
	{"EXPORT DATABASE '/tmp/x'", "EXPORT"},
	{"SELECT district, COUNT(*) FROM residents WHERE resident_id = 1001 GROUP BY district", "resident_id"},
	{"SELECT resident_id, COUNT(*) FROM residents GROUP BY resident_id", "privacy unit"},
	{"SELECT name, COUNT(*) FROM residents GROUP BY name", "direct identifier"},
	{"SELECT district, MIN(resident_id) FROM residents GROUP BY district", "privacy unit"},
	{"SELECT age FROM residents", "must aggregate"},
	{"SELECT * FROM residents", "SELECT *"},
	{"SELECT COUNT(*), random() FROM residents", "random"},
	{"SELECT COUNT(*) FROM residents WHERE age > setseed(0.1)", "setseed"},
	{"SELECT COUNT(*), error('x') FROM residents", "error"},
	{"SELECT COUNT(*) FROM residents WHERE age IN (SELECT age FROM residents)", "subqueries"},
	{"SELECT COUNT(*) FROM (SELECT * FROM residents) s", "subqueries"},
	{"WITH x AS (SELECT * FROM residents) SELECT COUNT(*) FROM x", "common table"},
	{"SELECT district, COUNT(*) FROM residents GROUP BY ROLLUP (district)", "ROLLUP"},
	{"SELECT district, COUNT(*) OVER () FROM residents", "window"},
	{"SELECT COUNT(*) FROM residents UNION SELECT COUNT(*) FROM visits", "set operations"},
	{"SELECT COUNT(*) FROM residents USING SAMPLE 10", "sampling"},
	{"SELECT COUNT(*) AS __veil_units_0 FROM residents", "reserved"},
	{"SELECT COUNT(*) FROM residents r JOIN visits v ON r.age = v.resident_id", "privacy unit"},
	{"SELECT COUNT(*) FROM residents WHERE district = getvariable('x')", "getvariable"},
	{"SELECT district, age, COUNT(*) FROM residents GROUP BY district", "GROUP BY"},
	{"SELECT COUNT(*) FROM residents WHERE age = $1", "parameters"},
	{"SELECT COUNT(*) FROM residents r(a, b)", "renaming"},
	{"SELEC COUNT(*) FROM residents", "syntax"},
}

func TestValidateRefuses(t *testing.T) {
	v := newValidator(t)
	for _, tc := range refuseCases {
		_, err := v.Validate(context.Background(), tc.sql, scope())
		var r *Refusal
		if !errors.Is(err, ErrRefused) || !errors.As(err, &r) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want a refusal naming %q", tc.sql, err, tc.want)
		}
	}
}

// writeParquet writes a residents file: 60 persons in north, 37 in south, 3 in tiny; and a
// visits file with 2 visits per person.
func writeParquet(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	res, vis := filepath.Join(dir, "residents.parquet"), filepath.Join(dir, "visits.parquet")
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		fmt.Sprintf(`COPY (SELECT 1000 + i AS resident_id, 'P' || i AS name,
			CASE WHEN i >= 97 THEN 'tiny' WHEN i >= 60 THEN 'south' ELSE 'north' END AS district,
			20 + i %% 50 AS age, 1000 * (i %% 40) AS income FROM range(100) t(i)) TO '%s' (FORMAT parquet)`, res),
		fmt.Sprintf(`COPY (SELECT 1000 + i // 2 AS resident_id, 10.0 * i AS cost, 'h' || (i %% 3) AS hospital
			FROM range(200) t(i)) TO '%s' (FORMAT parquet)`, vis),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return res, vis
}

// TestRunnerLockdown checks that the runner's DuckDB cannot be talked into reading other
// files, even with SQL that never passed the validator.
func TestRunnerLockdown(t *testing.T) {
	res, vis := writeParquet(t)
	sc := scope(res, vis)
	for _, q := range []string{
		"SELECT * FROM read_csv('/etc/passwd')",
		"SELECT * FROM '" + filepath.Dir(res) + "/../x.parquet'",
		"SET enable_external_access=true",
		"SELECT religion FROM residents",
		"INSTALL httpfs",
	} {
		var buf bytes.Buffer
		if err := Run(context.Background(), &Job{SQL: q, Tables: sc.Tables, Threads: 1, MaxResultBytes: 1 << 20}, &buf); err == nil {
			t.Errorf("%q ran in the runner", q)
		}
	}
	// The size limit holds.
	var buf bytes.Buffer
	err := Run(context.Background(), &Job{SQL: "SELECT resident_id, district FROM residents", Tables: sc.Tables, Threads: 1, MaxResultBytes: 100}, &buf)
	if !errors.Is(err, ErrResultTooLarge) {
		t.Errorf("result limit: %v", err)
	}
}
