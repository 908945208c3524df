// Package api holds the JSON types of Veil's HTTP API /v1, shared by the daemon and the
// client. It holds data only: no behaviour, no I/O.
package api

import (
	"encoding/json"
	"time"
)

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"` // what was wrong and what to do; never a data value
	Kind  string `json:"kind"`  // not_found, forbidden, invalid, conflict, budget_exhausted, too_large, rate_limited, unavailable, unauthenticated, internal
}

// CreatePrincipal asks for a new principal and its token.
type CreatePrincipal struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Tenant string `json:"tenant,omitempty"`
	// Expires, if set, ends the token after this long ("30d", "12h"); after it, the token is
	// refused with a message saying so.
	Expires string `json:"expires,omitempty"`
}

// Principal describes a principal; Token is set only once, when it is created.
type Principal struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Tenant  string    `json:"tenant,omitempty"`
	Created time.Time `json:"created"`
	Revoked bool      `json:"revoked,omitempty"`
	Token   string    `json:"token,omitempty"`
	Expires time.Time `json:"expires,omitzero"` // when the token ends, if it does
	Zone    string    `json:"zone,omitempty"`   // the time zone the principal reads times in (whoami: UTC unless set)
}

// SetZone is a principal's choice of the IANA time zone it reads times in (the console's
// dates): "UTC", "Asia/Shanghai", ….
type SetZone struct {
	Zone string `json:"zone"`
}

// RegisterDataset registers files (paths on the daemon's host) under a schema (YAML text).
type RegisterDataset struct {
	Schema string   `json:"schema"`
	Files  []string `json:"files"`
	// Uploads are completed uploads (their IDs) registered with, or instead of, Files.
	Uploads []string `json:"uploads,omitempty"`
}

// Dataset is a catalog entry.
type Dataset struct {
	Name       string          `json:"name"`
	Version    string          `json:"version"`
	Provider   string          `json:"provider"`
	Rows       int64           `json:"rows"`
	Files      int             `json:"files"`
	Registered time.Time       `json:"registered"`
	Schema     json.RawMessage `json:"schema"`
}

// ApplyGrant is a vendor's application.
type ApplyGrant struct {
	Scenario string          `json:"scenario"`
	Purpose  string          `json:"purpose"`
	Datasets []DatasetAccess `json:"datasets"`
	Modes    []string        `json:"modes"`
	K        int             `json:"k"`
	RoundTo  int             `json:"round_to"`
	Epsilon  float64         `json:"epsilon,omitempty"`
	Delta    float64         `json:"delta,omitempty"`
	MaxQuery float64         `json:"max_query_epsilon,omitempty"` // per-job cap (default 1)
	ValidFor string          `json:"valid_for"`                   // Go duration or N"d"
}

// DatasetAccess names a dataset and columns.
type DatasetAccess struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
}

// Grant is a grant as the API shows it (the policy.Grant JSON).
type Grant = json.RawMessage

// Decide is a review decision, or a reason for suspend, reinstate and revoke.
type Decide struct {
	Decision string `json:"decision,omitempty"` // approve | reject
	Reason   string `json:"reason,omitempty"`
	// Override approves an output despite its disclosure findings (custom jobs); it needs
	// a reason and is recorded in the audit log.
	Override bool `json:"override,omitempty"`
}

// RegisterRuntime registers a runtime image for custom jobs (operator): a root filesystem
// directory or tarball on the daemon's host, copied and recorded with its digest.
type RegisterRuntime struct {
	Name       string   `json:"name"`
	Path       string   `json:"path"`
	Entrypoint []string `json:"entrypoint,omitempty"` // e.g. ["/usr/bin/python3"]; the program path is appended
}

// Runtime is a registered runtime image.
type Runtime struct {
	Name         string    `json:"name"`
	Digest       string    `json:"digest"`
	Entrypoint   []string  `json:"entrypoint,omitempty"`
	Files        int       `json:"files"`
	Bytes        int64     `json:"bytes"`
	RegisteredBy string    `json:"registered_by"`
	Registered   time.Time `json:"registered"`
}

