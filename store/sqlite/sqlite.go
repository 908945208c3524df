package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/store"
)

const schema = `
CREATE TABLE IF NOT EXISTS principals (
	id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, tenant TEXT NOT NULL,
	token_hash BLOB NOT NULL UNIQUE, created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS preferences (
	principal TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (principal, key));
CREATE TABLE IF NOT EXISTS token_terms (
	hash BLOB PRIMARY KEY, principal TEXT NOT NULL, ends INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
	name TEXT PRIMARY KEY, version TEXT NOT NULL, rows INTEGER NOT NULL, provider TEXT NOT NULL, schema TEXT NOT NULL,
	files TEXT NOT NULL, registered INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
	id TEXT PRIMARY KEY, tenant TEXT NOT NULL, status TEXT NOT NULL, body TEXT NOT NULL, updated INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS grants_tenant ON grants(tenant);
CREATE TABLE IF NOT EXISTS jobs (
	id TEXT PRIMARY KEY, grant_id TEXT NOT NULL, tenant TEXT NOT NULL, submitter TEXT NOT NULL,
	status TEXT NOT NULL, idem_key TEXT NOT NULL, body TEXT NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs(tenant, idem_key) WHERE idem_key != '';
CREATE INDEX IF NOT EXISTS jobs_grant ON jobs(grant_id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS outputs (
	job_id TEXT PRIMARY KEY, data BLOB NOT NULL, meta TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
	job_id TEXT NOT NULL, reviewer TEXT NOT NULL, decision TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL,
	PRIMARY KEY (job_id, reviewer));
CREATE TABLE IF NOT EXISTS budgets (
	dataset TEXT PRIMARY KEY, eps INTEGER NOT NULL CHECK (eps >= 0), delta INTEGER NOT NULL CHECK (delta >= 0));
CREATE TABLE IF NOT EXISTS budget_slices (
	grant_id TEXT NOT NULL, dataset TEXT NOT NULL, eps INTEGER NOT NULL CHECK (eps >= 0), delta INTEGER NOT NULL CHECK (delta >= 0),
	at INTEGER NOT NULL, PRIMARY KEY (grant_id, dataset));
CREATE INDEX IF NOT EXISTS budget_slices_dataset ON budget_slices(dataset);
CREATE TABLE IF NOT EXISTS budget_spends (
	job_id TEXT NOT NULL, grant_id TEXT NOT NULL, dataset TEXT NOT NULL, eps INTEGER NOT NULL CHECK (eps >= 0),
	delta INTEGER NOT NULL CHECK (delta >= 0), refunded INTEGER NOT NULL DEFAULT 0, at INTEGER NOT NULL,
	PRIMARY KEY (job_id, dataset));
CREATE INDEX IF NOT EXISTS budget_spends_grant ON budget_spends(grant_id, dataset);
CREATE TABLE IF NOT EXISTS feedback (
	id TEXT PRIMARY KEY, dataset TEXT NOT NULL, column_name TEXT NOT NULL, tenant TEXT NOT NULL, submitter TEXT NOT NULL,
	message TEXT NOT NULL, status TEXT NOT NULL, created INTEGER NOT NULL, resolver TEXT NOT NULL DEFAULT '',
	note TEXT NOT NULL DEFAULT '', resolved INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS feedback_dataset ON feedback(dataset, status);
CREATE INDEX IF NOT EXISTS feedback_tenant ON feedback(tenant);
CREATE TABLE IF NOT EXISTS audit_records (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit_hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit_checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL);
`

// txn is one transaction. appended records whether it appended audit records, for the
// after-commit hook.
type txn struct {
	tx        *sql.Tx
	appended  bool
	end       int64    // one past the last audit record appended
	committed []func() // AfterCommit
}

// AfterCommit implements store.Tx.
func (t *txn) AfterCommit(fn func()) { t.committed = append(t.committed, fn) }

func ms(t time.Time) int64 { return t.UnixMilli() }
func tm(v int64) time.Time { return time.UnixMilli(v).UTC() }

