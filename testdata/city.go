// Package testdata generates, deterministically, the synthetic data Veil's demo, tests and
// benchmarks run on: a small city (residents, social-insurance records, medical visits, an
// enterprise registry) and a large flat table for benchmarks, each as Parquet with its schema
// file.
//
// Every value is computed from the row number with DuckDB's hash function: no clock, no
// random generator, so the same arguments always give the same bytes. The data describes no
// real person; the schema files say so (synthetic: true). This package must never read real
// data or write anywhere but the directory it is given.
package testdata

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/duckdb/duckdb-go/v2"
)

func open() (*sql.DB, error) {
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	// One thread: the Parquet writer's output then does not depend on scheduling.
	for _, s := range []string{"SET threads=1", "SET autoload_known_extensions=false", "SET autoinstall_known_extensions=false"} {
		if _, err := db.Exec(s); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// districts of the demo city with their weights (per 10,000 residents). Two are tiny, so that
// threshold suppression shows.
var districts = []struct {
	name   string
	weight int
}{
	{"Dongcheng", 1200}, {"Xicheng", 1300}, {"Chaoyang", 2100}, {"Haidian", 1900},
	{"Fengtai", 1100}, {"Shijingshan", 500}, {"Tongzhou", 800}, {"Shunyi", 600},
	{"Changping", 450}, {"Daxing", 48}, {"Yanqing", 1}, {"Miyun", 1},
}

// pick returns a SQL CASE choosing a district from a hash bucket in [0, 10000).
func pick(bucket string) string {
	var b strings.Builder
	b.WriteString("CASE")
	acc := 0
	for _, d := range districts[:len(districts)-1] {
		acc += d.weight
		fmt.Fprintf(&b, " WHEN %s < %d THEN '%s'", bucket, acc, d.name)
	}
	fmt.Fprintf(&b, " ELSE '%s' END", districts[len(districts)-1].name)
	return b.String()
}

func list(vals ...string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = "'" + v + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func districtNames() []string {
	var n []string
	for _, d := range districts {
		n = append(n, d.name)
	}
	return n
}

// h is a deterministic hash of a row key and a salt, as a non-negative BIGINT.
func h(key, salt string) string {
	return fmt.Sprintf("(hash(%s, '%s') %% 1000000007)::BIGINT", key, salt)
}

type table struct {
	name, query, schema string
}

// Generate writes the demo city for the given number of residents into dir.
func Generate(ctx context.Context, dir string, residents int) error {
	if residents < 10 {
		return fmt.Errorf("residents: %d is too few; use at least 10", residents)
	}
	n := residents
	enterprises := max(n/20, 5)
	surnames := list("Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun", "Hu", "Zhu", "Gao", "Lin")
	given := list("Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yong", "Yan", "Jie", "Tao", "Ming", "Chao", "Xia", "Ping", "Gang", "Hui")
	religions := list("none", "buddhist", "taoist", "christian", "muslim", "other")
	hospitals := list("City General", "Peking Union", "Friendship", "Tongren", "Anzhen", "Chaoyang Hospital", "Haidian Clinic", "Community Health")
	diagnosis := list("A00-B99 infectious", "C00-D49 neoplasms", "E00-E89 endocrine", "F01-F99 mental", "I00-I99 circulatory",
		"J00-J99 respiratory", "K00-K95 digestive", "M00-M99 musculoskeletal", "O00-O9A pregnancy", "S00-T88 injury", "Z00-Z99 checkup")
	industries := list("manufacturing", "retail", "construction", "information technology", "finance", "hospitality", "logistics", "health care")

	tables := []table{
		{"residents", fmt.Sprintf(`SELECT i AS resident_id,
			(%[2]s)[1 + %[3]s %% 16] || ' ' || (%[4]s)[1 + %[5]s %% 20] AS name,
			'110' || lpad((%[6]s %% 1000)::VARCHAR, 3, '0') || (1940 + %[7]s %% 66)::VARCHAR
				|| lpad((1 + %[8]s %% 12)::VARCHAR, 2, '0') || lpad((1 + %[9]s %% 28)::VARCHAR, 2, '0')
				|| lpad((%[10]s %% 10000)::VARCHAR, 4, '0') AS id_number,
			CASE WHEN %[11]s %% 2 = 0 THEN 'F' ELSE 'M' END AS sex,
			(1940 + %[7]s %% 66)::INTEGER AS birth_year,
			%[12]s AS district,
			(%[13]s)[1 + %[14]s %% 6] AS religion,
			'13' || lpad((%[15]s %% 1000000000)::VARCHAR, 9, '0') AS phone
			FROM range(1, %[1]d + 1) t(i) ORDER BY i`,
			n, surnames, h("i", "surname"), given, h("i", "given"), h("i", "area"), h("i", "birth"), h("i", "month"), h("i", "day"),
			h("i", "seq"), h("i", "sex"), pick(h("i", "district")+" % 10000"), religions, h("i", "religion"), h("i", "phone")),
			residentsSchema},
		// Employed residents (about 70%) have one record per year 2019-2024 they worked.
		{"social_insurance", fmt.Sprintf(`SELECT i AS resident_id, y::INTEGER AS year,
			1 + %[2]s %% %[3]d AS employer_id,
			round(3000 + (%[4]s %% 20000) * (1 + (y - 2019) * 0.04), 2)::DOUBLE AS monthly_wage,
			(CASE WHEN %[5]s %% 10 < 8 THEN 12 ELSE 1 + %[5]s %% 12 END)::INTEGER AS months_paid,
			round((3000 + (%[4]s %% 20000)) * 0.08, 2)::DOUBLE AS pension_contribution
			FROM range(1, %[1]d + 1) t(i), range(2019, 2025) s(y)
			WHERE %[6]s %% 10 < 7 AND %[7]s %% 8 <> 0
			ORDER BY i, y`,
			n, h("i", "employer"), enterprises, h("i", "wage"), h("i * 10 + y", "months"), h("i", "employed"), h("i * 10 + y", "gap")),
			socialInsuranceSchema},
		// Each resident has 0-5 visits.
		{"medical_visits", fmt.Sprintf(`SELECT i AS resident_id,
			(DATE '2023-01-01' + (%[2]s %% 730)::INTEGER) AS visit_date,
			(%[3]s)[1 + %[4]s %% 8] AS hospital,
			(%[5]s)[1 + %[6]s %% 11] AS diagnosis_group,
			round(50 + (%[7]s %% 500000) / 100.0, 2)::DOUBLE AS cost
			FROM range(1, %[1]d + 1) t(i), range(0, 5) s(v)
			WHERE v < %[8]s %% 6
			ORDER BY i, v`,
			n, h("i * 10 + v", "date"), hospitals, h("i * 10 + v", "hospital"), diagnosis, h("i * 10 + v", "diag"),
			h("i * 10 + v", "cost"), h("i", "visits")),
			medicalVisitsSchema},
		{"enterprises", fmt.Sprintf(`SELECT i AS enterprise_id,
			(%[2]s)[1 + %[3]s %% 16] || ' ' || (%[4]s)[1 + %[5]s %% 8] || ' Co. ' || i::VARCHAR AS name,
			(%[4]s)[1 + %[5]s %% 8] AS industry,
			%[6]s AS district,
			(1 + %[7]s %% 500)::INTEGER AS employees,
			round(100000 + (%[8]s %% 10000000), 2)::DOUBLE AS registered_capital
			FROM range(1, %[1]d + 1) t(i) ORDER BY i`,
			enterprises, surnames, h("i", "ename"), industries, h("i", "industry"), pick(h("i", "edistrict")+" % 10000"),
			h("i", "employees"), h("i", "capital")),
			enterprisesSchema},
	}
	return write(ctx, dir, tables)
}

// GenerateBench writes bench_events: rows rows about units persons in groups groups. Row i
// belongs to person i mod units, so no person has more than ceil(rows/units) rows.
func GenerateBench(ctx context.Context, dir string, rows, units, groups int) error {
	return GenerateBenchTable(ctx, dir, "bench_events", rows, units, groups)
}

// GenerateBenchTable writes a table like bench_events under another name (name.parquet and
// name.yaml), for benchmarks that need a second shape of the same data (one row per person,
// a smaller table) registered next to the first.
func GenerateBenchTable(ctx context.Context, dir, name string, rows, units, groups int) error {
	if rows < 1 || units < 1 || groups < 1 || groups > 10000 {
		return fmt.Errorf("bench data: rows, units and groups must be positive (groups at most 10000)")
	}
	if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(name) {
		return fmt.Errorf("bench data: table name %q must be lower-case letters, digits and underscores", name)
	}
	perUnit := (rows + units - 1) / units
	q := fmt.Sprintf(`SELECT (i %% %[2]d)::BIGINT AS person_id,
		'g' || lpad((%[4]s %% %[3]d)::VARCHAR, 4, '0') AS grp,
		round((%[5]s %% 1000000) / 1000.0, 3)::DOUBLE AS value
		FROM range(%[1]d) t(i) ORDER BY i`, rows, units, groups, h("i", "grp"), h("i", "value"))
	schema := strings.ReplaceAll(benchSchema, "MAXROWS", fmt.Sprint(perUnit))
	schema = strings.ReplaceAll(schema, "name: bench_events", "name: "+name)
	return write(ctx, dir, []table{{name, q, schema}})
}

// GenerateCustomers writes file, a vendor's own customer list for the fusion demo: n
// customers, nine in ten of them residents of the city of the given size (their phone as the
// city has it), the rest from elsewhere, with a yearly spend and a segment.
func GenerateCustomers(ctx context.Context, file string, residents, n int) error {
	if residents < 10 || n < 1 {
		return fmt.Errorf("customers: need a city of at least 10 residents and at least one customer")
	}
	db, err := open()
	if err != nil {
		return err
	}
	defer db.Close()
	phone := fmt.Sprintf("'13' || lpad((%s %% 1000000000)::VARCHAR, 9, '0')", h("i", "phone"))
	q := fmt.Sprintf(`SELECT CASE WHEN c %% 10 = 9 THEN '19' || lpad(c::VARCHAR, 9, '0') ELSE phone END AS phone,
		(50 + (%[1]s %% 5000))::INTEGER AS spend, CASE WHEN c %% 3 = 0 THEN 'gold' ELSE 'basic' END AS segment
		FROM (SELECT c, i, %[2]s AS phone FROM (SELECT c, (c * 7919) %% %[3]d AS i FROM range(%[4]d) t(c)))`,
		h("c", "spend"), phone, residents, n)
	tmp := file + ".tmp"
	if _, err := db.ExecContext(ctx, fmt.Sprintf("COPY (%s) TO '%s' (FORMAT csv, HEADER)", q, strings.ReplaceAll(tmp, "'", "''"))); err != nil {
		return fmt.Errorf("generate customers: %w", err)
	}
	return os.Rename(tmp, file)
}

// HEFeatures is the number of feature columns of GenerateHEBench's table (f01...).
const HEFeatures = 16

// GenerateHEBench writes bench_features: rows rows, one per person, in groups groups, with
// HEFeatures DOUBLE feature columns f01..f16 uniform in [0, 100]: the shape of a credit
// scoring input.
func GenerateHEBench(ctx context.Context, dir string, rows, groups int) error {
	if rows < 1 || groups < 1 || groups > 10000 {
		return fmt.Errorf("he bench data: rows and groups must be positive (groups at most 10000)")
	}
	cols := []string{"i::BIGINT AS person_id", fmt.Sprintf("'g' || lpad((%s %% %d)::VARCHAR, 4, '0') AS grp", h("i", "grp"), groups)}
	var decl []string
	for f := 1; f <= HEFeatures; f++ {
		name := fmt.Sprintf("f%02d", f)
		cols = append(cols, fmt.Sprintf("round((%s %% 100000) / 1000.0, 3)::DOUBLE AS %s", h("i", name), name))
		decl = append(decl, fmt.Sprintf("  - {name: %s, type: DOUBLE, level: 2, kind: none, bounds: [0, 100]}", name))
	}
	q := fmt.Sprintf("SELECT %s FROM range(%d) t(i) ORDER BY i", strings.Join(cols, ", "), rows)
	schema := `# Benchmark features for encrypted scoring: one row per person.
name: bench_features
title: Benchmark features
provider: bench
unit: person
max_rows_per_unit: 1
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: person_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: grp, type: VARCHAR, level: 1, kind: none}
` + strings.Join(decl, "\n") + "\n"
	return write(ctx, dir, []table{{"bench_features", q, schema}})
}

// RegressionBeta are the true coefficients of GenerateRegression's y on x01..x10, after the
// intercept RegressionIntercept: what a DP linear regression should recover.
var RegressionBeta = []float64{1.5, -2, 0.5, 0, 1, -1, 2, 0.3, -0.7, 0.8}

// RegressionIntercept is the intercept of GenerateRegression's y.
const RegressionIntercept = 3.0

// GenerateRegression writes reg_data: rows rows, one per person, with x01..x10 uniform in
// [0, 10], y = 3 + Σ β_j x_j + e (e approximately standard normal, a sum of four uniforms)
// and label = 1 where x01 + x02 > 10 (a separable task), else 0.
func GenerateRegression(ctx context.Context, dir string, rows int) error {
	if rows < 1 {
		return fmt.Errorf("regression data: rows must be positive")
	}
	u := func(salt string) string { return fmt.Sprintf("((%s %% 1000000) / 1000000.0)", h("i", salt)) }
	cols := []string{"i::BIGINT AS person_id"}
	y := fmt.Sprintf("%g", RegressionIntercept)
	var decl []string
	for j, b := range RegressionBeta {
		name := fmt.Sprintf("x%02d", j+1)
		cols = append(cols, fmt.Sprintf("round(10 * %s, 6) AS %s", u(name), name))
		y += fmt.Sprintf(" + %g * round(10 * %s, 6)", b, u(name))
		decl = append(decl, fmt.Sprintf("  - {name: %s, type: DOUBLE, level: 2, kind: none, bounds: [0, 10]}", name))
	}
	e := fmt.Sprintf("((%s + %s + %s + %s - 2) * 1.7320508)", u("e1"), u("e2"), u("e3"), u("e4"))
	cols = append(cols, fmt.Sprintf("(%s + %s)::DOUBLE AS y", y, e),
		fmt.Sprintf("(CASE WHEN round(10 * %s, 6) + round(10 * %s, 6) > 10 THEN 1 ELSE 0 END)::INTEGER AS label", u("x01"), u("x02")))
	q := fmt.Sprintf("SELECT %s FROM range(%d) t(i) ORDER BY i", strings.Join(cols, ", "), rows)
	schema := `# Synthetic regression data: one row per person, known coefficients.
name: reg_data
title: Regression test data
provider: bench
unit: person
max_rows_per_unit: 1
synthetic: true
budget: {epsilon: 10, delta: 1.0e-5}
columns:
  - {name: person_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
` + strings.Join(decl, "\n") + `
  - {name: y, type: DOUBLE, level: 2, kind: none, bounds: [-50, 80]}
  - {name: label, type: INTEGER, level: 2, kind: none, domain: ["0", "1"]}
`
	return write(ctx, dir, []table{{"reg_data", q, schema}})
}

func write(ctx context.Context, dir string, tables []table) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	db, err := open()
	if err != nil {
		return err
	}
	defer db.Close()
	for _, t := range tables {
		file := filepath.Join(dir, t.name+".parquet")
		tmp := file + ".tmp"
		q := fmt.Sprintf("COPY (%s) TO '%s' (FORMAT parquet, COMPRESSION zstd)", t.query, strings.ReplaceAll(tmp, "'", "''"))
		if _, err := db.ExecContext(ctx, q); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("generate %s: %w", t.name, err)
		}
		if err := os.Chmod(tmp, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, file); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, t.name+".yaml"), []byte(t.schema), 0o644); err != nil {
			return err
		}
	}
	return nil
}