// CustomJob is a vendor's own program for a registered runtime, run over read-only Parquet
// copies of the grant's columns (/in/<dataset>.parquet) with its outputs in /out.
type CustomJob struct {
	Runtime  string   `json:"runtime"`
	Program  string   `json:"program"` // digest of an upload (PUT /v1/programs)
	Datasets []string `json:"datasets"`
}

// Program is an uploaded program for custom jobs.
type Program struct {
	Digest string `json:"digest"`
	Bytes  int64  `json:"bytes"`
}

// Finding is one statistical disclosure finding on a custom output (never a value).
type Finding struct {
	Output  string `json:"output"`
	Rule    string `json:"rule"`
	Where   string `json:"where,omitempty"`
	Message string `json:"message"`
}

// OutputFile is one file a custom job wrote, as the reviewer sees it.
type OutputFile struct {
	Name    string `json:"name"`
	Bytes   int64  `json:"bytes"`
	Kind    string `json:"kind"`              // frequency, magnitude, regression, other
	Preview string `json:"preview,omitempty"` // the start of a text file
}

// CustomMechanism is how a custom output was checked.
type CustomMechanism struct {
	Runtime   string    `json:"runtime"`
	Digest    string    `json:"digest"`
	Program   string    `json:"program_sha256"`
	Status    string    `json:"status"` // ok, failed, limit hit
	Files     int       `json:"files"`
	Findings  []Finding `json:"findings"`
	Override  string    `json:"override,omitempty"` // who released despite findings, and why
	Statement string    `json:"statement"`
}

