package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/store"
)

// DB is a store.Store on SQLite.
type DB struct {
	w      *sql.DB // one connection, BEGIN IMMEDIATE
	r      *sql.DB // readers
	path   string
	marker string

	mu      sync.Mutex
	failed  error // latched failure, in full for the operator (Err): no more writes
	refusal error // what Update answers after it: no host path, as callers may show it to anyone
	hook    func(context.Context)
	closed  bool

	// pin is a reader connection held for the store's life: its shared lock on the database
	// file keeps any connection (of Veil or another program) that closes last from
	// checkpointing and deleting the write-ahead log, so the log is one file from open to
	// Close.
	pin *sql.Conn

	// wal is the write-ahead log, opened at the first flush and kept open so that its fsync
	// reports every write-back failure since then (a descriptor opened later would miss one
	// that SQLite's own fsync of a checkpoint consumed); walIno is its inode, which each
	// flush checks is still the file at the path. walMu serialises flushes.
	walMu  sync.Mutex
	wal    *os.File
	walIno uint64

	// Counts of the transactions of UpdateAsync, which the one writer connection runs one
	// at a time, so that the n-th to begin committing is the n-th to end. auditBegun counts
	// those that appended audit records as they begin to commit (whoever can see one has it
	// counted), auditEnded and allEnded those that appended records, and all, once their
	// commit has ended (its frames are in the log, or it failed); auditDurable and
	// allDurable are what the ended counts were before the last fsync of the log that
	// succeeded: the transactions they count are on disk. (A synchronous commit fsyncs the
	// log too, but not one that wrote nothing, so it is not counted.)
	auditBegun, auditEnded, allEnded atomic.Uint64
	auditDurable, allDurable         atomic.Uint64
	// syncedSize is the audit log's size after the last synchronous commit that appended
	// records: that commit's fsync put every record below it on disk (one writer, records
	// in the order of their commits).
	syncedSize atomic.Int64
	// shownSize is the largest log the signer's view has shown (ViewAudit), all of it on
	// disk: no later view ends before it.
	shownSize atomic.Int64
}

var _ store.Store = (*DB)(nil)

// driverName is SQLite with the write-ahead log kept when the last connection closes
// (SQLITE_FCNTL_PERSIST_WAL): then a missing -wal file always means that something else
// removed it, never that SQLite did after a checkpoint.
const driverName = "sqlite3-veil"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		return c.SetFileControlInt("main", sqlite3.SQLITE_FCNTL_PERSIST_WAL, 1)
	}})
}

// Options says how to open a store.
type Options struct {
	// Path is the database file.
	Path string
	// Marker is the shutdown marker file (default Path+".shutdown"): "open" while the store
	// is open, and after a clean shutdown "clean" with the SHA-256 of the database file.
	// Put it where whoever can write the data directory cannot (beside the audit signer's
	// state), so that it cannot be forged to match a changed store.
	Marker string
	// Create allows creating a new, empty store if Path does not exist. The daemon leaves
	// it false: a missing store is an error to report, not a fresh start.
	Create bool
	// Adopt accepts the store file as found even if the marker says it is not the file that
	// was shut down (changed, replaced, its write-ahead log missing, or no marker at all):
	// for an operator who restored a backup on purpose, or the first start of a store that
	// predates markers. The integrity check still runs, and so do the audit checks.
	Adopt bool
}

// Open opens the store at path, creating it if it does not exist.
func Open(ctx context.Context, path string) (*DB, error) {
	return OpenWith(ctx, Options{Path: path, Create: true})
}

