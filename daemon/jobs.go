package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/runner"
	"github.com/veil-dp/veil/store"
)

// Job statuses. A job moves queued → running → review → released | rejected, or ends
// failed or canceled.
const (
	jobQueued   = "queued"
	jobRunning  = "running"
	jobReview   = "review"
	jobReleased = "released"
	jobRejected = "rejected"
	jobFailed   = "failed"
	jobCanceled = "canceled"
)

// jobBody is the JSON body of a stored job. It holds no result values.
type jobBody struct {
	Mode      policy.Mode   `json:"mode"`
	SQL       string        `json:"sql"`
	Plan      *engine.Plan  `json:"plan"`
	Message   string        `json:"message,omitempty"` // safe to show the vendor
	Started   time.Time     `json:"started,omitzero"`
	Finished  time.Time     `json:"finished,omitzero"`
	Metering  *api.Metering `json:"metering,omitempty"`
	Approvals []string      `json:"approvals,omitempty"`
	// Spend is what a dp job charged the ledger, in exact units; the gate calibrates the
	// noise to it.
	Spend *ledger.Amount `json:"spend,omitempty"`
	// HE is an he-score job's spec (Plan is then nil).
	HE *runner.Score `json:"he,omitempty"`
	// Model is a model job's trainer spec (Plan is then nil).
	Model *runner.Model `json:"model,omitempty"`
	// Custom is a custom job's runtime, program and datasets (Plan is then nil).
	Custom *customSpec `json:"custom,omitempty"`
	// Twin is a dev twin build (no grant; the dataset's provider submitted it).
	Twin *twinSpec `json:"twin,omitempty"`
	// Dev marks a dev run: on the twins, no budget, its output shown at once; Request is
	// the job as submitted, for promotion to production.
	Dev     bool            `json:"dev,omitempty"`
	Request json.RawMessage `json:"request,omitempty"`
}

type job struct {
	store.Job
	body jobBody
}

func decodeJob(sj store.Job) (*job, error) {
	j := &job{Job: sj}
	if err := json.Unmarshal(sj.Body, &j.body); err != nil {
		return nil, fmt.Errorf("decode job %s: %w", sj.ID, err)
	}
	return j, nil
}

func (j *job) put(ctx context.Context, tx store.Tx, now time.Time) error {
	b, err := json.Marshal(j.body)
	if err != nil {
		return err
	}
	j.Body, j.Updated = b, now
	return tx.PutJob(ctx, j.Job)
}

func (j *job) api() api.Job {
	return api.Job{ID: j.ID, Grant: j.GrantID, Tenant: j.Tenant, Submitter: j.Submitter, Mode: string(j.body.Mode), Status: j.Status,
		Message: j.body.Message, SQL: j.body.SQL, Created: j.Created, Started: j.body.Started, Finished: j.body.Finished,
		Metering: j.body.Metering, Approvals: j.body.Approvals}
}

// loadJob reads a job p may see; any other job is "not found", exactly like a missing one.
func loadJob(ctx context.Context, tx store.Tx, p policy.Principal, id string) (*job, error) {
	sj, err := tx.Job(ctx, id)
	if err != nil || !policy.CanSeeTenantObject(p, sj.Tenant) {
		return nil, fmt.Errorf("%w: job %s not found", policy.ErrNotFound, id)
	}
	return decodeJob(sj)
}

// jobMode picks a job's mode: the one asked for; dp when dp options are given; else the
// grant's only SQL mode, with threshold where the grant allows both.
func jobMode(req api.SubmitJob, g *policy.Grant) (policy.Mode, error) {
	switch {
	case req.Mode != "":
		m := policy.Mode(req.Mode)
		if m != policy.ModeDP && m != policy.ModeThreshold {
			return "", fmt.Errorf("%w: SQL jobs run in mode dp or threshold, not %q", policy.ErrInvalid, req.Mode)
		}
		if m == policy.ModeDP && req.DP == nil {
			return "", fmt.Errorf("%w: a dp job needs an epsilon (--epsilon)", policy.ErrInvalid)
		}
		return m, nil
	case req.DP != nil:
		return policy.ModeDP, nil
	case slices.Contains(g.Modes, policy.ModeDP) && !slices.Contains(g.Modes, policy.ModeThreshold):
		return "", fmt.Errorf("%w: grant %s releases SQL results only with differential privacy: give an --epsilon", policy.ErrInvalid, g.ID)
	}
	return policy.ModeThreshold, nil
}

