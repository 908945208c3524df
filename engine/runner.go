package engine

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/duckdb/duckdb-go/v2"
)

// ErrResultTooLarge is returned when a result exceeds the job's size limit.
var ErrResultTooLarge = errors.New("result exceeds the size limit")

// lockdown returns the session settings of a job's DuckDB, in the order they must be
// applied: paths are fixed before external access is switched off, and the configuration is
// locked last, so that nothing after it (the vendor's query included) can loosen it.
func lockdown(j *Job) []string {
	var files []string
	for _, t := range j.Tables {
		files = append(files, t.Files...)
	}
	threads := max(j.Threads, 1)
	s := []string{
		"SET autoinstall_known_extensions=false",
		"SET autoload_known_extensions=false",
		"SET temp_directory=''",
		"SET allowed_paths=" + quoteList(files),
		"SET enable_external_access=false",
		fmt.Sprintf("SET threads=%d", threads),
		"SET preserve_insertion_order=false",
	}
	if j.MemoryLimitMB > 0 {
		s = append(s, fmt.Sprintf("SET memory_limit='%dMB'", j.MemoryLimitMB))
	}
	return append(s, "SET lock_configuration=true")
}

// RunnerMain is the runner: it reads a Job (JSON) from stdin, runs it in a fresh, locked-down
// in-memory DuckDB and writes the exact result to result as one Arrow IPC stream. It runs
// inside the sandbox; result is the pipe to the daemon and the only place the result goes.
func RunnerMain(ctx context.Context, stdin io.Reader, result io.Writer) error {
	var j Job
	d := json.NewDecoder(io.LimitReader(stdin, 16<<20))
	d.DisallowUnknownFields()
	if err := d.Decode(&j); err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	return Run(ctx, &j, result)
}

// Run executes a job and streams its result to w. It is RunnerMain without the decoding, and
// the unsandboxed baseline of the benchmarks.
func Run(ctx context.Context, j *Job, w io.Writer) error {
	if j.SQL == "" || len(j.Tables) == 0 {
		return errors.New("job has no query or no tables")
	}
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return fmt.Errorf("open duckdb: %w", err)
	}
	defer c.Close()
	db := sql.OpenDB(c)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()

	// Views first: each exposes only the granted columns of its dataset's files.
	var views []string
	for _, t := range j.Tables {
		cols := make([]string, len(t.Columns))
		for i, col := range t.Columns {
			cols[i] = quoteIdent(col.Name)
		}
		views = append(views, fmt.Sprintf("CREATE VIEW %s AS SELECT %s FROM read_parquet(%s)",
			quoteIdent(t.Name), strings.Join(cols, ", "), quoteList(t.Files)))
	}
	for _, s := range append(lockdown(j), views...) {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("prepare session: %s: %w", strings.SplitN(s, " AS ", 2)[0], err)
		}
	}

	return conn.Raw(func(dc any) error {
		ar, err := duckdb.NewArrowFromConn(dc.(driver.Conn))
		if err != nil {
			return err
		}
		rr, err := ar.QueryContext(ctx, j.SQL)
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		defer rr.Release()
		lw := &limitWriter{w: w, n: j.MaxResultBytes}
		iw := ipc.NewWriter(lw, ipc.WithSchema(rr.Schema()))
		for rr.Next() {
			if err := iw.Write(rr.RecordBatch()); err != nil {
				return err
			}
		}
		if err := rr.Err(); err != nil {
			return fmt.Errorf("query: %w", err)
		}
		return iw.Close()
	})
}

// limitWriter fails once more than n bytes were written (n <= 0: no limit).
type limitWriter struct {
	w io.Writer
	n int64
	c int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	l.c += int64(len(p))
	if l.n > 0 && l.c > l.n {
		return 0, ErrResultTooLarge
	}
	return l.w.Write(p)
}
