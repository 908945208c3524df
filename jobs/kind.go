package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// A Kind is one sort of job: SQL, he-score, a model trainer, a custom program. This package
// knows kinds only through this interface; each is registered once (Service.Register).
type Kind interface {
	// Name names the kind. A job's plan is stored under it in the job's body, so a kind
	// keeps its name.
	Name() string
	// Accepts reports whether a submitted request is of this kind. The first registered
	// kind that accepts a request gets it.
	Accepts(req *api.SubmitJob) bool
	// Plan checks a request against the scope of the grant it names and returns what the
	// job will run. A refusal the audit log should record is returned through
	// Submission.Refuse.
	Plan(ctx context.Context, sub *Submission) (*Plan, error)
	// Run turns the plan into a run in the sandbox and its result into the protected output
	// that goes to review. An error a vendor may read is a launch.Failure.
	Run(ctx context.Context, run *Run) (*Output, error)
}

// A Recoverer is a Kind that leaves something behind when the daemon dies during a run (a
// custom job's work directory); Recover removes it at the next start, after the sandboxes of
// the previous run are destroyed.
type Recoverer interface {
	Recover(ctx context.Context) error
}

// Submission is a job as submitted, for its kind to plan.
type Submission struct {
	Principal policy.Principal
	Request   api.SubmitJob
	// Dev is set for a dev run: the job runs at once on the twins, with no budget.
	Dev bool
	// DryRun is set when the job is only planned (Service.PlanJob): nothing is queued or
	// spent, and a kind that can says in Plan.Preview what the job would release.
	DryRun bool
	s      *Service
}

// Now is the platform's time.
func (sub *Submission) Now() time.Time { return sub.s.Rec.Now() }

// Grant loads the grant the request names, usable for the mode that mode picks for it, with
// what the engine may see of it (its scope) and the schemas of its datasets. A daemon
// without a sandbox gets synthetic datasets only.
func (sub *Submission) Grant(ctx context.Context, mode func(*policy.Grant) (policy.Mode, error)) (*policy.Grant, engine.Scope, map[string]*policy.Schema, error) {
	var g *policy.Grant
	var sc engine.Scope
	var schemas map[string]*policy.Schema
	if len(sub.Request.IdempotencyKey) > 200 {
		return nil, sc, nil, fmt.Errorf("%w: the idempotency key is longer than 200 characters", policy.ErrInvalid)
	}
	s := sub.s
	if err := s.grants.Settle(ctx); err != nil {
		return nil, sc, nil, err
	}
	err := s.DB.View(ctx, func(tx store.Tx) error {
		var err error
		if g, err = grants.Load(ctx, tx, sub.Principal, sub.Request.Grant); err != nil {
			return err
		}
		m, err := mode(g)
		if err != nil {
			return err
		}
		if err := g.Usable(s.Rec.Now(), m); err != nil {
			return err
		}
		var sets map[string]store.Dataset
		if schemas, sets, err = catalog.Load(ctx, tx, grants.Datasets(g)); err != nil {
			return err
		}
		sc = grants.Scope(g, schemas, sets, m)
		return s.box.Admit(schemas)
	})
	return g, sc, schemas, err
}

// Mode is the mode function of a kind whose jobs always run in m.
func Mode(m policy.Mode) func(*policy.Grant) (policy.Mode, error) {
	return func(*policy.Grant) (policy.Mode, error) { return m, nil }
}

// refusal is a request refused after its grant was read: the audit log records who tried
// what under which grant, and nothing runs or is queued.
type refusal struct {
	grant string
	err   error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// Refuse refuses the request under g with err; the refusal is recorded in the audit log.
// Only an error that says the request is at fault is a refusal (invalid, refused by the
// validator, forbidden, not found, conflicting); any other (the client hung up, the
// validator timed out or failed) is returned as it is and recorded as nothing: the audit
// log's job.refuse entries are what vendors asked and were told no.
func (sub *Submission) Refuse(g *policy.Grant, err error) error {
	if !refused(err) {
		return err
	}
	return &refusal{grant: g.ID, err: err}
}

func refused(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	for _, kind := range []error{policy.ErrInvalid, engine.ErrRefused, policy.ErrForbidden, policy.ErrNotFound, policy.ErrConflict} {
		if errors.Is(err, kind) {
			return true
		}
	}
	return false
}

// Plan is what a kind makes of a request: what the job runs and what it spends.
type Plan struct {
	Grant *policy.Grant
	Mode  policy.Mode
	// Describe is what the job does as vendors and reviewers read it (a SQL job's query).
	Describe string
	// Spec is the kind's plan, stored with the job and handed back to Run.
	Spec any
	// Spend, if set, is reserved on Datasets in the transaction that queues the job; Cap is
	// the most one job may spend under the grant.
	Spend    *ledger.Amount
	Datasets []string
	Cap      float64
	// Audit is the detail of the job.submit entry.
	Audit map[string]string
	// Preview, set by a kind for a dry run, is what the job would release (its mechanism per
	// column, its noise); the service adds the budget.
	Preview *api.JobPlan
}

// Run is a job that starts: its plan and what it may read.
type Run struct {
	ID     string
	Tenant string
	Grant  *policy.Grant
	Mode   policy.Mode
	Spec   json.RawMessage
	Spend  *ledger.Amount
	Dev    bool
	scope  engine.Scope
	// versions are the dataset versions the job runs on, by dataset.
	versions map[string]string
	// held are the projection directories the run mounts (Service.hold).
	held []string
	s    *Service
}

// Tables returns the tables the job reads: in production the grant's scope as of now; in a
// dev run the released twins of the datasets it uses, with nothing measured of the data.
//
// In production each table's files are a projection of the dataset version onto the
// grant's columns (Projection), never the dataset's own files: a column the grant does not
// name is not in the sandbox at all, whatever a validator bug lets a query ask.
func (r *Run) Tables(ctx context.Context, used []string) ([]engine.Table, error) {
	if !r.Dev {
		var tables []engine.Table
		for _, t := range r.scope.Tables {
			files, err := r.s.projection(ctx, r, t, r.versions[t.Name])
			if err != nil {
				return nil, err
			}
			t.Files = files
			tables = append(tables, t)
		}
		return tables, nil
	}
	var tables []engine.Table
	for _, t := range r.scope.Tables {
		if !slices.Contains(used, t.Name) {
			continue
		}
		f, err := r.s.Twins.File(ctx, t.Name)
		if err != nil {
			return nil, err
		}
		t.Files = []string{f}
		// What was measured of the data says nothing of the twin.
		t.MaxRowsPerUnit, t.UnitComplete, t.MaxRowsPerUnitBy, t.ValueUnits = 0, false, nil, nil
		tables = append(tables, t)
	}
	return tables, nil
}

// Output is the protected output of a run and what the job says about it.
type Output struct {
	Record    arrow.RecordBatch // the protected output; the job's runner releases it
	Mechanism api.Mechanism
	Message   string // the job's message in review
	Metering  *api.Metering
	Audit     map[string]string // the detail of the job.gate entry
	Log       []any             // attributes of the operator log's "job gated" line, if any
}

// Twins finds the released twin of a dataset, for dev runs.
type Twins interface {
	File(ctx context.Context, dataset string) (string, error)
	// Nulls says which columns of the dataset's released twin are NULL, and why.
	Nulls(ctx context.Context, dataset string) (map[string]string, error)
}
