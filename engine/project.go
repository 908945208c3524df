package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/duckdb/duckdb-go/v2"
)

// Project writes the granted columns of a dataset to one Parquet file at dst, for a custom
// job's /in: the privacy unit is replaced by a pseudonym, the SHA-256 of the job's secret and
// the unit (the same person has the same pseudonym in every dataset of the job, and an
// unrelated one in the next job), every other granted column is copied as it is. secret must
// be at least 32 hex digits. It runs on the platform, before the sandbox starts, and returns
// the number of rows written.
func Project(ctx context.Context, t Table, dst string, secret string) (int64, error) {
	if len(secret) < 32 || strings.Trim(secret, "0123456789abcdef") != "" {
		return 0, fmt.Errorf("project %s: the pseudonym secret must be at least 32 hex digits", t.Name)
	}
	db, err := openLocal()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var cols []string
	for _, c := range t.Columns {
		if c.PrivacyUnit {
			cols = append(cols, fmt.Sprintf("sha256('%s|' || CAST(%s AS VARCHAR)) AS %s", secret, quoteIdent(c.Name), quoteIdent(c.Name)))
		} else {
			cols = append(cols, quoteIdent(c.Name))
		}
	}
	n, err := copyParquet(ctx, db, cols, t.Files, dst)
	if err != nil {
		return 0, fmt.Errorf("project %s: %w", t.Name, err)
	}
	return n, nil
}

// copyParquet writes the select list items over files to one Parquet file at dst, in the
// files' row order and with their largest row group's size, and returns the rows written.
func copyParquet(ctx context.Context, db *sql.DB, items, files []string, dst string) (int64, error) {
	var groupRows sql.NullInt64
	if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT max(row_group_num_rows) FROM parquet_metadata(%s)", quoteList(files))).Scan(&groupRows); err != nil {
		return 0, fmt.Errorf("read row groups: %w", err)
	}
	size := ""
	if groupRows.Int64 > 0 {
		size = fmt.Sprintf(", ROW_GROUP_SIZE %d", groupRows.Int64)
	}
	src := fmt.Sprintf("SELECT %s FROM read_parquet(%s)", strings.Join(items, ", "), quoteList(files))
	if _, err := db.ExecContext(ctx, fmt.Sprintf("COPY (%s) TO %s (FORMAT parquet, COMPRESSION zstd%s)", src, quoteString(dst), size)); err != nil {
		return 0, err
	}
	var n int64
	if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM read_parquet(%s)", quoteString(dst))).Scan(&n); err != nil {
		return 0, err
	}
	return n, nil
}

func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// ProjectionKey names the projection of a dataset version onto a set of columns: the same
// for the same version and set, whatever the order of the columns. A caller keeps one
// projection directory per key.
func ProjectionKey(version string, columns []string) string {
	cs := slices.Clone(columns)
	slices.Sort(cs)
	h := sha256.New()
	fmt.Fprintf(h, "veil projection 1\x00%s", version)
	for _, c := range slices.Compact(cs) {
		fmt.Fprintf(h, "\x00%s", c)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// projection is the manifest a projection directory holds, written last: a directory with
// it is complete.
type projection struct {
	Sources []string `json:"sources"`
	Columns []string `json:"columns"`
	Files   []string `json:"files"`
}

const manifestName = "projection.json"

// ProjectColumns writes into dir a projection of a dataset version's files that holds only
// columns: one Parquet file per source file, with the same types, the same rows in the same
// order and the same row group sizes, so that a SQL job's sandbox can mount it in place of the
// raw files and a column outside the grant is not in the sandbox at all. It returns the
// projection's files, in the order of files.
//
// The projection is deterministic (the same files and column set give the same bytes), so a
// caller makes it once per (dataset version, column set), in a directory named by
// ProjectionKey, and reuses it: if dir already holds a complete projection of the same files
// and columns, ProjectColumns returns its files without writing. The directory appears
// complete or not at all (it is written aside and renamed), so concurrent callers and a crash
// never leave a half-written projection in its place.
func ProjectColumns(ctx context.Context, files, columns []string, dir string) ([]string, error) {
	if len(files) == 0 || len(columns) == 0 {
		return nil, errors.New("project: no files or no columns")
	}
	if p, err := readProjection(dir); err == nil {
		if !slices.Equal(p.Sources, files) || !sameSet(p.Columns, columns) {
			return nil, fmt.Errorf("project: %s holds another projection", dir)
		}
		return projectionFiles(dir, p), nil
	}
	db, err := openLocal()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	schema, err := describe(ctx, db, files)
	if err != nil {
		return nil, fmt.Errorf("project: %w", err)
	}
	var keep, items []string
	for _, c := range schema {
		if slices.Contains(columns, c.Name) {
			keep = append(keep, c.Name)
			items = append(items, quoteIdent(c.Name))
		}
	}
	if len(keep) != len(columns) {
		return nil, fmt.Errorf("project: columns %v are not all (once each) in the files", columns)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".projection-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// Others may traverse (the sandbox's unprivileged root opens the files by name), not list.
	if err := os.Chmod(tmp, 0o711); err != nil {
		return nil, err
	}
	p := projection{Sources: files, Columns: keep}
	for i, f := range files {
		name := fmt.Sprintf("%04d.parquet", i)
		n, err := copyParquet(ctx, db, items, []string{f}, filepath.Join(tmp, name))
		if err != nil {
			return nil, fmt.Errorf("project %s: %w", filepath.Base(f), err)
		}
		var want int64
		if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM read_parquet(%s)", quoteString(f))).Scan(&want); err != nil {
			return nil, err
		}
		if n != want {
			return nil, fmt.Errorf("project %s: wrote %d rows of %d", filepath.Base(f), n, want)
		}
		p.Files = append(p.Files, name)
	}
	m, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, manifestName), m, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another caller may have made the same projection meanwhile.
		if q, rerr := readProjection(dir); rerr == nil && slices.Equal(q.Sources, files) && sameSet(q.Columns, columns) {
			return projectionFiles(dir, q), nil
		}
		return nil, fmt.Errorf("project: %w", err)
	}
	return projectionFiles(dir, p), nil
}