func dpOptions(o *api.DPOptions) engine.DPOptions {
	if o == nil {
		return engine.DPOptions{}
	}
	return engine.DPOptions{Epsilon: o.Epsilon, Delta: o.Delta, MaxGroups: o.MaxGroups, MaxRows: o.MaxRows, Bounds: o.Bounds, Noise: o.Noise}
}

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobSubmit); err != nil {
		return err
	}
	var req api.SubmitJob
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if isDev(r.Context()) {
		raw, _ := json.Marshal(req)
		r = r.WithContext(context.WithValue(r.Context(), devReqKey{}, raw))
	}
	if req.HE != nil {
		return s.submitHE(w, r, p, req)
	}
	if req.Train != nil {
		return s.submitModel(w, r, p, req)
	}
	if req.Custom != nil {
		return s.submitCustom(w, r, p, req)
	}
	if strings.TrimSpace(req.SQL) == "" {
		return fmt.Errorf("%w: the job has no SQL; pass --sql or -f FILE", policy.ErrInvalid)
	}
	if len(req.SQL) > 64<<10 {
		return fmt.Errorf("%w: the SQL is longer than 64 KiB", policy.ErrInvalid)
	}
	if len(req.IdempotencyKey) > 200 {
		return fmt.Errorf("%w: the idempotency key is longer than 200 characters", policy.ErrInvalid)
	}
	ctx := r.Context()
	if err := s.grants.Settle(ctx); err != nil {
		return err
	}
	// Validate before anything is stored: a refused query leaves no trace but the audit entry.
	var g *policy.Grant
	var sc engine.Scope
	var mode policy.Mode
	var schemas map[string]*policy.Schema
	err := s.db.View(ctx, func(tx store.Tx) error {
		var err error
		if g, err = grants.Load(ctx, tx, p, req.Grant); err != nil {
			return err
		}
		if mode, err = jobMode(req, g); err != nil {
			return err
		}
		if err := g.Usable(s.rec.Now(), mode); err != nil {
			return err
		}
		var sets map[string]store.Dataset
		if schemas, sets, err = catalog.Load(ctx, tx, grants.Datasets(g)); err != nil {
			return err
		}
		sc = grants.Scope(g, schemas, sets, mode)
		return s.box.Admit(schemas)
	})
	if err != nil {
		return err
	}
	var plan *engine.Plan
	var verr error
	if mode == policy.ModeDP {
		plan, verr = s.validator.ValidateDP(ctx, req.SQL, sc, dpOptions(req.DP))
	} else {
		plan, verr = s.validator.Validate(ctx, req.SQL, sc)
	}
	var spend *ledger.Amount
	if verr == nil && plan.DP != nil {
		a, err := ledger.Spend(plan.DP.Epsilon, plan.DP.Delta)
		if err != nil {
			verr = fmt.Errorf("%w: %v", policy.ErrInvalid, err)
		}
		spend = &a
	}
	if verr != nil {
		// The refusal is recorded (who tried what under which grant), never run, never queued.
		s.db.Update(ctx, func(tx store.Tx) error {
			return s.rec.Record(ctx, tx, p, "job.refuse", "grant/"+g.ID, map[string]string{"reason": verr.Error()})
		})
		return verr
	}
	now := s.rec.Now()
	j := &job{Job: store.Job{ID: platform.NewID("j"), GrantID: g.ID, Tenant: p.Tenant, Submitter: p.ID, Status: jobQueued,
		IdemKey: req.IdempotencyKey, Created: now}, body: jobBody{Mode: mode, SQL: req.SQL, Plan: plan, Spend: spend}}
	details := map[string]string{"grant": g.ID, "mode": string(mode), "sql": req.SQL}
	var reserve func(tx store.Tx) error
	if spend != nil {
		reserve = func(tx store.Tx) error {
			// The budget is reserved in the transaction that queues the job: a job is
			// either queued and paid for, or refused and nothing is spent.
			if err := s.ledger.Reserve(ctx, tx, j.ID, j.GrantID, *spend, plan.Tables, ledger.QueryCap(g, schemas)); err != nil {
				return err
			}
			details["epsilon"] = ledger.FormatEpsilon(spend.Eps)
			details["delta"] = ledger.FormatDelta(spend.Delta)
			return nil
		}
	}
	return s.queue(ctx, w, p, g, j, details, reserve)
}

