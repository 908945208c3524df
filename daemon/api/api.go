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
	Kind  string `json:"kind"`  // not_found, forbidden, invalid, conflict, budget_exhausted, unavailable, unauthenticated, internal
}

// CreatePrincipal asks for a new principal and its token.
type CreatePrincipal struct {
	Name   string `json:"name"`
	Role   string `json:"role"`
	Tenant string `json:"tenant,omitempty"`
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
}

// RegisterDataset registers files (paths on the daemon's host) under a schema (YAML text).
type RegisterDataset struct {
	Schema string   `json:"schema"`
	Files  []string `json:"files"`
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
	ValidFor string          `json:"valid_for"` // Go duration or N"d"
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
}

// SubmitJob asks for a job to run.
type SubmitJob struct {
	Grant          string `json:"grant"`
	SQL            string `json:"sql"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
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

// Metering is what a job consumed.
type Metering struct {
	WallMS       int64 `json:"wall_ms"`
	CPUMS        int64 `json:"cpu_ms"`
	PeakMemoryMB int64 `json:"peak_memory_mb"`
	OutputRows   int64 `json:"output_rows"`
	Groups       int   `json:"groups"`
	Suppressed   int   `json:"suppressed"`
}

// Review is what a reviewer sees of an output waiting for release.
type Review struct {
	Job       Job             `json:"job"`
	Grant     json.RawMessage `json:"grant"`
	Mechanism Mechanism       `json:"mechanism"`
	Warnings  []string        `json:"warnings"`
	Columns   []string        `json:"columns"`
	Rows      [][]any         `json:"rows"` // the output exactly as it would be released
	Decisions []Decision      `json:"decisions"`
	Needed    int             `json:"approvals_needed"`
}

// Mechanism says how the output was protected.
type Mechanism struct {
	Kind       string `json:"kind"` // threshold
	K          int    `json:"k,omitempty"`
	RoundTo    int    `json:"round_to,omitempty"`
	Groups     int    `json:"groups"`
	Suppressed int    `json:"suppressed"`
	NearK      int    `json:"near_k"`
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

// AuditCheckpoints lists the signed checkpoints.
type AuditCheckpoints struct {
	Checkpoints []AuditCheckpoint `json:"checkpoints"`
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
