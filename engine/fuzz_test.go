package engine

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// seedQueries are the queries of the validator's tests: accepted, refused, and the tricks.
func seedQueries() []string {
	var qs []string
	for _, c := range acceptCases {
		qs = append(qs, c.sql)
	}
	for _, c := range refuseCases {
		qs = append(qs, c.sql)
	}
	for _, c := range dpRefuseCases {
		qs = append(qs, c.sql)
	}
	qs = append(qs, dpAcceptCases...)
	qs = append(qs, unitQueries...)
	qs = append(qs, escapeQueries...)
	qs = append(qs, hugeQueries...)
	for _, c := range badExprs {
		qs = append(qs, fmt.Sprintf("SELECT COUNT(*) FROM adv WHERE (%s) IS NOT NULL", c.expr))
	}
	for _, e := range goodExprs {
		qs = append(qs, fmt.Sprintf("SELECT %s AS v, COUNT(*) FROM adv GROUP BY 1", e))
	}
	for _, ps := range probes {
		for _, p := range ps {
			qs = append(qs, fmt.Sprintf("SELECT %s AS v, COUNT(*) FROM adv GROUP BY 1", p.expr))
		}
	}
	for _, ps := range aggProbes {
		for _, p := range ps {
			qs = append(qs, fmt.Sprintf("SELECT b, %s FROM adv GROUP BY b", p.expr))
		}
	}
	return append(qs,
		"SELECT hospital, COUNT(*), SUM(cost) FROM visits GROUP BY hospital",
		"SELECT r.district, COUNT(*) FROM residents r JOIN visits v ON r.resident_id = v.resident_id WHERE v.cost > 10 GROUP BY r.district",
		"SELECT district, AVG(age), MEDIAN(income), quantile_cont(age, 0.9) FROM residents GROUP BY district")
}

// fuzzScope is residents and visits (as in the other tests) and adv, each over a file of
// adversarial values.
func fuzzScope(t testing.TB) Scope {
	t.Helper()
	dir := t.TempDir()
	res, vis := filepath.Join(dir, "residents.parquet"), filepath.Join(dir, "visits.parquet")
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		fmt.Sprintf(`COPY (SELECT r AS resident_id, 'P' || r AS name, ['north', 'south', '', NULL, '5', '%%'][r %% 6 + 1] AS district,
			[(-9223372036854775808)::BIGINT, 9223372036854775807, 0, -1, NULL, 30][r %% 6 + 1] AS age,
			[9223372036854775807, (-9223372036854775808)::BIGINT, 1000, NULL, 0][r %% 5 + 1] AS income FROM range(40) t(r)) TO '%s' (FORMAT parquet)`, res),
		fmt.Sprintf(`COPY (SELECT r %% 40 AS resident_id, ['1.7976931348623157e308'::DOUBLE, 'nan', '-inf', 0, NULL, 12.5][r %% 6 + 1] AS cost,
			['h0', '', NULL, 'h1'][r %% 4 + 1] AS hospital FROM range(80) t(r)) TO '%s' (FORMAT parquet)`, vis),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	sc := scope(res, vis)
	for i := range sc.Tables {
		sc.Tables[i].Unit = "person"
	}
	sc.Tables[0].Columns[2].Domain = []string{"north", "south"}
	sc.Tables[0].Columns[3].Bounds = []float64{0, 120}
	sc.Tables = append(sc.Tables, advScope(t).Tables[0])
	return sc
}

// oracle is a DuckDB whose tables are the scope's with more columns and a table more, as
// the raw files have them: an accepted query must read only granted columns of it.
type oracle struct {
	db *sql.DB
	sc Scope
}