// queue stores a validated job and queues it, in one transaction with its budget
// reservation (reserve, if any) and its audit entry. A retry with the same idempotency key
// returns the first job and spends nothing.
func (s *Server) queue(ctx context.Context, w http.ResponseWriter, p policy.Principal, g *policy.Grant, j *job, details map[string]string, reserve func(tx store.Tx) error) error {
	if raw, ok := ctx.Value(devReqKey{}).([]byte); ok {
		// A dev run: no budget, no idempotency, run now on the twins.
		j.body.Dev, j.body.Request, j.IdemKey, reserve = true, raw, "", nil
		details["dev"] = "true"
	}
	created := true
	err := s.db.Update(ctx, func(tx store.Tx) error {
		if j.IdemKey != "" {
			prev, err := tx.JobByIdemKey(ctx, p.Tenant, j.IdemKey)
			if err == nil {
				if prev.GrantID != g.ID {
					return fmt.Errorf("%w: idempotency key %q was used for another grant", policy.ErrConflict, j.IdemKey)
				}
				j, err = decodeJob(prev)
				created = false
				return err
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if reserve != nil {
			if err := reserve(tx); err != nil {
				return err
			}
		}
		if err := j.put(ctx, tx, j.Created); err != nil {
			return err
		}
		return s.rec.Record(ctx, tx, p, "job.submit", "job/"+j.ID, details)
	})
	if errors.Is(err, ledger.ErrBudget) {
		s.db.Update(ctx, func(tx store.Tx) error {
			return s.rec.Record(ctx, tx, p, "job.refuse", "grant/"+g.ID, map[string]string{"reason": err.Error()})
		})
	}
	if err != nil {
		return err
	}
	if j.body.Dev {
		// Dev runs run in the request, no more at once than the scheduler's workers.
		select {
		case s.devSlots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.runJob(ctx, j.ID)
		<-s.devSlots
		s.changed.notify()
		out, err := s.devOutput(ctx, p, j.ID)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	if created {
		s.sched.enqueue(j.Tenant, j.ID)
	}
	writeJSON(w, http.StatusAccepted, j.api())
	return nil
}

type devReqKey struct{}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobRead); err != nil {
		return err
	}
	f := store.JobFilter{GrantID: r.URL.Query().Get("grant")}
	if st := r.URL.Query().Get("status"); st != "" {
		f.Statuses = strings.Split(st, ",")
	}
	if p.Role == policy.Vendor {
		f.Tenant = p.Tenant
	}
	out, err := s.jobsWhere(r.Context(), p, f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) showJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobRead); err != nil {
		return err
	}
	// ?wait=DURATION long-polls: the answer comes when the job's status changes or it is no
	// longer queued or running, or when the duration (at most a minute) is up, so that a
	// client sees each change at once.
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			return fmt.Errorf("%w: wait=%q: give a duration up to 1m, for example wait=30s", policy.ErrInvalid, v)
		}
		wait = d
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	first := ""
	for {
		woken := s.changed.wait() // taken before reading, so that no change is missed
		var j *job
		err := s.db.View(r.Context(), func(tx store.Tx) error {
			var err error
			j, err = loadJob(r.Context(), tx, p, r.PathValue("id"))
			return err
		})
		if err != nil {
			return err
		}
		if first == "" {
			first = j.Status
		}
		if wait == 0 || j.Status != first || (j.Status != jobQueued && j.Status != jobRunning) {
			writeJSON(w, http.StatusOK, j.api())
			return nil
		}
		select {
		case <-woken:
		case <-deadline.C:
			wait = 0
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
}

// broadcast wakes every waiter at once: wait returns a channel that notify closes.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobCancel); err != nil {
		return err
	}
	ctx := r.Context()
	var j *job
	err := s.db.Update(ctx, func(tx store.Tx) error {
		var err error
		if j, err = loadJob(ctx, tx, p, r.PathValue("id")); err != nil {
			return err
		}
		switch j.Status {
		case jobQueued, jobRunning, jobReview:
		default:
			return fmt.Errorf("%w: job %s is %s and can no longer be canceled", policy.ErrConflict, j.ID, j.Status)
		}
		if j.Status == jobReview {
			if err := tx.DeleteOutput(ctx, j.ID); err != nil {
				return err
			}
		}
		if j.Status == jobQueued {
			// It never touched the data: its reservation goes back. A job that ran keeps
			// its spend, whatever happens to its output.
			if err := s.ledger.Refund(ctx, tx, j.ID); err != nil {
				return err
			}
		}
		j.Status = jobCanceled
		j.body.Message = "canceled by " + string(p.Role)
		j.body.Finished = s.rec.Now()
		if err := j.put(ctx, tx, s.rec.Now()); err != nil {
			return err
		}
		return s.rec.Record(ctx, tx, p, "job.cancel", "job/"+j.ID, nil)
	})
	if err != nil {
		return err
	}
	s.sched.cancel(j.ID)
	s.changed.notify()
	writeJSON(w, http.StatusOK, j.api())
	return nil
}

// jobsWhere lists the jobs matching f that p may see.
func (s *Server) jobsWhere(ctx context.Context, p policy.Principal, f store.JobFilter) ([]api.Job, error) {
	out := []api.Job{}
	err := s.db.View(ctx, func(tx store.Tx) error {
		js, err := tx.Jobs(ctx, f)
		if err != nil {
			return err
		}
		for _, sj := range js {
			if !policy.CanSeeTenantObject(p, sj.Tenant) {
				continue
			}
			j, err := decodeJob(sj)
			if err != nil {
				return err
			}
			out = append(out, j.api())
		}
		return nil
	})
	return out, err
}
