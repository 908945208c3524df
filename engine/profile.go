package engine

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// ColumnProfile is what a draft schema needs to know of one column of a provider's files. It
// holds counts and the shares of values that look like identifiers, never a value.
type ColumnProfile struct {
	Header   string `json:"header"`
	Type     string `json:"type"`     // DuckDB's type; VARCHAR for numbers written with leading zeros
	Distinct int64  `json:"distinct"` // exact up to exactDistinctRows rows, approximate (HyperLogLog) beyond
	Nulls    int64  `json:"nulls"`
	// LeadingZeros: some values are digits with a leading zero (an id number read as a
	// number would lose it).
	LeadingZeros bool `json:"leading_zeros,omitempty"`
	// Shares of the non-null values that look like an id number (a Chinese resident id or a
	// US SSN), a phone number, or a Chinese personal name.
	IDNumber float64 `json:"id_number_share"`
	Phone    float64 `json:"phone_share"`
	Name     float64 `json:"name_share"`
}

// exactDistinctRows is the most rows whose distinct values are counted exactly.
const exactDistinctRows = 5_000_000

// Profile is a set of files read as one table.
type Profile struct {
	Rows    int64
	Columns []ColumnProfile
}

const (
	idPattern    = `^([0-9]{17}[0-9Xx]|[0-9]{15}|[0-9]{3}-[0-9]{2}-[0-9]{4})$`
	phonePattern = `^((\+?86)?1[3-9][0-9]{9}|\+?1?[ (.-]*[0-9]{3}[) .-]*[0-9]{3}[ .-]*[0-9]{4})$`
	hanName      = `^\p{Han}{2,4}$`
)

// ProfileFiles reads CSV or Parquet files (all of one format) as one table and measures each
// column: its type, approximate distinct count, nulls, and how much of it looks like an id
// number, a phone number or a name. It runs on the provider's side (veil dataset infer) and
// returns no value of the files.
func ProfileFiles(ctx context.Context, files []string) (*Profile, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("no files")
	}
	csv := isCSV(files[0])
	for _, f := range files {
		if isCSV(f) != csv {
			return nil, fmt.Errorf("give files of one format: all CSV or all Parquet")
		}
	}
	db, err := openLocal()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	typed, text := "read_parquet("+quoteList(files)+")", ""
	if csv {
		typed = "read_csv(" + quoteList(files) + ", header=true)"
		text = "read_csv(" + quoteList(files) + ", header=true, all_varchar=true)"
	}
	rows, err := db.QueryContext(ctx, "DESCRIBE SELECT * FROM "+typed)
	if err != nil {
		return nil, summarize(files[0], err)
	}
	p := &Profile{}
	for rows.Next() {
		var name, typ string
		var null, key, def, extra sql.NullString
		if err := rows.Scan(&name, &typ, &null, &key, &def, &extra); err != nil {
			rows.Close()
			return nil, err
		}
		p.Columns = append(p.Columns, ColumnProfile{Header: name, Type: typ})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, summarize(files[0], err)
	}
	if text == "" {
		text = typed
	}
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+typed).Scan(&p.Rows); err != nil {
		return nil, summarize(files[0], err)
	}
	distinct := "count(DISTINCT %[1]s)"
	if p.Rows > exactDistinctRows {
		distinct = "approx_count_distinct(%[1]s)"
	}
	for i := range p.Columns {
		c := &p.Columns[i]
		v := fmt.Sprintf("CAST(%s AS VARCHAR)", quoteIdent(c.Header))
		q := fmt.Sprintf(`SELECT `+distinct+`, COUNT(*) - COUNT(%[1]s),
			COALESCE(bool_or(regexp_full_match(%[1]s, '0[0-9]+')), false),
			COALESCE(avg(CASE WHEN regexp_full_match(%[1]s, '%[2]s') THEN 1 ELSE 0 END), 0),
			COALESCE(avg(CASE WHEN regexp_full_match(%[1]s, '%[3]s') THEN 1 ELSE 0 END), 0),
			COALESCE(avg(CASE WHEN regexp_full_match(%[1]s, '%[4]s') THEN 1 ELSE 0 END), 0)
			FROM (SELECT %[5]s AS %[1]s FROM %[6]s)`, quoteIdent("v"), idPattern, phonePattern, hanName, v, text)
		if err := db.QueryRowContext(ctx, q).Scan(&c.Distinct, &c.Nulls, &c.LeadingZeros, &c.IDNumber, &c.Phone, &c.Name); err != nil {
			return nil, summarize(files[0], err)
		}
		if csv && c.LeadingZeros && isInteger(c.Type) {
			c.Type = "VARCHAR"
		}
	}
	return p, nil
}

func isInteger(t string) bool {
	t = strings.ToUpper(t)
	return strings.HasSuffix(t, "INT") || t == "HUGEINT" || t == "BIGINT" || t == "INTEGER" || t == "SMALLINT" || t == "TINYINT"
}

// DistinctValues returns the distinct non-null values of a column of registered Parquet files,
// as text in sorted order, refusing more than max of them or one longer than maxLen bytes.
// It is for a provider's public reference columns that become another column's domain.
func DistinctValues(ctx context.Context, files []string, column string, max, maxLen int) ([]string, error) {
	db, err := openLocal()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	q := fmt.Sprintf("SELECT DISTINCT CAST(%[1]s AS VARCHAR) AS v FROM read_parquet(%[2]s) WHERE %[1]s IS NOT NULL ORDER BY v LIMIT %[3]d", quoteIdent(column), quoteList(files), max+1)
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("read the values of %s: %w", column, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		if len(v) > maxLen {
			return nil, fmt.Errorf("%s holds a value longer than %d bytes: not a domain of values", column, maxLen)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) > max {
		return nil, fmt.Errorf("%s holds more than %d distinct values: too many for a domain", column, max)
	}
	return out, nil
}