func newOracle(t testing.TB, sc Scope) *oracle {
	t.Helper()
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, tb := range sc.Tables {
		var cols []string
		for _, c := range tb.Columns {
			cols = append(cols, quoteIdent(c.Name)+" "+c.Type)
		}
		cols = append(cols, "religion VARCHAR", "salary BIGINT")
		if _, err := db.Exec(fmt.Sprintf("CREATE TABLE %s (%s)", quoteIdent(tb.Name), strings.Join(cols, ", "))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec("CREATE TABLE enterprises (enterprise_id BIGINT, revenue DOUBLE)"); err != nil {
		t.Fatal(err)
	}
	return &oracle{db: db, sc: sc}
}

// check plans q with DuckDB's binder (independently of the validator's own plan walk) and
// fails unless every scan reads a granted dataset's granted columns.
func (o *oracle) check(t *testing.T, q string) {
	t.Helper()
	var out string
	if err := o.db.QueryRow("SELECT json_serialize_plan(?::VARCHAR)::VARCHAR", q).Scan(&out); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["error"] == true {
		t.Fatalf("accepted SQL does not bind where the datasets have more columns: %v\n%s", doc["error_message"], q)
	}
	var walk func(x any)
	walk = func(x any) {
		switch v := x.(type) {
		case map[string]any:
			if v["type"] == "LOGICAL_GET" {
				fd, _ := v["function_data"].(map[string]any)
				name, _ := fd["table"].(string)
				tb, ok := o.sc.table(name)
				if !ok {
					t.Fatalf("accepted SQL reads %q:\n%s", name, q)
				}
				names, _ := v["names"].([]any)
				idx, _ := v["column_indexes"].([]any)
				for _, ci := range idx {
					f, _ := ci.(map[string]any)["index"].(float64)
					if f == math.MaxUint64 {
						continue // the row id, read by COUNT(*) alone
					}
					if int(f) < 0 || int(f) >= len(names) {
						t.Fatalf("accepted SQL reads a hidden column of %s:\n%s", name, q)
					}
					if _, ok := tb.column(names[int(f)].(string)); !ok {
						t.Fatalf("accepted SQL reads %s.%v, which is not granted:\n%s", name, names[int(f)], q)
					}
				}
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(doc)
}

// runner is one DuckDB session over the scope's files as the runner shows them (a view of
// the granted columns per dataset), with a secret set for dp plans.
type runner struct {
	conn *sql.Conn
}

func newRunner(t testing.TB, sc Scope) *runner {
	t.Helper()
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stmts := []string{"SET VARIABLE veil_secret = 7::BIGINT"}
	for _, tb := range sc.Tables {
		var cols []string
		for _, c := range tb.Columns {
			cols = append(cols, quoteIdent(c.Name))
		}
		stmts = append(stmts, fmt.Sprintf("CREATE VIEW %s AS SELECT %s FROM read_parquet(%s)", quoteIdent(tb.Name), strings.Join(cols, ", "), quoteList(tb.Files)))
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	return &runner{conn: conn}
}

// exec runs q to the end.
func (r *runner) exec(q string) error {
	rows, err := r.conn.QueryContext(context.Background(), q)
	if err != nil {
		return err
	}
	for rows.Next() {
	}
	defer rows.Close()
	return rows.Err()
}

// run fails unless q runs to the end on the adversarial data: nothing the validator accepts
// may fail because of a value.
func (r *runner) run(t *testing.T, q string) {
	t.Helper()
	if err := r.exec(q); err != nil {
		t.Fatalf("accepted SQL fails on the data: %v\n%s", err, q)
	}
}

// FuzzValidate: Validate never panics and answers a refusal or a plan; an accepted plan's
// SQL reads only granted tables and columns (DuckDB's binder says so, over datasets with
// more columns than granted) and runs on adversarial values without failing.
func FuzzValidate(f *testing.F) {
	for _, q := range seedQueries() {
		f.Add(q)
	}
	v := newValidator(f)
	sc := fuzzScope(f)
	or, run := newOracle(f, sc), newRunner(f, sc)
	f.Fuzz(func(t *testing.T, q string) {
		plan, err := v.Validate(context.Background(), q, sc)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("%q: an error that is not a refusal: %v", q, err)
			}
			return
		}
		for _, s := range []string{plan.SQL, plan.FastSQL} {
			if s != "" {
				or.check(t, s)
				run.run(t, s)
			}
		}
	})
}

// FuzzValidateDP is FuzzValidate for ValidateDP, with the contribution bounds fuzzed too.
func FuzzValidateDP(f *testing.F) {
	for _, q := range seedQueries() {
		f.Add(q, uint16(1), uint16(1))
	}
	f.Add("SELECT district, COUNT(*), SUM(age) FROM residents GROUP BY district", uint16(3), uint16(5))
	v := newValidator(f)
	sc := fuzzScope(f)
	sc.Mode = "dp"
	or, run := newOracle(f, sc), newRunner(f, sc)
	f.Fuzz(func(t *testing.T, q string, groups, rows uint16) {
		opt := DPOptions{Epsilon: 1, Delta: 1e-6, MaxGroups: int64(groups), MaxRows: int64(rows)}
		plan, err := v.ValidateDP(context.Background(), q, sc, opt)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("%q: an error that is not a refusal: %v", q, err)
			}
			return
		}
		for _, s := range []string{plan.SQL, plan.DP.DirectSQL} {
			if s != "" {
				or.check(t, s)
				run.run(t, s)
			}
		}
	})
}
