package engine

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// StageColumn is one column as registration stores it: read from Header in the provider's
// file and stored as Name with Type.
type StageColumn struct {
	Header string
	Name   string
	Type   string
}

// CSVError is a CSV file that cannot be read with the schema's types, summarized in one line
// that names the line and the column. It never holds a value of the file: a provider may see
// its own data, but the message goes to logs and to the API.
type CSVError struct {
	File    string // base name
	Line    int64  // line in the file (the header is line 1); 0 when unknown
	Column  string // the header, "" when the problem is not one column's
	Problem string
	More    int64 // further rows with problems
}

func (e *CSVError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ", line %d", e.Line)
	}
	if e.Column != "" {
		fmt.Fprintf(&b, ", column %q", e.Column)
	}
	b.WriteString(": ")
	b.WriteString(e.Problem)
	if e.More > 0 {
		fmt.Fprintf(&b, " (and %d more rows with problems)", e.More)
	}
	return b.String()
}

func removeQuiet(path string) { _ = os.Remove(path) }

func isCSV(file string) bool { return strings.EqualFold(filepath.Ext(file), ".csv") }

// FileColumns reads the headers and types of one CSV or Parquet file. A CSV file's types are
// DuckDB's guesses from a sample (registration reads it with the schema's types instead).
func FileColumns(ctx context.Context, file string) ([]FileColumn, error) {
	db, err := openLocal()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return fileColumns(ctx, db, file)
}

func fileColumns(ctx context.Context, db *sql.DB, file string) ([]FileColumn, error) {
	src := "read_parquet(" + quoteString(file) + ")"
	if isCSV(file) {
		src = "read_csv(" + quoteString(file) + ", header=true)"
	}
	rows, err := db.QueryContext(ctx, "DESCRIBE SELECT * FROM "+src)
	if err != nil {
		return nil, summarize(file, err)
	}
	defer rows.Close()
	var out []FileColumn
	for rows.Next() {
		var name, typ string
		var null, key, def, extra sql.NullString
		if err := rows.Scan(&name, &typ, &null, &key, &def, &extra); err != nil {
			return nil, err
		}
		out = append(out, FileColumn{Name: name, Type: typ})
	}
	if err := rows.Err(); err != nil {
		return nil, summarize(file, err)
	}
	return out, nil
}

// summarize keeps the first line of a DuckDB error about a file: the lines after it quote
// the file's rows.
func summarize(file string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := firstLine(err.Error())
	for _, p := range []string{"Invalid Input Error: ", "Conversion Error: ", "IO Error: ", "Binder Error: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	// A first line that quotes a value is cut before it.
	if i := strings.IndexAny(msg, `'`); i >= 0 {
		msg = strings.TrimSpace(msg[:i]) + " …"
	}
	return &CSVError{File: filepath.Base(file), Problem: msg}
}

// StageFile writes src (CSV or Parquet) to dst as Parquet holding cols, in order, renamed to
// their names; a CSV file is read with their types (an id number with leading zeros read as
// VARCHAR stays text). With rowUnit set it adds that BIGINT column, numbering the rows from
// firstRow. It returns the rows written. A CSV row that does not fit the types fails the
// whole file with a *CSVError, and dst is not left behind.
func StageFile(ctx context.Context, src, dst string, cols []StageColumn, rowUnit string, firstRow int64) (int64, error) {
	db, err := openLocal()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var sel []string
	for _, c := range cols {
		if !typeName.MatchString(c.Type) {
			return 0, fmt.Errorf("column %s: type %q is not a DuckDB type name", c.Name, c.Type)
		}
		sel = append(sel, fmt.Sprintf("%s AS %s", quoteIdent(c.Header), quoteIdent(c.Name)))
	}
	if rowUnit != "" {
		sel = append(sel, fmt.Sprintf("(row_number() OVER () + %d)::BIGINT AS %s", firstRow-1, quoteIdent(rowUnit)))
	}
	from := "read_parquet(" + quoteString(src) + ")"
	if isCSV(src) {
		var types []string
		for _, c := range cols {
			types = append(types, fmt.Sprintf("%s: %s", quoteString(c.Header), quoteString(c.Type)))
		}
		from = fmt.Sprintf("read_csv(%s, header=true, types={%s}, store_rejects=true, rejects_limit=1000)", quoteString(src), strings.Join(types, ", "))
	}
	q := fmt.Sprintf("COPY (SELECT %s FROM %s) TO %s (FORMAT parquet)", strings.Join(sel, ", "), from, quoteString(dst))
	if _, err := db.ExecContext(ctx, q); err != nil {
		removeQuiet(dst)
		if !isCSV(src) {
			return 0, err
		}
		return 0, summarize(src, err)
	}
	if isCSV(src) {
		types := map[string]string{}
		for _, c := range cols {
			types[c.Header] = c.Type
		}
		if err := rejected(ctx, db, src, types); err != nil {
			removeQuiet(dst)
			return 0, err
		}
	}
	var n int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM read_parquet("+quoteString(dst)+")").Scan(&n); err != nil {
		removeQuiet(dst)
		return 0, err
	}
	return n, nil
}

// csvProblems says what each of DuckDB's reject error types means, in words without values.
var csvProblems = map[string]string{
	"CAST":                   "the value is not a valid %s",
	"MISSING COLUMNS":        "the row has fewer columns than the header",
	"TOO MANY COLUMNS":       "the row has more columns than the header",
	"UNQUOTED VALUE":         "a quoted value is not closed or has text after its closing quote",
	"LINE SIZE OVER MAXIMUM": "the line is longer than DuckDB's maximum line size",
	"INVALID ENCODING":       "the line is not valid UTF-8",
	"INVALID UNICODE":        "the line is not valid UTF-8",
}

// rejected reports the first row DuckDB rejected while reading src, if any.
func rejected(ctx context.Context, db *sql.DB, src string, types map[string]string) error {
	var total int64
	if err := db.QueryRowContext(ctx, "SELECT COUNT(DISTINCT line) FROM reject_errors").Scan(&total); err != nil {
		return fmt.Errorf("read the CSV reader's rejects: %w", err)
	}
	if total == 0 {
		return nil
	}
	var line sql.NullInt64
	var col, kind sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT line, column_name, error_type::VARCHAR FROM reject_errors ORDER BY line, column_idx LIMIT 1").Scan(&line, &col, &kind); err != nil {
		return fmt.Errorf("read the CSV reader's rejects: %w", err)
	}
	e := &CSVError{File: filepath.Base(src), Line: line.Int64, Column: col.String, More: total - 1}
	problem, ok := csvProblems[kind.String]
	if !ok {
		problem = "the row cannot be read (" + strings.ToLower(kind.String) + ")"
	}
	if strings.Contains(problem, "%s") {
		t := types[col.String]
		if t == "" {
			t = "value of the schema's type"
		}
		problem = fmt.Sprintf(problem, t) + "; fix the value or the column's type in the schema"
	}
	e.Problem = problem
	if kind.String == "CAST" {
		e.Column = col.String
	} else {
		e.Column = ""
	}
	return e
}