// SubmitJob asks for a job to run.
type SubmitJob struct {
	Grant          string `json:"grant"`
	SQL            string `json:"sql"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Mode is threshold or dp; empty: dp when DP is given or the grant allows only dp.
	Mode string     `json:"mode,omitempty"`
	DP   *DPOptions `json:"dp,omitempty"`
	// HE makes the job an he-score job (mode he): no SQL; the vendor's encrypted model is
	// evaluated over its features in the dataset, summed per group under encryption.
	HE *HEScore `json:"he,omitempty"`
	// Train makes the job a model job (mode model) with a built-in DP trainer.
	Train *TrainSpec `json:"train,omitempty"`
	// Custom makes the job a custom job (mode model): the vendor's program in a sandbox.
	Custom *CustomJob `json:"custom,omitempty"`
}

// TrainSpec is a model job's declarative spec (`veil job submit --train spec.yaml`): a
// built-in trainer with differential privacy over granted columns with bounds.
type TrainSpec struct {
	Dataset string `json:"dataset" yaml:"dataset"`
	// Trainer is linear_regression, logistic_regression, histogram or quantiles.
	Trainer string `json:"trainer" yaml:"trainer"`
	// Regressions: the features and the label. A logistic label is 1 where the column's
	// text equals Positive (default "1"), 0 elsewhere.
	Features []string `json:"features,omitempty" yaml:"features,omitempty"`
	Label    string   `json:"label,omitempty" yaml:"label,omitempty"`
	Positive string   `json:"positive,omitempty" yaml:"positive,omitempty"`
	// Histograms and quantiles: the column, the bins (Bins equal bins over Bounds of the
	// column), the ranks in [0, 1].
	Column string    `json:"column,omitempty" yaml:"column,omitempty"`
	Bins   int       `json:"bins,omitempty" yaml:"bins,omitempty"`
	Ranks  []float64 `json:"ranks,omitempty" yaml:"ranks,omitempty"`
	// Bounds clamp columns (the catalog's bounds otherwise).
	Bounds map[string][2]float64 `json:"bounds,omitempty" yaml:"bounds,omitempty"`
	// MaxRows bounds the rows one person contributes (default 1); a person with more counts
	// as MaxRows rows of their own average.
	MaxRows int64 `json:"max_rows,omitempty" yaml:"max_rows,omitempty"`
	// Logistic regression: gradient steps (default 10) and step size (default 1).
	Iterations   int     `json:"iterations,omitempty" yaml:"iterations,omitempty"`
	LearningRate float64 `json:"learning_rate,omitempty" yaml:"learning_rate,omitempty"`
	Epsilon      float64 `json:"epsilon" yaml:"epsilon"`
	Delta        float64 `json:"delta,omitempty" yaml:"delta,omitempty"`
}

// HEScore is an he-score job: the dataset, the group-by keys, and the digests of the
// uploaded encrypted model and public key bundle (PUT /v1/blobs). The features are the
// model's own (its public header names them and their bounds).
type HEScore struct {
	Dataset string   `json:"dataset"`
	GroupBy []string `json:"group_by"`
	Model   string   `json:"model"`
	Bundle  string   `json:"bundle"`
}

// Blob is an uploaded vendor input: an encrypted model or a public key bundle. Secret keys
// are refused.
type Blob struct {
	Digest string `json:"digest"` // sha256:<hex>
	Kind   string `json:"kind"`
	KeyID  string `json:"key_id"`
	Bytes  int64  `json:"bytes"`
}

// HEMechanism is how an he-score output was made.
type HEMechanism struct {
	KeyID      string   `json:"key_id"`
	Model      string   `json:"model"` // linear or logistic
	Features   []string `json:"features"`
	GroupBy    []string `json:"group_by"`
	Degree     int      `json:"degree,omitempty"` // of the sigmoid's polynomial approximation
	InputRange float64  `json:"input_range,omitempty"`
	// SumErrorStd is the standard deviation of the Gaussian error noise flooding adds to
	// each decrypted group sum.
	SumErrorStd float64 `json:"sum_error_std"`
	Rows        int64   `json:"rows"`
	// Statement is what the certificate asserts about the model.
	Statement string `json:"statement"`
}

// Job is a job as the API shows it.
type Job struct {
	ID        string    `json:"id"`
	Grant     string    `json:"grant"`
	Tenant    string    `json:"tenant"`
	Submitter string    `json:"submitter"`
	Mode      string    `json:"mode"`
	Status    string    `json:"status"`
	Message   string    `json:"message,omitempty"` // safe for the vendor
	SQL       string    `json:"sql"`
	Created   time.Time `json:"created"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
	Metering  *Metering `json:"metering,omitempty"`
	Approvals []string  `json:"approvals,omitempty"`
}

// Metering is what a job consumed. Of a production job only the operator reads it
// (jobs.Service.View): it depends on the data; a dev run's is its vendor's.
type Metering struct {
	WallMS       int64 `json:"wall_ms"`
	CPUMS        int64 `json:"cpu_ms"`
	PeakMemoryMB int64 `json:"peak_memory_mb"`
	// PeakResidentMB is the part of the peak the kernel could not reclaim (anonymous and
	// tmpfs memory, sampled); PeakMemoryMB also counts the page cache of the files the job
	// read and wrote, spill area included.
	PeakResidentMB int64 `json:"peak_resident_mb,omitempty"`
	OutputRows     int64 `json:"output_rows"`
	Groups         int   `json:"groups"`
	Suppressed     int   `json:"suppressed"`
}

// Review is what a reviewer sees of an output waiting for release.
type Review struct {
	Job Job `json:"job"`
	// Digest is the sha256 of the output as the gate produced it and as it is stored (the
	// audit log's job.gate entry records it); an approval names it.
	Digest    string          `json:"digest"`
	Grant     json.RawMessage `json:"grant"`
	Mechanism Mechanism       `json:"mechanism"`
	Warnings  []string        `json:"warnings"`
	Columns   []string        `json:"columns"`
	Rows      [][]any         `json:"rows"` // the output exactly as it would be released
	Decisions []Decision      `json:"decisions"`
	Needed    int             `json:"approvals_needed"`
	// Budget is what the job spent and what its grant has left, per dataset (dp jobs).
	Budget []GrantBudget `json:"budget,omitempty"`
	// Files are a custom job's outputs (Rows is then empty).
	Files []OutputFile `json:"files,omitempty"`
}

