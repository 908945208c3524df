package engine

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
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
	src := fmt.Sprintf("SELECT %s FROM read_parquet(%s)", strings.Join(cols, ", "), quoteList(t.Files))
	if _, err := db.ExecContext(ctx, fmt.Sprintf("COPY (%s) TO '%s' (FORMAT parquet, COMPRESSION zstd)", src, strings.ReplaceAll(dst, "'", "''"))); err != nil {
		return 0, fmt.Errorf("project %s: %w", t.Name, err)
	}
	var n int64
	if err := db.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) FROM read_parquet('%s')", strings.ReplaceAll(dst, "'", "''"))).Scan(&n); err != nil {
		return 0, err
	}
	return n, nil
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