func wrap(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	var se sqlite3.Error
	if errors.As(err, &se) && se.Code == sqlite3.ErrConstraint {
		return fmt.Errorf("%s: %w", what, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (t *txn) exec(ctx context.Context, what, q string, args ...any) error {
	_, err := t.tx.ExecContext(ctx, q, args...)
	return wrap(err, what)
}

// --- principals

const principalCols = `id, name, role, tenant, token_hash, created, revoked`

func scanPrincipal(s interface{ Scan(...any) error }) (store.Principal, error) {
	var p store.Principal
	var created int64
	err := s.Scan(&p.ID, &p.Name, &p.Role, &p.Tenant, &p.TokenHash, &created, &p.Revoked)
	p.Created = tm(created)
	return p, err
}

func (t *txn) PutPrincipal(ctx context.Context, p store.Principal) error {
	return t.exec(ctx, "put principal", `INSERT INTO principals (`+principalCols+`) VALUES (?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET name=excluded.name, role=excluded.role, tenant=excluded.tenant,
		token_hash=excluded.token_hash, revoked=excluded.revoked`,
		p.ID, p.Name, p.Role, p.Tenant, p.TokenHash, ms(p.Created), p.Revoked)
}

func (t *txn) PrincipalByToken(ctx context.Context, hash []byte) (store.Principal, error) {
	p, err := scanPrincipal(t.tx.QueryRowContext(ctx, `SELECT `+principalCols+` FROM principals WHERE token_hash = ?`, hash))
	return p, wrap(err, "principal")
}

func (t *txn) Principal(ctx context.Context, id string) (store.Principal, error) {
	p, err := scanPrincipal(t.tx.QueryRowContext(ctx, `SELECT `+principalCols+` FROM principals WHERE id = ?`, id))
	return p, wrap(err, "principal "+id)
}

func (t *txn) Principals(ctx context.Context) ([]store.Principal, error) {
	return queryAll(ctx, t, "principals", scanPrincipal, `SELECT `+principalCols+` FROM principals ORDER BY created, id`)
}

func (t *txn) PutPreference(ctx context.Context, principal, key, value string) error {
	return t.exec(ctx, "put preference", `INSERT INTO preferences (principal, key, value) VALUES (?,?,?)
		ON CONFLICT(principal, key) DO UPDATE SET value=excluded.value`, principal, key, value)
}

func (t *txn) Preference(ctx context.Context, principal, key string) (string, error) {
	var v string
	err := t.tx.QueryRowContext(ctx, `SELECT value FROM preferences WHERE principal = ? AND key = ?`, principal, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, wrap(err, "preference")
}

func (t *txn) PutTokenTerm(ctx context.Context, hash []byte, principal string, ends time.Time) error {
	return t.exec(ctx, "put token term", `INSERT INTO token_terms (hash, principal, ends) VALUES (?,?,?)
		ON CONFLICT(hash) DO UPDATE SET principal=excluded.principal, ends=excluded.ends`, hash, principal, ms(ends))
}

func (t *txn) TokenTerm(ctx context.Context, hash []byte) (string, time.Time, error) {
	var principal string
	var ends int64
	err := t.tx.QueryRowContext(ctx, `SELECT principal, ends FROM token_terms WHERE hash = ?`, hash).Scan(&principal, &ends)
	return principal, tm(ends), wrap(err, "token term")
}

func queryAll[T any](ctx context.Context, t *txn, what string, scan func(interface{ Scan(...any) error }) (T, error), q string, args ...any) ([]T, error) {
	rows, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, wrap(err, what)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, wrap(err, what)
		}
		out = append(out, v)
	}
	return out, wrap(rows.Err(), what)
}

// --- datasets

const datasetCols = `name, version, rows, provider, schema, files, registered`

func scanDataset(s interface{ Scan(...any) error }) (store.Dataset, error) {
	var d store.Dataset
	var files string
	var reg int64
	if err := s.Scan(&d.Name, &d.Version, &d.Rows, &d.Provider, &d.Schema, &files, &reg); err != nil {
		return d, err
	}
	d.Registered = tm(reg)
	return d, json.Unmarshal([]byte(files), &d.Files)
}

func (t *txn) PutDataset(ctx context.Context, d store.Dataset) error {
	files, _ := json.Marshal(d.Files)
	return t.exec(ctx, "put dataset", `INSERT INTO datasets (`+datasetCols+`) VALUES (?,?,?,?,?,?,?)
		ON CONFLICT(name) DO UPDATE SET version=excluded.version, rows=excluded.rows, provider=excluded.provider,
		schema=excluded.schema, files=excluded.files, registered=excluded.registered`,
		d.Name, d.Version, d.Rows, d.Provider, string(d.Schema), string(files), ms(d.Registered))
}

func (t *txn) Dataset(ctx context.Context, name string) (store.Dataset, error) {
	d, err := scanDataset(t.tx.QueryRowContext(ctx, `SELECT `+datasetCols+` FROM datasets WHERE name = ?`, name))
	return d, wrap(err, "dataset "+name)
}

func (t *txn) DeleteDataset(ctx context.Context, name string) error {
	return t.exec(ctx, "delete dataset", `DELETE FROM datasets WHERE name = ?`, name)
}

func (t *txn) Datasets(ctx context.Context) ([]store.Dataset, error) {
	return queryAll(ctx, t, "datasets", scanDataset, `SELECT `+datasetCols+` FROM datasets ORDER BY name`)
}

// --- grants

const grantCols = `id, tenant, status, body, updated`

func scanGrant(s interface{ Scan(...any) error }) (store.Grant, error) {
	var g store.Grant
	var upd int64
	err := s.Scan(&g.ID, &g.Tenant, &g.Status, &g.Body, &upd)
	g.Updated = tm(upd)
	return g, err
}

func (t *txn) PutGrant(ctx context.Context, g store.Grant) error {
	return t.exec(ctx, "put grant", `INSERT INTO grants (`+grantCols+`) VALUES (?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET status=excluded.status, body=excluded.body, updated=excluded.updated`,
		g.ID, g.Tenant, g.Status, string(g.Body), ms(g.Updated))
}

func (t *txn) Grant(ctx context.Context, id string) (store.Grant, error) {
	g, err := scanGrant(t.tx.QueryRowContext(ctx, `SELECT `+grantCols+` FROM grants WHERE id = ?`, id))
	return g, wrap(err, "grant "+id)
}

func (t *txn) Grants(ctx context.Context, tenant string) ([]store.Grant, error) {
	if tenant == "" {
		return queryAll(ctx, t, "grants", scanGrant, `SELECT `+grantCols+` FROM grants ORDER BY id`)
	}
	return queryAll(ctx, t, "grants", scanGrant, `SELECT `+grantCols+` FROM grants WHERE tenant = ? ORDER BY id`, tenant)
}

// --- jobs

const jobCols = `id, grant_id, tenant, submitter, status, idem_key, body, created, updated`

func scanJob(s interface{ Scan(...any) error }) (store.Job, error) {
	var j store.Job
	var c, u int64
	err := s.Scan(&j.ID, &j.GrantID, &j.Tenant, &j.Submitter, &j.Status, &j.IdemKey, &j.Body, &c, &u)
	j.Created, j.Updated = tm(c), tm(u)
	return j, err
}

func (t *txn) PutJob(ctx context.Context, j store.Job) error {
	return t.exec(ctx, "put job", `INSERT INTO jobs (`+jobCols+`) VALUES (?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET status=excluded.status, body=excluded.body, updated=excluded.updated`,
		j.ID, j.GrantID, j.Tenant, j.Submitter, j.Status, j.IdemKey, string(j.Body), ms(j.Created), ms(j.Updated))
}

func (t *txn) Job(ctx context.Context, id string) (store.Job, error) {
	j, err := scanJob(t.tx.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = ?`, id))
	return j, wrap(err, "job "+id)
}

func (t *txn) JobByIdemKey(ctx context.Context, tenant, key string) (store.Job, error) {
	j, err := scanJob(t.tx.QueryRowContext(ctx, `SELECT `+jobCols+` FROM jobs WHERE tenant = ? AND idem_key = ?`, tenant, key))
	return j, wrap(err, "job")
}

func (t *txn) Jobs(ctx context.Context, f store.JobFilter) ([]store.Job, error) {
	var where []string
	var args []any
	if f.Tenant != "" {
		where, args = append(where, "tenant = ?"), append(args, f.Tenant)
	}
	if f.GrantID != "" {
		where, args = append(where, "grant_id = ?"), append(args, f.GrantID)
	}
	if len(f.Statuses) > 0 {
		where = append(where, "status IN (?"+strings.Repeat(",?", len(f.Statuses)-1)+")")
		for _, s := range f.Statuses {
			args = append(args, s)
		}
	}
	q := `SELECT ` + jobCols + ` FROM jobs`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return queryAll(ctx, t, "jobs", scanJob, q+" ORDER BY created, id", args...)
}

// --- outputs and reviews

func (t *txn) PutOutput(ctx context.Context, o store.Output) error {
	return t.exec(ctx, "put output", `INSERT INTO outputs (job_id, data, meta, created) VALUES (?,?,?,?)
		ON CONFLICT(job_id) DO UPDATE SET data=excluded.data, meta=excluded.meta`,
		o.JobID, o.Data, string(o.Meta), ms(o.Created))
}

func (t *txn) Output(ctx context.Context, jobID string) (store.Output, error) {
	var o store.Output
	var c int64
	err := t.tx.QueryRowContext(ctx, `SELECT job_id, data, meta, created FROM outputs WHERE job_id = ?`, jobID).Scan(&o.JobID, &o.Data, &o.Meta, &c)
	o.Created = tm(c)
	return o, wrap(err, "output of job "+jobID)
}

func (t *txn) DeleteOutput(ctx context.Context, jobID string) error {
	return t.exec(ctx, "delete output", `DELETE FROM outputs WHERE job_id = ?`, jobID)
}

func (t *txn) SetBudget(ctx context.Context, dataset string, eps, delta int64) error {
	return t.exec(ctx, "set budget", `INSERT INTO budgets (dataset, eps, delta) VALUES (?, ?, ?) ON CONFLICT (dataset) DO NOTHING`, dataset, eps, delta)
}

func (t *txn) Budget(ctx context.Context, dataset string) (int64, int64, error) {
	var eps, delta int64
	err := t.tx.QueryRowContext(ctx, `SELECT eps, delta FROM budgets WHERE dataset = ?`, dataset).Scan(&eps, &delta)
	return eps, delta, wrap(err, "budget")
}

func (t *txn) PutSlice(ctx context.Context, s store.Slice) error {
	return t.exec(ctx, "put slice", `INSERT INTO budget_slices (grant_id, dataset, eps, delta, at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (grant_id, dataset) DO UPDATE SET eps = excluded.eps, delta = excluded.delta, at = excluded.at`,
		s.Grant, s.Dataset, s.Eps, s.Delta, ms(s.At))
}

func (t *txn) Slices(ctx context.Context, grant, dataset string) ([]store.Slice, error) {
	return queryAll(ctx, t, "slices", func(r interface{ Scan(...any) error }) (store.Slice, error) {
		var s store.Slice
		var at int64
		err := r.Scan(&s.Grant, &s.Dataset, &s.Eps, &s.Delta, &at)
		s.At = tm(at)
		return s, err
	}, `SELECT grant_id, dataset, eps, delta, at FROM budget_slices WHERE (? = '' OR grant_id = ?) AND (? = '' OR dataset = ?) ORDER BY grant_id, dataset`,
		grant, grant, dataset, dataset)
}

func (t *txn) DeleteSlices(ctx context.Context, grant string) error {
	return t.exec(ctx, "delete slices", `DELETE FROM budget_slices WHERE grant_id = ?`, grant)
}

func (t *txn) PutSpend(ctx context.Context, s store.Spend) error {
	return t.exec(ctx, "put spend", `INSERT INTO budget_spends (job_id, grant_id, dataset, eps, delta, refunded, at) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (job_id, dataset) DO UPDATE SET refunded = excluded.refunded`,
		s.Job, s.Grant, s.Dataset, s.Eps, s.Delta, s.Refunded, ms(s.At))
}

func (t *txn) Spends(ctx context.Context, grant, dataset, job string) ([]store.Spend, error) {
	return queryAll(ctx, t, "spends", func(r interface{ Scan(...any) error }) (store.Spend, error) {
		var s store.Spend
		var at int64
		err := r.Scan(&s.Job, &s.Grant, &s.Dataset, &s.Eps, &s.Delta, &s.Refunded, &at)
		s.At = tm(at)
		return s, err
	}, `SELECT job_id, grant_id, dataset, eps, delta, refunded, at FROM budget_spends
		WHERE (? = '' OR grant_id = ?) AND (? = '' OR dataset = ?) AND (? = '' OR job_id = ?) ORDER BY at, job_id, dataset`,
		grant, grant, dataset, dataset, job, job)
}

func (t *txn) AddReview(ctx context.Context, r store.Review) error {
	return t.exec(ctx, "add review", `INSERT INTO reviews (job_id, reviewer, decision, reason, at) VALUES (?,?,?,?,?)`,
		r.JobID, r.Reviewer, r.Decision, r.Reason, ms(r.At))
}

func (t *txn) Reviews(ctx context.Context, jobID string) ([]store.Review, error) {
	return queryAll(ctx, t, "reviews", func(s interface{ Scan(...any) error }) (store.Review, error) {
		var r store.Review
		var at int64
		err := s.Scan(&r.JobID, &r.Reviewer, &r.Decision, &r.Reason, &at)
		r.At = tm(at)
		return r, err
	}, `SELECT job_id, reviewer, decision, reason, at FROM reviews WHERE job_id = ? ORDER BY at`, jobID)
}

// --- feedback

const feedbackCols = `id, dataset, column_name, tenant, submitter, message, status, created, resolver, note, resolved`

func scanFeedback(s interface{ Scan(...any) error }) (store.Feedback, error) {
	var f store.Feedback
	var c, r int64
	err := s.Scan(&f.ID, &f.Dataset, &f.Column, &f.Tenant, &f.Submitter, &f.Message, &f.Status, &c, &f.Resolver, &f.Note, &r)
	f.Created = tm(c)
	if r != 0 {
		f.Resolved = tm(r)
	}
	return f, err
}

func (t *txn) PutFeedback(ctx context.Context, f store.Feedback) error {
	var resolved int64
	if !f.Resolved.IsZero() {
		resolved = ms(f.Resolved)
	}
	return t.exec(ctx, "put feedback", `INSERT INTO feedback (`+feedbackCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET status=excluded.status, resolver=excluded.resolver, note=excluded.note, resolved=excluded.resolved`,
		f.ID, f.Dataset, f.Column, f.Tenant, f.Submitter, f.Message, f.Status, ms(f.Created), f.Resolver, f.Note, resolved)
}

func (t *txn) Feedback(ctx context.Context, id string) (store.Feedback, error) {
	f, err := scanFeedback(t.tx.QueryRowContext(ctx, `SELECT `+feedbackCols+` FROM feedback WHERE id = ?`, id))
	return f, wrap(err, "feedback "+id)
}

func (t *txn) Feedbacks(ctx context.Context, f store.FeedbackFilter) ([]store.Feedback, error) {
	return queryAll(ctx, t, "feedback", scanFeedback, `SELECT `+feedbackCols+` FROM feedback
		WHERE (? = '' OR dataset = ?) AND (? = '' OR tenant = ?) AND (? = '' OR status = ?) ORDER BY created, id`,
		f.Dataset, f.Dataset, f.Tenant, f.Tenant, f.Status, f.Status)
}

// --- audit.Writer

var _ audit.Writer = (*txn)(nil)

// Size is one past the highest index that any record or stored hash occupies, not the
// number of rows: a record row deleted by hand must not make the next append reuse a taken
// index (and fail on every append after it). The missing record stays for Verify to find.
func (t *txn) Size(ctx context.Context) (int64, error) {
	var rec, hash sql.NullInt64
	err := t.tx.QueryRowContext(ctx, `SELECT (SELECT MAX(idx) FROM audit_records), (SELECT MAX(idx) FROM audit_hashes)`).Scan(&rec, &hash)
	if err != nil {
		return 0, wrap(err, "audit size")
	}
	var n int64
	if rec.Valid {
		n = rec.Int64 + 1
	}
	if hash.Valid {
		n = max(n, recordsWithHashes(hash.Int64+1))
	}
	return n, nil
}

// recordsWithHashes is how many records have stored hashes when stored-hash indexes
// [0, h) are taken: the least r with tlog.StoredHashIndex(0, r) ≥ h.
func recordsWithHashes(h int64) int64 {
	lo, hi := int64(0), h
	for lo < hi {
		mid := lo + (hi-lo)/2
		if tlog.StoredHashIndex(0, mid) >= h {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// missingHash is a stored tree hash that is not there: every hash below the log's size is
// written with its record, so a missing one was deleted (or lost with a damaged page). It is
// audit.ErrTampered, which stops the store (Update): no append can compute its hashes, and a
// daemon answering "internal error" to every request would hide why.
func missingHash(idx int64) error {
	return fmt.Errorf("%w: audit tree hash %d is missing from the store (%w): audit rows were deleted or damaged; run veil audit verify and restore the store from a backup", audit.ErrTampered, idx, store.ErrNotFound)
}

func (t *txn) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	if contiguous(indexes) {
		// Verify and the signer read runs of hashes: one range scan, not one query each.
		rows, err := t.tx.QueryContext(ctx, `SELECT idx, hash FROM audit_hashes WHERE idx >= ? AND idx < ? ORDER BY idx`, indexes[0], indexes[0]+int64(len(indexes)))
		if err != nil {
			return nil, wrap(err, "read audit hashes")
		}
		defer rows.Close()
		next := 0
		for rows.Next() {
			var idx int64
			var h []byte
			if err := rows.Scan(&idx, &h); err != nil {
				return nil, wrap(err, "read audit hashes")
			}
			if idx != indexes[next] {
				break
			}
			if len(h) != tlog.HashSize {
				return nil, fmt.Errorf("%w: audit hash %d: stored hash has %d bytes, want %d", audit.ErrTampered, idx, len(h), tlog.HashSize)
			}
			copy(out[next][:], h)
			next++
		}
		if err := rows.Err(); err != nil {
			return nil, wrap(err, "read audit hashes")
		}
		if next < len(indexes) {
			return nil, missingHash(indexes[next])
		}
		return out, nil
	}
	stmt, err := t.tx.PrepareContext(ctx, `SELECT hash FROM audit_hashes WHERE idx = ?`)
	if err != nil {
		return nil, wrap(err, "read audit hashes")
	}
	defer stmt.Close()
	for i, idx := range indexes {
		var h []byte
		if err := stmt.QueryRowContext(ctx, idx).Scan(&h); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil, missingHash(idx)
			}
			return nil, wrap(err, fmt.Sprintf("audit hash %d", idx))
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("%w: audit hash %d: stored hash has %d bytes, want %d", audit.ErrTampered, idx, len(h), tlog.HashSize)
		}
		copy(out[i][:], h)
	}
	return out, nil
}

func (t *txn) ReadRecords(ctx context.Context, from, to int64) ([][]byte, error) {
	return queryAll(ctx, t, "audit records", func(s interface{ Scan(...any) error }) ([]byte, error) {
		var b []byte
		err := s.Scan(&b)
		return b, err
	}, `SELECT data FROM audit_records WHERE idx >= ? AND idx < ? ORDER BY idx`, from, to)
}

func (t *txn) Checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	return queryAll(ctx, t, "audit checkpoints", func(s interface{ Scan(...any) error }) (audit.Checkpoint, error) {
		var c audit.Checkpoint
		err := s.Scan(&c.Size, &c.Note)
		return c, err
	}, `SELECT size, note FROM audit_checkpoints ORDER BY size`)
}

func (t *txn) CheckpointsFrom(ctx context.Context, from int64, limit int) ([]audit.Checkpoint, error) {
	return queryAll(ctx, t, "audit checkpoints", func(s interface{ Scan(...any) error }) (audit.Checkpoint, error) {
		var c audit.Checkpoint
		err := s.Scan(&c.Size, &c.Note)
		return c, err
	}, `SELECT size, note FROM audit_checkpoints WHERE size >= ? ORDER BY size LIMIT ?`, from, limit)
}

func (t *txn) LatestCheckpoint(ctx context.Context) (audit.Checkpoint, error) {
	var c audit.Checkpoint
	err := t.tx.QueryRowContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&c.Size, &c.Note)
	return c, wrap(err, "latest audit checkpoint")
}

func contiguous(idx []int64) bool {
	if len(idx) < 2 {
		return false
	}
	for i := 1; i < len(idx); i++ {
		if idx[i] != idx[i-1]+1 {
			return false
		}
	}
	return true
}

func (t *txn) AppendRecord(ctx context.Context, index int64, data []byte, hashes []tlog.Hash) error {
	t.appended, t.end = true, max(t.end, index+1)
	if err := t.exec(ctx, "append audit record", `INSERT INTO audit_records (idx, data) VALUES (?, ?)`, index, data); err != nil {
		return err
	}
	first := tlog.StoredHashIndex(0, index)
	for i, h := range hashes {
		if err := t.exec(ctx, "append audit hash", `INSERT INTO audit_hashes (idx, hash) VALUES (?, ?)`, first+int64(i), h[:]); err != nil {
			return err
		}
	}
	return nil
}

func (t *txn) AddCheckpoint(ctx context.Context, size int64, signedNote []byte) error {
	return t.exec(ctx, "add audit checkpoint", `INSERT INTO audit_checkpoints (size, note) VALUES (?, ?)
		ON CONFLICT(size) DO UPDATE SET note=excluded.note`, size, signedNote)
}