func readProjection(dir string) (projection, error) {
	var p projection
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, err
	}
	if len(p.Files) != len(p.Sources) {
		return p, errors.New("project: bad manifest")
	}
	return p, nil
}

func projectionFiles(dir string, p projection) []string {
	out := make([]string, len(p.Files))
	for i, f := range p.Files {
		out[i] = filepath.Join(dir, filepath.Base(f))
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TextColumns reads up to limit rows of a Parquet file as text, column by column (NULL as
// ""), for the row-level disclosure check of custom outputs; it says whether the file had
// more rows.
func TextColumns(ctx context.Context, file string, limit int64) (names []string, cols [][]string, more bool, err error) {
	db, err := openLocal()
	if err != nil {
		return nil, nil, false, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, fmt.Sprintf("SELECT * FROM read_parquet('%s') LIMIT %d", strings.ReplaceAll(file, "'", "''"), limit+1))
	if err != nil {
		return nil, nil, false, err
	}
	defer rows.Close()
	if names, err = rows.Columns(); err != nil {
		return nil, nil, false, err
	}
	cols = make([][]string, len(names))
	vals := make([]sql.NullString, len(names))
	ptrs := make([]any, len(names))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var n int64
	for rows.Next() {
		if n++; n > limit {
			more = true
			break
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, false, err
		}
		for i, v := range vals {
			cols[i] = append(cols[i], v.String)
		}
	}
	return names, cols, more, rows.Err()
}

// Sample reads up to n rows of the given columns of a dataset's files, chosen at random by
// DuckDB's reservoir sampling, as one Arrow record (for a masked dev twin).
func Sample(ctx context.Context, files, columns []string, n int) (arrow.RecordBatch, error) {
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	db := sql.OpenDB(c)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	q := make([]string, len(columns))
	for i, col := range columns {
		q[i] = quoteIdent(col)
	}
	query := fmt.Sprintf("SELECT %s FROM read_parquet(%s) USING SAMPLE reservoir(%d ROWS)", strings.Join(q, ", "), quoteList(files), n)
	var rec arrow.RecordBatch
	err = conn.Raw(func(dc any) error {
		ar, err := duckdb.NewArrowFromConn(dc.(driver.Conn))
		if err != nil {
			return err
		}
		rr, err := ar.QueryContext(ctx, query)
		if err != nil {
			return err
		}
		defer rr.Release()
		var buf bytes.Buffer
		iw := ipc.NewWriter(&buf, ipc.WithSchema(rr.Schema()))
		for rr.Next() {
			if err := iw.Write(rr.RecordBatch()); err != nil {
				return err
			}
		}
		if err := rr.Err(); err != nil {
			return err
		}
		if err := iw.Close(); err != nil {
			return err
		}
		rec, err = ReadResult(&buf, int64(buf.Len())+1)
		return err
	})
	return rec, err
}

// Ident quotes a name as a DuckDB identifier, for SQL that Veil writes itself.
func Ident(name string) string { return quoteIdent(name) }

// ShapeFile writes to dst one Parquet file with the rows of src's column unit (as src holds
// it; NULL where src has no such column) and every other column of cols NULL of its catalog
// type: a table of the right shape
// over the persons of src that holds no value of its own. It is the dev twin of a vendor's
// fused table, built from the twin of the dataset it was matched with. It returns the rows
// written.
func ShapeFile(ctx context.Context, src, unit string, cols []Column, dst string) (int64, error) {
	db, err := openLocal()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	have, err := describe(ctx, db, []string{src})
	if err != nil {
		return 0, fmt.Errorf("shape: %w", err)
	}
	var items []string
	for _, c := range cols {
		if c.Name == unit && slices.ContainsFunc(have, func(f FileColumn) bool { return f.Name == unit }) {
			items = append(items, quoteIdent(unit))
			continue
		}
		if !typeName.MatchString(c.Type) {
			return 0, fmt.Errorf("shape: column %s has type %q, which SQL jobs cannot use", c.Name, c.Type)
		}
		items = append(items, fmt.Sprintf("CAST(NULL AS %s) AS %s", c.Type, quoteIdent(c.Name)))
	}
	n, err := copyParquet(ctx, db, items, []string{src}, dst)
	if err != nil {
		return 0, fmt.Errorf("shape: %w", err)
	}
	return n, nil
}