// Mechanism says how the output was protected.
type Mechanism struct {
	Kind       string `json:"kind"` // threshold
	K          int    `json:"k,omitempty"`
	RoundTo    int    `json:"round_to,omitempty"`
	Groups     int    `json:"groups"`
	Suppressed int    `json:"suppressed"`
	NearK      int    `json:"near_k"`
	// Dominance counts threshold cells of at least K persons suppressed by the dominance
	// rules; Differencing those suppressed because, against a prior query of the grant (the
	// jobs in Paired), fewer than K persons made the difference.
	Dominance    int      `json:"dominance,omitempty"`
	Differencing int      `json:"differencing,omitempty"`
	Paired       []string `json:"paired,omitempty"`
	// DP describes a dp release: budget spent, bounds, and each column's mechanism, noise
	// scale and interval (engine.DPReport).
	DP *DPMechanism `json:"dp,omitempty"`
	// HE describes an he-score output.
	HE *HEMechanism `json:"he,omitempty"`
	// Custom describes a custom job's output and its disclosure findings.
	Custom *CustomMechanism `json:"custom,omitempty"`
	// Twin describes a dataset's dev twin.
	Twin *TwinMechanism `json:"twin,omitempty"`
}

// TwinMechanism is how a dev twin was made.
type TwinMechanism struct {
	Kind      string `json:"kind"` // masked or synthetic
	Dataset   string `json:"dataset"`
	Version   string `json:"version"`
	Statement string `json:"statement"`
}

// BuildTwin asks for a dataset's dev twin (its provider).
type BuildTwin struct {
	Kind    string      `json:"kind"`              // masked or synthetic
	Rows    int         `json:"rows,omitempty"`    // masked: sample size (1000); synthetic: rows (the noisy number of persons)
	Epsilon float64     `json:"epsilon,omitempty"` // synthetic: the dataset's budget it spends
	Pairs   [][2]string `json:"pairs,omitempty"`   // synthetic: column pairs whose 2-way distribution is kept
}

// DevOutput is a dev run's output, shown at once and labelled.
type DevOutput struct {
	Job   Job    `json:"job"`
	Label string `json:"label"`
	// Nulls are the granted columns that are NULL in the twins the run read, and why.
	Nulls     []TwinNull   `json:"twin_nulls,omitempty"`
	Mechanism Mechanism    `json:"mechanism"`
	Columns   []string     `json:"columns,omitempty"`
	Rows      [][]any      `json:"rows,omitempty"`
	Files     []OutputFile `json:"files,omitempty"`
}

// TwinNull is a column a dev twin holds only as NULL, and why.
type TwinNull struct {
	Dataset string `json:"dataset"`
	Column  string `json:"column"`
	Reason  string `json:"reason"`
}

// DPMechanism is how a dp output was made.
type DPMechanism struct {
	Epsilon   float64         `json:"epsilon"`
	Delta     float64         `json:"delta"`
	MaxGroups int64           `json:"max_groups"`
	MaxRows   int64           `json:"max_rows"`
	Noise     string          `json:"noise"`
	Report    json.RawMessage `json:"report"`
}

