package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Job statuses. A job moves queued → running → review → released | rejected, or ends
// failed or canceled; a dev run ends dev, its output shown at once. A released job goes back
// to review when its approvals no longer count.
const (
	Queued   = "queued"
	Running  = "running"
	Review   = "review"
	Released = "released"
	Rejected = "rejected"
	Failed   = "failed"
	Canceled = "canceled"
	Dev      = "dev"
)

// next is the state machine: the statuses a job may move to from each status. A status that
// is not a key is final.
var next = map[string][]string{
	Queued:  {Running, Failed, Canceled},
	Running: {Review, Failed, Canceled},
	Review:  {Review, Released, Rejected, Canceled, Dev},
	// A release whose approvals no longer reach the quorum (a reviewer was revoked) goes
	// back to review; it is not exported meanwhile.
	Released: {Review},
}

// Move changes the job's status, if the state machine allows it.
func (j *Job) Move(to string) error {
	if !slices.Contains(next[j.Status], to) {
		return fmt.Errorf("job %s cannot move from %s to %s", j.ID, j.Status, to)
	}
	j.Status = to
	return nil
}

// Body is the JSON body of a stored job. It holds no result values.
type Body struct {
	Mode      policy.Mode
	SQL       string // what the job does as vendors and reviewers read it: a SQL job's query
	Message   string // safe to show the vendor
	Started   time.Time
	Finished  time.Time
	Metering  *api.Metering
	Approvals []string
	// Spend is what the job charged the ledger, in exact units; its noise is calibrated to
	// it.
	Spend *ledger.Amount
	// Dev marks a dev run: on the twins, no budget, its output shown at once; Request is
	// the job as submitted, for promotion to production.
	Dev     bool
	Request json.RawMessage
	// Digest is the SHA-256 of the request as submitted, without its idempotency key: a
	// retry with the key must be the same request (empty in jobs stored before it was kept).
	Digest string
	// Kind names the job's kind and Spec is the kind's plan, stored under the kind's name.
	Kind string
	Spec json.RawMessage
}

// fixed are the fields every job body has, whatever its kind.
type fixed struct {
	Mode      policy.Mode     `json:"mode"`
	SQL       string          `json:"sql"`
	Message   string          `json:"message,omitempty"`
	Started   time.Time       `json:"started,omitzero"`
	Finished  time.Time       `json:"finished,omitzero"`
	Metering  *api.Metering   `json:"metering,omitempty"`
	Approvals []string        `json:"approvals,omitempty"`
	Spend     *ledger.Amount  `json:"spend,omitempty"`
	Dev       bool            `json:"dev,omitempty"`
	Request   json.RawMessage `json:"request,omitempty"`
	Digest    string          `json:"request_digest,omitempty"`
}

var fixedKeys = []string{"mode", "sql", "message", "started", "finished", "metering", "approvals", "spend", "dev", "request", "request_digest"}

// MarshalJSON writes the fixed fields and the kind's plan under the kind's name, as bodies
// were stored before kinds were separate ("plan", "he", "model", "custom", "twin").
func (b Body) MarshalJSON() ([]byte, error) {
	out, err := json.Marshal(fixed{b.Mode, b.SQL, b.Message, b.Started, b.Finished, b.Metering, b.Approvals, b.Spend, b.Dev, b.Request, b.Digest})
	if err != nil || b.Kind == "" {
		return out, err
	}
	key, err := json.Marshal(b.Kind)
	if err != nil {
		return nil, err
	}
	spec := b.Spec
	if len(spec) == 0 {
		spec = json.RawMessage("null")
	}
	out = append(out[:len(out)-1], ',')
	out = append(append(append(out, key...), ':'), spec...)
	return append(out, '}'), nil
}

// UnmarshalJSON reads a body: the one key that is not a fixed field and not null is the
// kind's name, its value the plan.
func (b *Body) UnmarshalJSON(data []byte) error {
	var f fixed
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	*b = Body{Mode: f.Mode, SQL: f.SQL, Message: f.Message, Started: f.Started, Finished: f.Finished, Metering: f.Metering,
		Approvals: f.Approvals, Spend: f.Spend, Dev: f.Dev, Request: f.Request, Digest: f.Digest}
	for k, v := range all {
		if slices.Contains(fixedKeys, k) || bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue
		}
		if b.Kind != "" {
			return fmt.Errorf("job body holds two plans: %s and %s", b.Kind, k)
		}
		b.Kind, b.Spec = k, v
	}
	return nil
}

// Job is a stored job and its decoded body.
type Job struct {
	store.Job
	Body Body
}

// Decode reads a stored job.
func Decode(sj store.Job) (*Job, error) {
	j := &Job{Job: sj}
	if err := json.Unmarshal(sj.Body, &j.Body); err != nil {
		return nil, fmt.Errorf("decode job %s: %w", sj.ID, err)
	}
	return j, nil
}

// Put stores the job as of now.
func (j *Job) Put(ctx context.Context, tx store.Tx, now time.Time) error {
	b, err := json.Marshal(j.Body)
	if err != nil {
		return err
	}
	j.Job.Body, j.Updated = b, now
	return tx.PutJob(ctx, j.Job)
}

// API is the job as the API shows it.
func (j *Job) API() api.Job {
	return api.Job{ID: j.ID, Grant: j.GrantID, Tenant: j.Tenant, Submitter: j.Submitter, Mode: string(j.Body.Mode), Status: j.Status,
		Message: j.Body.Message, SQL: j.Body.SQL, Created: j.Created, Started: j.Body.Started, Finished: j.Body.Finished,
		Metering: j.Body.Metering, Approvals: j.Body.Approvals}
}

// Load reads a job p may see; any other job is "not found", exactly like a missing one.
func Load(ctx context.Context, tx store.Tx, p policy.Principal, id string) (*Job, error) {
	sj, err := tx.Job(ctx, id)
	if err != nil || !policy.CanSeeTenantObject(p, sj.Tenant) {
		return nil, fmt.Errorf("%w: job %s not found", policy.ErrNotFound, id)
	}
	return Decode(sj)
}
