package engine

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/duckdb/duckdb-go/v2"
)

// FileInfo describes a set of data files read as one table.
type FileInfo struct {
	Columns []FileColumn
	Rows    int64
}

// FileColumn is a column name and its DuckDB type.
type FileColumn struct {
	Name string
	Type string
}

// openLocal opens a private in-memory DuckDB for trusted, daemon-side catalog work (never
// for vendor SQL), with extension autoloading off.
func openLocal() (*sql.DB, error) {
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	for _, s := range []string{"SET autoinstall_known_extensions=false", "SET autoload_known_extensions=false", "SET threads=2"} {
		if _, err := db.Exec(s); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

func quoteList(files []string) string {
	q := make([]string, len(files))
	for i, f := range files {
		q[i] = "'" + strings.ReplaceAll(f, "'", "''") + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Inspect reads the schema and row count of Parquet files as one table (union by name is not
// allowed: all files must share the schema).
func Inspect(ctx context.Context, files []string) (*FileInfo, error) {
	db, err := openLocal()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	src := "read_parquet(" + quoteList(files) + ")"
	cols, err := describe(ctx, db, files)
	if err != nil {
		return nil, err
	}
	info := &FileInfo{Columns: cols}
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+src).Scan(&info.Rows); err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	return info, nil
}

// describe reads the columns of Parquet files read as one table.
func describe(ctx context.Context, db *sql.DB, files []string) ([]FileColumn, error) {
	rows, err := db.QueryContext(ctx, "DESCRIBE SELECT * FROM read_parquet("+quoteList(files)+")")
	if err != nil {
		return nil, fmt.Errorf("read schema: %w", err)
	}
	defer rows.Close()
	var out []FileColumn
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out = append(out, FileColumn{Name: fmt.Sprint(vals[0]), Type: fmt.Sprint(vals[1])})
	}
	return out, rows.Err()
}

// ConvertCSV converts a CSV file (header row, types detected by DuckDB) to Parquet.
func ConvertCSV(ctx context.Context, src, dst string) error {
	db, err := openLocal()
	if err != nil {
		return err
	}
	defer db.Close()
	q := fmt.Sprintf("COPY (SELECT * FROM read_csv(%s, header=true)) TO %s (FORMAT parquet)",
		quoteList([]string{src})[1:len(quoteList([]string{src}))-1], quoteList([]string{dst})[1:len(quoteList([]string{dst}))-1])
	if _, err := db.ExecContext(ctx, q); err != nil {
		removeQuiet(dst)
		return summarize(src, err) // DuckDB's message quotes the rows
	}
	return nil
}

// UnitStats measures the largest number of rows any one privacy unit has in files and the
// number of rows without a unit. The gate and the choice of dp plan rely on them, so they
// are measured, never taken on trust.
func UnitStats(ctx context.Context, files []string, unit string) (maxRows, missing int64, err error) {
	db, err := openLocal()
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	var m, n sql.NullInt64
	q := fmt.Sprintf("SELECT max(c) FILTER (WHERE u IS NOT NULL), sum(c) FILTER (WHERE u IS NULL) FROM (SELECT %[2]s AS u, COUNT(*) AS c FROM read_parquet(%[1]s) GROUP BY %[2]s)", quoteList(files), quoteIdent(unit))
	if err := db.QueryRowContext(ctx, q).Scan(&m, &n); err != nil {
		return 0, 0, fmt.Errorf("count rows per unit: %w", err)
	}
	return m.Int64, n.Int64, nil
}

// Limits of UnitStatsBy: it measures tables of at most byMaxRows rows, and columns of at most
// byMaxValues values (DuckDB's estimate: it only chooses what is measured; what is measured
// is exact). Larger ones are left unmeasured, and their queries rely on MaxRowsPerUnit alone.
const (
	byMaxRows   = 5_000_000
	byMaxValues = 100_000
	byMaxCols   = 16
)

// UnitStatsBy measures, for each column of cols (dataset name -> the file's header), the
// largest number of rows any one privacy unit has among the rows that share one value of
// that column (NULL is one value, as GROUP BY has it); rows without a unit are not counted,
// as in UnitStats. A query grouped by the column as it is holds the rows of one value in
// each group, so no unit has more rows than that in a group (Table.MaxRowsPerUnitBy). It
// measures small tables and columns only (byMaxRows, byMaxValues) and leaves the others out.
func UnitStatsBy(ctx context.Context, files []string, unit string, cols map[string]string) (map[string]int64, error) {
	if len(cols) == 0 {
		return nil, nil
	}
	db, err := openLocal()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	names := make([]string, 0, len(cols))
	for n := range cols {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(names) > byMaxCols {
		names = names[:byMaxCols]
	}
	src := "read_parquet(" + quoteList(files) + ")"
	var rows int64
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+src).Scan(&rows); err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	if rows > byMaxRows {
		return nil, nil // the count is the files' metadata: no scan of a large table
	}
	var items []string
	for _, n := range names {
		items = append(items, "approx_count_distinct("+quoteIdent(cols[n])+")")
	}
	vals := make([]sql.NullInt64, len(items))
	ptrs := make([]any, len(items))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := db.QueryRowContext(ctx, "SELECT "+strings.Join(items, ", ")+" FROM "+src).Scan(ptrs...); err != nil {
		return nil, fmt.Errorf("count values: %w", err)
	}
	out := map[string]int64{}
	for i, n := range names {
		if vals[i].Int64 > byMaxValues {
			continue
		}
		var m sql.NullInt64
		q := fmt.Sprintf("SELECT max(n) FROM (SELECT count(*) AS n FROM %s WHERE %s IS NOT NULL GROUP BY %s, %s)", src, quoteIdent(unit), quoteIdent(cols[n]), quoteIdent(unit))
		if err := db.QueryRowContext(ctx, q).Scan(&m); err != nil {
			return nil, fmt.Errorf("count rows per unit and %s: %w", n, err)
		}
		if m.Valid && m.Int64 > 0 {
			out[n] = m.Int64
		}
	}
	return out, nil
}

// byMaxValueUnits bounds the values of a column whose ValueUnits registration keeps (each
// job whose plan groups by the column carries them all).
const byMaxValueUnits = 1024

// ValueUnitStats measures, for each VARCHAR column of cols (dataset name -> the file's
// header) with at most byMaxValueUnits values, per value, the rows with a unit, their
// distinct units and the most rows of one unit (ValueUnits; NULL is left out, as no job
// looks it up). Like UnitStatsBy it measures tables of at most byMaxRows rows and at most
// byMaxCols columns and leaves the others out. What it measures is exact: the runner's
// bounds rely on it.
func ValueUnitStats(ctx context.Context, files []string, unit string, cols map[string]string) (map[string]map[string]ValueUnits, error) {
	if len(cols) == 0 {
		return nil, nil
	}
	db, err := openLocal()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	src := "read_parquet(" + quoteList(files) + ")"
	var rows int64
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+src).Scan(&rows); err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	if rows > byMaxRows {
		return nil, nil
	}
	fc, err := describe(ctx, db, files)
	if err != nil {
		return nil, err
	}
	types := map[string]string{}
	for _, c := range fc {
		types[c.Name] = c.Type
	}
	names := make([]string, 0, len(cols))
	for n := range cols {
		if types[cols[n]] == "VARCHAR" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if len(names) > byMaxCols {
		names = names[:byMaxCols]
	}
	out := map[string]map[string]ValueUnits{}
	for _, n := range names {
		col := quoteIdent(cols[n])
		q := fmt.Sprintf("SELECT v, CAST(sum(c) AS BIGINT), count(*), max(c) FROM (SELECT %[2]s AS v, count(*) AS c FROM %[1]s WHERE %[3]s IS NOT NULL AND %[2]s IS NOT NULL GROUP BY %[2]s, %[3]s) GROUP BY v LIMIT %[4]d",
			src, col, quoteIdent(unit), byMaxValueUnits+1)
		res, err := db.QueryContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("count units per value of %s: %w", n, err)
		}
		vals := map[string]ValueUnits{}
		for res.Next() {
			var v string
			var vu ValueUnits
			if err := res.Scan(&v, &vu.Rows, &vu.Units, &vu.Max); err != nil {
				res.Close()
				return nil, fmt.Errorf("count units per value of %s: %w", n, err)
			}
			vals[v] = vu
		}
		err = res.Err()
		res.Close()
		if err != nil {
			return nil, fmt.Errorf("count units per value of %s: %w", n, err)
		}
		if len(vals) > 0 && len(vals) <= byMaxValueUnits {
			out[n] = vals
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