// Decision is one reviewer's decision.
type Decision struct {
	Reviewer string    `json:"reviewer"`
	Decision string    `json:"decision"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// Export is a released output in one format with its signed certificate.
type Export struct {
	Job         string          `json:"job"`
	Format      string          `json:"format"`
	Data        []byte          `json:"data"`
	Certificate json.RawMessage `json:"certificate"` // DSSE envelope of an in-toto Statement
}

// AuditRecords is a page of the audit log.
type AuditRecords struct {
	From    int64    `json:"from"`
	Records [][]byte `json:"records"`
	Size    int64    `json:"size"`
}

// AuditCheckpoints is a page of the signed checkpoints, in order of size: those of size ≥
// From, at most the limit asked for. Next is the from of the next page (the size after the
// last one here), 0 when this page is the last.
type AuditCheckpoints struct {
	From        int64             `json:"from"`
	Checkpoints []AuditCheckpoint `json:"checkpoints"`
	Next        int64             `json:"next,omitempty"`
}

// AuditCheckpoint is one signed note.
type AuditCheckpoint struct {
	Size int64  `json:"size"`
	Note []byte `json:"note"`
}

// PlatformKey is the platform's public verifier key.
type PlatformKey struct {
	VerifierKey string `json:"verifier_key"` // note verifier key
	PublicKey   []byte `json:"public_key"`   // raw ed25519 public key
}

// DPOptions are a dp query's budget and contribution bounds (see engine.DPOptions).
type DPOptions struct {
	Epsilon   float64               `json:"epsilon"`
	Delta     float64               `json:"delta,omitempty"`
	MaxGroups int64                 `json:"max_groups,omitempty"`
	MaxRows   int64                 `json:"max_rows,omitempty"`
	Bounds    map[string][2]float64 `json:"bounds,omitempty"`
	Noise     string                `json:"noise,omitempty"`
}

// Amount is a privacy budget: exact integer units and their decimal values.
type Amount struct {
	Epsilon      float64 `json:"epsilon"`
	Delta        float64 `json:"delta"`
	EpsilonUnits int64   `json:"epsilon_units"`
	DeltaUnits   int64   `json:"delta_units"`
}

// DatasetBudget is a dataset's total budget and how it is used.
type DatasetBudget struct {
	Dataset   string `json:"dataset"`
	Provider  string `json:"provider"`
	Total     Amount `json:"total"`
	Allocated Amount `json:"allocated"` // sum of grant slices
	Spent     Amount `json:"spent"`     // sum of job spends
	Free      Amount `json:"free"`      // not yet allocated to any grant
}

// GrantBudget is a grant's slice of one dataset's budget.
type GrantBudget struct {
	Grant     string  `json:"grant"`
	Tenant    string  `json:"tenant"`
	Scenario  string  `json:"scenario"`
	Dataset   string  `json:"dataset"`
	Slice     Amount  `json:"slice"`
	Spent     Amount  `json:"spent"`
	Remaining Amount  `json:"remaining"`
	Jobs      int     `json:"jobs"`
	MaxQuery  float64 `json:"max_query_epsilon"`
}

// BudgetSpend is one job's spend on one dataset, from the ledger: when the job was queued
// (the budget is reserved then), what it spent and the running sum of the spends listed up
// to and including it. Refunded spends (jobs that never ran) are left out.
type BudgetSpend struct {
	At      time.Time `json:"at"`
	Job     string    `json:"job"`
	Grant   string    `json:"grant"`
	Dataset string    `json:"dataset"`
	Spent   Amount    `json:"spent"`
	Sum     Amount    `json:"sum"`
}

// BudgetSpends is a page of a dataset's or a grant's spend history, oldest first: Total
// spends in all, this page from Offset; Next is the offset of the next page (0: none).
// Limit is the budget the spends are drawn from (the dataset's total, or the grant's slice
// when a grant is named), for a burn-down.
type BudgetSpends struct {
	Dataset string        `json:"dataset"`
	Grant   string        `json:"grant,omitempty"`
	Limit   Amount        `json:"limit"`
	Total   int           `json:"total"`
	Offset  int           `json:"offset"`
	Next    int           `json:"next,omitempty"`
	Spends  []BudgetSpend `json:"spends"`
}

// Budgets is what `veil budget show` prints: datasets for providers and the authority,
// grants for vendors (their own), providers (on their data) and the authority.
type Budgets struct {
	Datasets []DatasetBudget `json:"datasets"`
	Grants   []GrantBudget   `json:"grants"`
}
