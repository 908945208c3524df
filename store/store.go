package store

import (
	"context"
	"errors"
	"time"

	"github.com/veil-dp/veil/audit"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a unique key is taken.
var ErrConflict = errors.New("already exists")

// ErrDamaged is returned by a store's start-up checks: the store file is missing, damaged,
// or not the file that was shut down. The message says what to do.
var ErrDamaged = errors.New("store damaged")

// ErrUnavailable is returned when the store cannot take a write: its disk is full (nothing
// was written; retry once there is space) or it stopped after a storage failure (see
// Store.Err). The daemon maps it to 503 Service Unavailable.
var ErrUnavailable = errors.New("store unavailable")

// Principal is a caller and the hash of its token.
type Principal struct {
	ID        string
	Name      string
	Role      string
	Tenant    string
	TokenHash []byte
	Created   time.Time
	Revoked   bool
}

// Dataset is a registered dataset: its schema (JSON) and content version.
type Dataset struct {
	Name       string
	Version    string // sha256 of the files' contents
	Rows       int64
	Provider   string
	Schema     []byte   // JSON of policy.Schema
	Files      []string // absolute host paths, read only
	Registered time.Time
}

// Grant is a grant's indexed fields and its JSON body (policy.Grant).
type Grant struct {
	ID      string
	Tenant  string
	Status  string
	Body    []byte
	Updated time.Time
}

// Job is a job's indexed fields and its JSON body.
type Job struct {
	ID        string
	GrantID   string
	Tenant    string
	Submitter string
	Status    string
	IdemKey   string
	Body      []byte
	Created   time.Time
	Updated   time.Time
}

// JobFilter selects jobs; empty fields match all.
type JobFilter struct {
	Tenant   string
	GrantID  string
	Statuses []string
}

// Output is a job's protected output (never the exact result) and its release metadata.
type Output struct {
	JobID   string
	Data    []byte // Arrow IPC stream of the protected output
	Meta    []byte // JSON: gate report, mechanism, warnings
	Created time.Time
}

// Review is one reviewer's decision on an output.
type Review struct {
	JobID    string
	Reviewer string
	Decision string
	Reason   string
	At       time.Time
}

// Ledger rows. Amounts are integer units (package ledger): 1e-6 epsilon, 1e-15 delta. They
// are summed as integers by the ledger; the store never holds a float budget.

// Slice is the part of a dataset's total budget a grant received at approval.
type Slice struct {
	Grant   string
	Dataset string
	Eps     int64
	Delta   int64
	At      time.Time
}

// Spend is what one job spends (or reserved) on one dataset. Refunded spends count for
// nothing: the job never ran.
type Spend struct {
	Job      string
	Grant    string
	Dataset  string
	Eps      int64
	Delta    int64
	Refunded bool
	At       time.Time
}

// Feedback is a vendor's note on the quality of a dataset (数据质量反馈) and, once the
// dataset's provider has answered it, the resolution.
type Feedback struct {
	ID        string
	Dataset   string
	Column    string // empty: the dataset as a whole
	Tenant    string // the submitting vendor's tenant
	Submitter string // principal id
	Message   string
	Status    string // open | resolved
	Created   time.Time
	Resolver  string    // principal id; empty while open
	Note      string    // the provider's resolution note
	Resolved  time.Time // zero while open
}

// FeedbackFilter selects feedback; empty fields match all.
type FeedbackFilter struct {
	Dataset string
	Tenant  string
	Status  string
}

// Store opens transactions.
type Store interface {
	// View runs fn in a read-only snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a write transaction; it commits when fn returns nil. Writers are
	// serialised.
	Update(ctx context.Context, fn func(Tx) error) error
	// UpdateAsync is Update without waiting for the disk: it returns once the change is
	// committed and visible, which a crash of the daemon cannot undo, but a crash of the
	// machine (power cut, kernel panic) can, until flush returns nil or a later Update
	// commits (the log is written in order: a synchronous commit makes every change before
	// it durable too). flush forces the change to disk and may be called from any
	// goroutine, any number of times. Audit records it appends are signed by the next
	// signing (after a later Update, or at the next start), not before it returns: use it
	// only for changes that no request waits for.
	UpdateAsync(ctx context.Context, fn func(Tx) error) (flush func() error, err error)
	// Err returns the storage failure that stopped the store from accepting writes, or nil
	// while it is healthy: for the readiness check. The failure is latched: only a restart
	// (after the operator fixed the disk) clears it.
	Err() error
	// Halt stops the store accepting writes, as a storage failure would, for a reason found
	// elsewhere (the audit signer refusing the log).
	Halt(reason error)
	Close() error
}

// AuditLog adapts a Store to audit.Storage, for an audit.Checkpointer.
func AuditLog(s Store) audit.Storage { return auditLog{s} }

type auditLog struct{ s Store }

// auditViewer is a store whose View may show changes not yet on disk (UpdateAsync) and
// which opens, for the signer, a view that shows only audit records on disk.
type auditViewer interface {
	ViewAudit(ctx context.Context, fn func(Tx) error) error
}

// ViewLog is the signer's view of the log: only records on disk, where the store can show
// others (a checkpoint must never be signed over a record that a machine crash can take
// away).
func (a auditLog) ViewLog(ctx context.Context, fn func(audit.Reader) error) error {
	if v, ok := a.s.(auditViewer); ok {
		return v.ViewAudit(ctx, func(tx Tx) error { return fn(tx) })
	}
	return a.s.View(ctx, func(tx Tx) error { return fn(tx) })
}

// UpdateLog stores checkpoints without waiting for the disk: a checkpoint is a copy of
// what the signer's own state file holds (written durably before the signature goes
// anywhere), and one that a machine crash loses is stored again by the first signing after
// the restart.
func (a auditLog) UpdateLog(ctx context.Context, fn func(audit.Writer) error) error {
	_, err := a.s.UpdateAsync(ctx, func(tx Tx) error { return fn(tx) })
	return err
}

// Tx is what a transaction can read and write. Writes fail in a View.
type Tx interface {
	audit.Writer

	// AfterCommit has fn run once the transaction has committed (by Update: on disk; by
	// UpdateAsync: before its flush), in the committing goroutine, before its audit
	// records are signed; not at all if it is rolled back. fn must not write to the store.
	AfterCommit(fn func())

	PutPrincipal(ctx context.Context, p Principal) error
	PrincipalByToken(ctx context.Context, hash []byte) (Principal, error)
	Principal(ctx context.Context, id string) (Principal, error)
	Principals(ctx context.Context) ([]Principal, error)
	// PutTokenTerm gives the token with hash an end: the expiry of a principal's token, or
	// the end of the grace period of a token a rotation replaced. TokenTerm reads it back
	// (ErrNotFound: the token has no end).
	PutTokenTerm(ctx context.Context, hash []byte, principal string, ends time.Time) error
	TokenTerm(ctx context.Context, hash []byte) (principal string, ends time.Time, err error)
	// PutPreference sets one of a principal's preferences (key "zone": its IANA time zone);
	// Preference reads it back ("" when unset).
	PutPreference(ctx context.Context, principal, key, value string) error
	Preference(ctx context.Context, principal, key string) (string, error)

	PutDataset(ctx context.Context, d Dataset) error
	Dataset(ctx context.Context, name string) (Dataset, error)
	Datasets(ctx context.Context) ([]Dataset, error)
	// DeleteDataset removes a dataset from the catalog (a vendor's fused upload whose grant
	// ended); its files are the caller's to remove.
	DeleteDataset(ctx context.Context, name string) error

	PutGrant(ctx context.Context, g Grant) error
	Grant(ctx context.Context, id string) (Grant, error)
	Grants(ctx context.Context, tenant string) ([]Grant, error)

	PutJob(ctx context.Context, j Job) error
	Job(ctx context.Context, id string) (Job, error)
	JobByIdemKey(ctx context.Context, tenant, key string) (Job, error)
	Jobs(ctx context.Context, f JobFilter) ([]Job, error)

	PutOutput(ctx context.Context, o Output) error
	Output(ctx context.Context, jobID string) (Output, error)
	DeleteOutput(ctx context.Context, jobID string) error

	// SetBudget records a dataset's total budget the first time; later calls keep the first
	// total (re-registering new files does not renew what was spent on the same persons).
	SetBudget(ctx context.Context, dataset string, eps, delta int64) error
	Budget(ctx context.Context, dataset string) (eps, delta int64, err error)
	PutSlice(ctx context.Context, s Slice) error
	// Slices lists slices by grant or by dataset (empty: any).
	Slices(ctx context.Context, grant, dataset string) ([]Slice, error)
	// DeleteSlices removes every slice of grant: only for a grant that never became active
	// (no job can have spent from it).
	DeleteSlices(ctx context.Context, grant string) error
	PutSpend(ctx context.Context, s Spend) error
	// Spends lists spends by grant, dataset or job (empty: any).
	Spends(ctx context.Context, grant, dataset, job string) ([]Spend, error)

	// CheckpointsFrom returns at most limit checkpoints of size ≥ from, in order of size:
	// one page of the list, for GET /v1/audit/checkpoints.
	CheckpointsFrom(ctx context.Context, from int64, limit int) ([]audit.Checkpoint, error)
	// LatestCheckpoint returns the audit log's newest signed checkpoint (ErrNotFound for
	// none) without reading the others, for the metrics of every scrape.
	LatestCheckpoint(ctx context.Context) (audit.Checkpoint, error)

	AddReview(ctx context.Context, r Review) error
	Reviews(ctx context.Context, jobID string) ([]Review, error)

	PutFeedback(ctx context.Context, f Feedback) error
	Feedback(ctx context.Context, id string) (Feedback, error)
	// Feedbacks lists feedback, oldest first.
	Feedbacks(ctx context.Context, f FeedbackFilter) ([]Feedback, error)
}
