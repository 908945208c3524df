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

// Store opens transactions.
type Store interface {
	// View runs fn in a read-only snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// Update runs fn in a write transaction; it commits when fn returns nil. Writers are
	// serialised.
	Update(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is what a transaction can read and write. Writes fail in a View.
type Tx interface {
	audit.Writer

	PutPrincipal(ctx context.Context, p Principal) error
	PrincipalByToken(ctx context.Context, hash []byte) (Principal, error)
	Principal(ctx context.Context, id string) (Principal, error)
	Principals(ctx context.Context) ([]Principal, error)

	PutDataset(ctx context.Context, d Dataset) error
	Dataset(ctx context.Context, name string) (Dataset, error)
	Datasets(ctx context.Context) ([]Dataset, error)

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

	AddReview(ctx context.Context, r Review) error
	Reviews(ctx context.Context, jobID string) ([]Review, error)
}