// OpenWith opens a store after the start-up checks: that the file is the one last shut
// down (the shutdown marker's digest), that a store not shut down cleanly still has its
// write-ahead log, and PRAGMA quick_check. A failure is store.ErrDamaged with what to do.
func OpenWith(ctx context.Context, o Options) (*DB, error) {
	if o.Marker == "" {
		o.Marker = o.Path + ".shutdown"
	}
	if err := checkFiles(o); err != nil {
		return nil, err
	}
	// From here until a clean Close, a crash leaves "open": the next start knows.
	if err := writeMarker(o.Marker, marker{state: stateOpen}); err != nil {
		return nil, fmt.Errorf("open store: write the shutdown marker: %w", err)
	}
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_busy_timeout", "10000")
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	w, err := sql.Open(driverName, "file:"+o.Path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	w.SetMaxOpenConns(1)
	if err := quickCheck(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	if _, err := w.ExecContext(ctx, schema); err != nil {
		w.Close()
		return nil, fmt.Errorf("create store schema in %s: %w", o.Path, err)
	}
	// The store holds token hashes and the catalog: owner only.
	for _, f := range []string{o.Path, o.Path + "-wal", o.Path + "-shm"} {
		if err := os.Chmod(f, 0o600); err != nil && !os.IsNotExist(err) {
			w.Close()
			return nil, err
		}
	}
	q.Set("_txlock", "deferred")
	q.Set("mode", "ro")
	r, err := sql.Open(driverName, "file:"+o.Path+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	r.SetMaxOpenConns(8 + 1) // and the pin
	pin, err := r.Conn(ctx)
	if err == nil {
		// A read opens the log; in WAL mode the connection then keeps its shared lock.
		var n int
		err = pin.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n)
	}
	if err != nil {
		if pin != nil {
			pin.Close()
		}
		r.Close()
		w.Close()
		return nil, fmt.Errorf("open store: hold a reader connection: %w", err)
	}
	return &DB{w: w, r: r, pin: pin, path: o.Path, marker: o.Marker}, nil
}

// quickCheck runs PRAGMA quick_check: the b-tree structure of every page (not the content
// of rows; the audit log's own hashes cover its rows).
func quickCheck(ctx context.Context, w *sql.DB) error {
	rows, err := w.QueryContext(ctx, `PRAGMA quick_check(10)`)
	if err != nil {
		return fmt.Errorf("%w: the store file cannot be read as a database (%v): restore it from a backup", store.ErrDamaged, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("%w: integrity check of the store: %v", store.ErrDamaged, err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%w: the store file is damaged (%v): restore it from a backup", store.ErrDamaged, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: the store file is damaged (PRAGMA quick_check: %s): restore it from a backup", store.ErrDamaged, strings.Join(problems, "; "))
	}
	return nil
}

// Close closes the store. After a checkpoint of the write-ahead log into the database file
// it records the file's digest in the shutdown marker, so the next start can tell that the
// file was not changed, replaced or restored from an older copy while Veil was stopped. A
// store whose log could not be checkpointed (another process had it open) stays marked
// open: the next start recovers it as after a crash.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return nil
	}
	db.closed = true
	failed := db.failed
	db.mu.Unlock()
	rerr := errors.Join(db.pin.Close(), db.r.Close())
	var merr error
	if failed == nil {
		var busy, frames, done int
		err := db.w.QueryRow(`PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &frames, &done)
		if err == nil && busy == 0 {
			// The WAL is empty and nothing writes: the file is final, and stays so through
			// the close below.
			merr = db.markClean()
		}
	}
	db.walMu.Lock()
	if db.wal != nil {
		db.wal.Close()
		db.wal = nil
	}
	db.walMu.Unlock()
	return errors.Join(rerr, db.w.Close(), merr)
}

func (db *DB) markClean() error {
	m, err := digestFile(db.path)
	if err != nil {
		return err
	}
	return writeMarker(db.marker, m)
}

// View implements store.Store.
func (db *DB) View(ctx context.Context, fn func(store.Tx) error) error {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return db.fail("begin read", err)
	}
	defer tx.Rollback()
	return db.fail("read", fn(&txn{tx: tx}))
}

// Update implements store.Store. After a storage failure it refuses at once, without
// touching the disk (see Err).
func (db *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	if err := db.refused(); err != nil {
		return err
	}
	appended, end, err := db.write(ctx, db.w.BeginTx, fn, false)
	if err != nil {
		return err
	}
	if appended {
		for s := db.syncedSize.Load(); end > s && !db.syncedSize.CompareAndSwap(s, end); s = db.syncedSize.Load() {
		}
	}
	db.mu.Lock()
	hook := db.hook
	db.mu.Unlock()
	if appended && hook != nil {
		// What committed must be signed even if the caller has gone away.
		hook(context.WithoutCancel(ctx))
	}
	return nil
}

// UpdateAsync implements store.Store: the transaction commits with synchronous=NORMAL
// (in WAL mode: written to the log, not fsync'd), on the writer connection, which goes back
// to FULL before anything else uses it. flush fsyncs the write-ahead log; a failed fsync
// latches the store as a failed commit does (fail-stop).
func (db *DB) UpdateAsync(ctx context.Context, fn func(store.Tx) error) (func() error, error) {
	if err := db.refused(); err != nil {
		return nil, err
	}
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return nil, db.fail("begin write", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous=NORMAL`); err != nil {
		return nil, db.fail("begin write", err)
	}
	// The connection goes back to FULL whatever happened, a panic of fn too; one that
	// cannot is dropped (the pool opens a new one with the DSN's synchronous=FULL).
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous=FULL`); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if _, _, err := db.write(ctx, conn.BeginTx, fn, true); err != nil {
		return nil, err
	}
	// Its flush is done by any fsync of the log that began after its commit ended: one
	// that another flush made meanwhile (a job's start and the signer's view) is not
	// repeated.
	n := db.allEnded.Load()
	return func() error { return db.flushWAL(func() bool { return db.allDurable.Load() >= n }) }, nil
}

// refused is the latched refusal, if any: a stopped store refuses without touching the
// disk.
func (db *DB) refused() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.refusal
}

// write runs fn in a write transaction begun by begin (on the writer pool, or on one
// connection of it) and commits it when fn returns nil; it reports whether fn appended
// audit records. The transaction is rolled back if fn fails or panics, so that the one
// writer connection is never left holding it. An audit log that fn finds tampered with
// stops the store.
func (db *DB) write(ctx context.Context, begin func(context.Context, *sql.TxOptions) (*sql.Tx, error), fn func(store.Tx) error, async bool) (appended bool, end int64, err error) {
	tx, err := begin(ctx, nil)
	if err != nil {
		return false, 0, db.fail("begin write", err)
	}
	defer tx.Rollback() // after a commit: sql.ErrTxDone, nothing done
	t := &txn{tx: tx}
	if err := fn(t); err != nil {
		if errors.Is(err, audit.ErrTampered) {
			// The log in the store is damaged (rows deleted or changed by hand): writes
			// stop with the reason, rather than each failing on its own.
			db.Halt(err)
			return false, 0, db.refused()
		}
		return false, 0, db.fail("write", err)
	}
	audited := async && t.appended
	if audited {
		db.auditBegun.Add(1) // before the commit: whoever can see it has it counted (ViewAudit)
	}
	err = tx.Commit()
	if async {
		if audited {
			db.auditEnded.Add(1)
		}
		db.allEnded.Add(1)
	}
	if err != nil {
		return false, 0, db.fail("commit", err)
	}
	for _, fn := range t.committed {
		fn()
	}
	return t.appended, t.end, nil
}

// flushWAL fsyncs the write-ahead log, unless done says (under the flush lock) that a
// flush since has done what the caller needs.
func (db *DB) flushWAL(done func() bool) error {
	db.walMu.Lock()
	defer db.walMu.Unlock()
	db.mu.Lock()
	failed, closed := db.refusal, db.closed
	db.mu.Unlock()
	if failed != nil {
		return failed
	}
	if closed {
		return fmt.Errorf("%w: the store is closed", store.ErrUnavailable)
	}
	if done() {
		return nil
	}
	// The pin keeps SQLite from deleting the log, so a log that is not the one first opened
	// was removed or replaced by hand: SQLite goes on writing to the file it has open, which
	// no restart would read, and fsyncing the one at the path now would say nothing.
	fi, err := os.Stat(db.path + "-wal")
	if err != nil {
		return db.latch(fmt.Errorf("%w: the store stopped accepting writes: its write-ahead log cannot be found to flush it (%v): it was removed while the store was open; the operator must restart Veil, whose start-up checks say what to do", store.ErrUnavailable, err), nil)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	if db.wal == nil {
		f, err := os.Open(db.path + "-wal")
		if err == nil {
			fi, err = f.Stat()
		}
		if err != nil {
			return db.latch(fmt.Errorf("%w: the store stopped accepting writes: its write-ahead log cannot be opened to flush it (%v); the operator must check the disk and restart Veil", store.ErrUnavailable, err), nil)
		}
		db.wal, db.walIno = f, fi.Sys().(*syscall.Stat_t).Ino
	}
	if ino != db.walIno {
		return db.latch(fmt.Errorf("%w: the store stopped accepting writes: its write-ahead log %s was replaced while the store was open; the operator must restart Veil, whose start-up checks say what to do", store.ErrUnavailable, db.path+"-wal"), nil)
	}
	// What has ended before the fsync is in the log it syncs.
	audit, all := db.auditEnded.Load(), db.allEnded.Load()
	if err := db.wal.Sync(); err != nil {
		// As after a failed commit: the kernel may have dropped the pages.
		return db.latch(fmt.Errorf("%w: the store stopped accepting writes after a storage failure at %s (fsync of the write-ahead log: %v); the operator must check the disk and restart Veil",
			store.ErrUnavailable, time.Now().UTC().Format(time.RFC3339), err), nil)
	}
	raise(&db.auditDurable, audit)
	raise(&db.allDurable, all)
	return nil
}

// raise sets c to n if n is larger.
func raise(c *atomic.Uint64, n uint64) {
	for d := c.Load(); n > d && !c.CompareAndSwap(d, n); d = c.Load() {
	}
}

// ViewAudit is View for the audit signer (store.AuditLog): it shows no audit record that is
// not on disk. A record committed by UpdateAsync is visible before its flush; a checkpoint
// signed over it, durable in the signer's state, would outlive a machine crash that took the
// record from the write-ahead log, and the restart would find the log shorter than what was
// signed and refuse to start. So when the snapshot may hold such a record, the log it shows
// ends where the last synchronous commit with records, or an earlier view, left it (all on
// disk; the signer signs that much, and the rest with a later signing; never less than it
// was shown before, which it would take for a truncation), or, before either, the log is
// flushed before fn sees it (one fsync, which the record's own flush then finds done); a
// failed flush latches the store, as any failed fsync does.
func (db *DB) ViewAudit(ctx context.Context, fn func(store.Tx) error) error {
	tx, err := db.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return db.fail("begin read", err)
	}
	defer tx.Rollback()
	// The snapshot starts at the first read: take it before counting, so that every
	// record it shows was counted.
	var tables int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&tables); err != nil {
		return db.fail("read", err)
	}
	t := &txn{tx: tx}
	n, err := t.Size(ctx)
	if err != nil {
		return db.fail("read", err)
	}
	var view store.Tx = t
	if need := db.auditBegun.Load(); db.auditDurable.Load() < need {
		// What the last synchronous commit left, or an earlier view showed, is on disk.
		if end := max(db.syncedSize.Load(), db.shownSize.Load()); end > 0 {
			n = min(n, end)
			view = &sizedTxn{txn: t, max: n}
		} else if err := db.flushWAL(func() bool { return db.auditDurable.Load() >= need }); err != nil {
			return err
		}
	}
	for s := db.shownSize.Load(); n > s && !db.shownSize.CompareAndSwap(s, n); s = db.shownSize.Load() {
	}
	return db.fail("read", fn(view))
}

// sizedTxn is a read transaction whose audit log ends at max (ViewAudit).
type sizedTxn struct {
	*txn
	max int64
}

// Size implements audit.Reader.
func (t *sizedTxn) Size(ctx context.Context) (int64, error) {
	n, err := t.txn.Size(ctx)
	return min(n, t.max), err
}

// AfterAuditCommit makes Update call fn after each commit that appended audit records, in
// the committing goroutine, before Update returns: the daemon signs the new checkpoint
// there (audit.Checkpointer.Sync), so that an entry is signed when the request that made
// it returns. fn must not call Update with records of its own.
func (db *DB) AfterAuditCommit(fn func(ctx context.Context)) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.hook = fn
}

// Err implements store.Store.
func (db *DB) Err() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.failed
}

// Halt implements store.Store. Err reports reason in full; writes are refused with a
// message that does not repeat it (it may name host paths).
func (db *DB) Halt(reason error) {
	at := time.Now().UTC().Format(time.RFC3339)
	db.latch(fmt.Errorf("%w: the store stopped accepting writes at %s: %w", store.ErrUnavailable, at, reason),
		fmt.Errorf("%w: the store stopped accepting writes at %s after a failure the operator can find in the daemon log", store.ErrUnavailable, at))
}

// latch records the first failure; refusal, if not nil, is what Update answers instead.
func (db *DB) latch(err, refusal error) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.failed == nil {
		db.failed, db.refusal = err, refusal
		if refusal == nil {
			db.refusal = err
		}
	}
	return db.refusal
}

// fail classifies err from SQLite. An I/O error or a damaged page latches the failure, as
// PostgreSQL panics on a failed fsync (after one, the kernel may have dropped the dirty pages
// and a retry would "succeed" without them on disk): no more writes until a restart, when
// SQLite's recovery decides whether the transaction that hit it committed, whole or not at
// all. A full disk is a refusal of this transaction only: SQLite rolled it back whole.
func (db *DB) fail(what string, err error) error {
	if err == nil {
		return nil
	}
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case sqlite3.ErrFull:
		return fmt.Errorf("%w: the disk that holds the store is full (%v): nothing of this change was written; the operator must free space, then retry", store.ErrUnavailable, se)
	case sqlite3.ErrIoErr, sqlite3.ErrCorrupt, sqlite3.ErrNotADB, sqlite3.ErrCantOpen:
		switch se.ExtendedCode {
		case sqlite3.ErrIoErrFsync, sqlite3.ErrIoErrDirFsync:
			what += ", fsync"
		case sqlite3.ErrIoErrWrite:
			what += ", write"
		case sqlite3.ErrIoErrRead, sqlite3.ErrIoErrShortRead:
			what += ", read"
		}
		return db.latch(fmt.Errorf("%w: the store stopped accepting writes after a storage failure at %s (%s: %v); the operator must check the disk and restart Veil (the change that hit the failure is either wholly committed or not at all; a restart settles which)",
			store.ErrUnavailable, time.Now().UTC().Format(time.RFC3339), what, se), nil)
	}
	return err
}
