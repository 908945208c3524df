package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Service runs jobs: it queues what the kinds plan, schedules the queue fairly over the
// tenants, runs each job through its kind into the review queue, and recovers after a crash.
type Service struct {
	platform.Env
	grants *grants.Service
	ledger *ledger.Book
	box    *launch.Launcher
	// Twins finds the released twins dev runs read; set before Start.
	Twins Twins
	// Observe, if set before Start, is told when jobs start and end (metrics).
	Observe Observer

	kinds   []Kind
	admit   *admission
	sched   *scheduler
	changed broadcast // a job started, ended a run or was canceled: wakes long-polling readers
	// unstored holds the jobs whose move to running has committed but is not yet on disk
	// (runJob1): they are shown queued.
	unstoredMu sync.Mutex
	unstored   map[string]bool
	devSlots   chan struct{}
	// projecting holds a lock per projection directory (projection).
	projecting sync.Map
	// projUse counts the running jobs that mount each projection directory: pruning
	// (PruneProjections) leaves those alone.
	projMu  sync.Mutex
	projUse map[string]int
}

// New returns the job service; Register its kinds, then Start it.
func New(env platform.Env, g *grants.Service, l *ledger.Book, box *launch.Launcher) *Service {
	c := env.Config
	return &Service{Env: env, grants: g, ledger: l, box: box, devSlots: make(chan struct{}, max(c.Workers, 1)),
		admit: newAdmission(c.SubmitRate, c.SubmitBurst, c.TenantValidations)}
}

// Register adds a kind. Kinds are asked in the order they were registered whether a request
// is theirs.
func (s *Service) Register(k Kind) {
	for _, o := range s.kinds {
		if o.Name() == k.Name() {
			panic("jobs: kind " + k.Name() + " registered twice")
		}
	}
	s.kinds = append(s.kinds, k)
}

func (s *Service) kind(name string) (Kind, error) {
	for _, k := range s.kinds {
		if k.Name() == name {
			return k, nil
		}
	}
	return nil, fmt.Errorf("no job kind %q is registered", name)
}

// Start recovers from the previous run and starts the workers.
func (s *Service) Start(ctx context.Context) error {
	s.sched = newScheduler(s.Config.Workers, func(ctx context.Context, id string) {
		s.runJob(ctx, id)
		s.changed.notify()
	})
	return s.recover(ctx)
}

// Stop stops taking jobs and cancels the running ones.
func (s *Service) Stop() {
	if s.sched != nil {
		s.sched.stop()
	}
}

// Drain stops taking jobs and waits for the running ones until ctx ends.
func (s *Service) Drain(ctx context.Context) { s.sched.drain(ctx) }

// Submit validates a job through its kind and queues it, with its budget reservation.
func (s *Service) Submit(ctx context.Context, p policy.Principal, req api.SubmitJob) (api.Job, error) {
	j, err := s.submit(ctx, p, req, false)
	if err != nil {
		return api.Job{}, err
	}
	return s.View(p, j), nil
}

// SubmitDev runs a job in the dev environment: validated like a production job, run at once
// on the twins, with no budget; it returns the output, labelled.
func (s *Service) SubmitDev(ctx context.Context, p policy.Principal, req api.SubmitJob) (api.DevOutput, error) {
	j, err := s.submit(ctx, p, req, true)
	if err != nil {
		return api.DevOutput{}, err
	}
	// Dev runs run in the request, no more at once than the scheduler's workers.
	select {
	case s.devSlots <- struct{}{}:
	case <-ctx.Done():
		return api.DevOutput{}, ctx.Err()
	}
	s.runJob(ctx, j.ID)
	<-s.devSlots
	s.changed.notify()
	return s.DevOutput(ctx, p, j.ID)
}

func (s *Service) submit(ctx context.Context, p policy.Principal, req api.SubmitJob, dev bool) (*Job, error) {
	var raw []byte
	if dev {
		raw, _ = json.Marshal(req)
	}
	var k Kind
	for _, c := range s.kinds {
		if c.Accepts(&req) {
			k = c
			break
		}
	}
	if k == nil {
		return nil, fmt.Errorf("%w: no kind of job takes this request", policy.ErrInvalid)
	}
	// A tenant's submissions are bounded before any work is done for them: so many a
	// second, and so many validations at once.
	if err := s.admit.allow(tenantOf(p)); err != nil {
		return nil, err
	}
	done, err := s.admit.validating(ctx, tenantOf(p))
	if err != nil {
		return nil, err
	}
	pl, err := k.Plan(ctx, &Submission{Principal: p, Request: req, Dev: dev, s: s})
	done()
	var r *refusal
	if errors.As(err, &r) {
		s.DB.Update(ctx, func(tx store.Tx) error {
			return s.Rec.Record(ctx, tx, p, "job.refuse", "grant/"+r.grant, map[string]string{"reason": r.err.Error()})
		})
		return nil, r.err
	}
	if err != nil {
		return nil, err
	}
	spec, err := json.Marshal(pl.Spec)
	if err != nil {
		return nil, err
	}
	digest, err := requestDigest(req)
	if err != nil {
		return nil, err
	}
	j := &Job{Job: store.Job{ID: platform.NewID("j"), GrantID: pl.Grant.ID, Tenant: p.Tenant, Submitter: p.ID, Status: Queued,
		IdemKey: req.IdempotencyKey, Created: s.Rec.Now()}, Body: Body{Mode: pl.Mode, SQL: pl.Describe, Kind: k.Name(), Spec: spec, Spend: pl.Spend, Digest: digest}}
	details := pl.Audit
	if details == nil {
		details = map[string]string{}
	}
	var reserve func(tx store.Tx) error
	if pl.Spend != nil {
		reserve = func(tx store.Tx) error {
			// The budget is reserved in the transaction that queues the job: a job is
			// either queued and paid for, or refused and nothing is spent.
			if err := s.ledger.Reserve(ctx, tx, j.ID, j.GrantID, *pl.Spend, pl.Datasets, pl.Cap); err != nil {
				return err
			}
			details["epsilon"] = ledger.FormatEpsilon(pl.Spend.Eps)
			details["delta"] = ledger.FormatDelta(pl.Spend.Delta)
			return nil
		}
	}
	if dev {
		// A dev run: no budget, no idempotency, run now on the twins.
		j.Body.Dev, j.Body.Request, j.IdemKey, reserve = true, raw, "", nil
		details["dev"] = "true"
	}
	return s.queue(ctx, p, j, details, reserve)
}

// queue stores a validated job and queues it, in one transaction with its budget
// reservation (reserve, if any) and its audit entry. A retry with the same idempotency key
// returns the first job and spends nothing.
func (s *Service) queue(ctx context.Context, p policy.Principal, j *Job, details map[string]string, reserve func(tx store.Tx) error) (*Job, error) {
	grant := j.GrantID
	err := s.DB.Update(ctx, func(tx store.Tx) error {
		if j.IdemKey != "" {
			prev, err := tx.JobByIdemKey(ctx, p.Tenant, j.IdemKey)
			if err == nil {
				if prev.GrantID != grant {
					return fmt.Errorf("%w: idempotency key %q was used for another grant", policy.ErrConflict, j.IdemKey)
				}
				first, err := Decode(prev)
				if err != nil {
					return err
				}
				// A retry is the same request; another request under a used key is a
				// mistake the vendor must hear of, not an answer with a job it did not ask.
				if first.Body.Digest != "" && first.Body.Digest != j.Body.Digest {
					return fmt.Errorf("%w: idempotency key %q was used for another request (job %s); a retry must repeat the request exactly, a new request needs a new key",
						policy.ErrConflict, j.IdemKey, first.ID)
				}
				j = first
				return nil
			}
			if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		if max := s.Config.TenantJobs; max > 0 && !j.Body.Dev {
			// Counted in the transaction that queues: parallel submissions cannot overshoot.
			inFlight, err := tx.Jobs(ctx, store.JobFilter{Tenant: j.Tenant, Statuses: []string{Queued, Running}})
			if err != nil {
				return err
			}
			if len(inFlight) >= max {
				return queueFull(j.Tenant, max)
			}
		}
		if reserve != nil {
			if err := reserve(tx); err != nil {
				return err
			}
		}
		if err := j.Put(ctx, tx, j.Created); err != nil {
			return err
		}
		if !j.Body.Dev {
			// Queued once on disk, while its job.submit entry is signed (the answer waits
			// for that): the start transaction and the checks overlap the signing.
			tx.AfterCommit(func() { s.sched.enqueue(j.Tenant, j.ID) })
		}
		return s.Rec.Record(ctx, tx, p, "job.submit", "job/"+j.ID, details)
	})
	if errors.Is(err, ledger.ErrBudget) {
		s.DB.Update(ctx, func(tx store.Tx) error {
			return s.Rec.Record(ctx, tx, p, "job.refuse", "grant/"+grant, map[string]string{"reason": err.Error()})
		})
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

// List lists the jobs p may see, of one grant and in some statuses if asked. A vendor's
// statuses are those it sees (View), not the stored ones.
func (s *Service) List(ctx context.Context, p policy.Principal, grant, statuses string) ([]api.Job, error) {
	f := store.JobFilter{GrantID: grant}
	if statuses != "" {
		f.Statuses = strings.Split(statuses, ",")
	}
	if p.Role != policy.Vendor {
		return s.Where(ctx, p, f)
	}
	f.Tenant = p.Tenant
	want := f.Statuses
	f.Statuses = nil
	all, err := s.Where(ctx, p, f)
	if err != nil || want == nil {
		return all, err
	}
	out := []api.Job{}
	for _, j := range all {
		if slices.Contains(want, j.Status) {
			out = append(out, j)
		}
	}
	return out, nil
}

// Wait shows a job; with a wait, it long-polls: the answer comes when the job's status is
// not seen (empty: its status when the request came), or is final, or when the wait (at
// most a minute) is up. A job in review is waited through: the answer comes at the
// reviewers' decision, so that a client following a job sees each change at once. The
// status is the one p sees (View): a vendor's long poll of a production job answers at a
// release quantum, never at the moment the run ended.
func (s *Service) Wait(ctx context.Context, p policy.Principal, id, seen string, wait time.Duration) (api.Job, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		woken := s.changed.wait() // taken before reading, so that no change is missed
		var j *Job
		err := s.DB.View(ctx, func(tx store.Tx) error {
			var err error
			j, err = Load(ctx, tx, p, id)
			return err
		})
		if err != nil {
			return api.Job{}, err
		}
		v := s.View(p, j)
		if seen == "" {
			seen = v.Status
		}
		if wait == 0 || v.Status != seen || Final(v.Status) {
			return v, nil
		}
		// What p sees can change at a release quantum without the job changing.
		var revealed <-chan time.Time
		var reveal *time.Timer
		if q := s.quantum(); p.Role == policy.Vendor && q > 0 {
			if at := nextReveal(j, s.Rec.Now(), q); !at.IsZero() {
				reveal = time.NewTimer(at.Sub(s.Rec.Now()))
				revealed = reveal.C
			}
		}
		select {
		case <-woken:
		case <-revealed:
		case <-deadline.C:
			wait = 0
		case <-ctx.Done():
			wait = -1
		}
		if reveal != nil {
			reveal.Stop()
		}
		if wait < 0 {
			return api.Job{}, ctx.Err()
		}
	}
}

// Final reports whether a job in status can never change again.
func Final(status string) bool {
	_, moves := next[status]
	return !moves
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

// Cancel cancels a queued, running or unreviewed job. A job that never ran gets its
// reservation back; one that ran keeps its spend, whatever happens to its output.
func (s *Service) Cancel(ctx context.Context, p policy.Principal, id string) (api.Job, error) {
	var j *Job
	err := s.DB.Update(ctx, func(tx store.Tx) error {
		var err error
		if j, err = Load(ctx, tx, p, id); err != nil {
			return err
		}
		if seen := s.View(p, j).Status; p.Role == policy.Vendor && (seen == Queued || seen == Running) &&
			(Final(j.Status) || j.Status == Released) {
			// The run ended (it failed, or reviewers even decided on its output) but the
			// vendor may not know yet: the job is canceled as one in review would be, output
			// and all, so that the answer does not tell it.
			j.Status = Review
		}
		switch j.Status {
		case Queued, Running, Review:
		default:
			return fmt.Errorf("%w: job %s is %s and can no longer be canceled", policy.ErrConflict, j.ID, s.View(p, j).Status)
		}
		if j.Status == Review {
			if err := tx.DeleteOutput(ctx, j.ID); err != nil {
				return err
			}
		}
		if j.Status == Queued {
			if err := s.ledger.Refund(ctx, tx, j.ID); err != nil {
				return err
			}
		}
		if err := j.Move(Canceled); err != nil {
			return err
		}
		j.Body.Message = "canceled by " + string(p.Role)
		j.Body.Finished = s.Rec.Now()
		if err := j.Put(ctx, tx, s.Rec.Now()); err != nil {
			return err
		}
		return s.Rec.Record(ctx, tx, p, "job.cancel", "job/"+j.ID, nil)
	})
	if err != nil {
		return api.Job{}, err
	}
	s.sched.cancel(j.ID)
	s.changed.notify()
	return s.View(p, j), nil
}

// Where lists the jobs matching f that p may see.
func (s *Service) Where(ctx context.Context, p policy.Principal, f store.JobFilter) ([]api.Job, error) {
	out := []api.Job{}
	err := s.DB.View(ctx, func(tx store.Tx) error {
		js, err := tx.Jobs(ctx, f)
		if err != nil {
			return err
		}
		for _, sj := range js {
			if !policy.CanSeeTenantObject(p, sj.Tenant) {
				continue
			}
			j, err := Decode(sj)
			if err != nil {
				return err
			}
			out = append(out, s.View(p, j))
		}
		return nil
	})
	return out, err
}

// requestDigest is the SHA-256 of a request without its idempotency key, in the JSON form
// encoding/json writes (fields in order, map keys sorted): two requests that decode alike
// have the same digest.
func requestDigest(req api.SubmitJob) (string, error) {
	req.IdempotencyKey = ""
	b, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// tenantOf is whose limits a principal's submissions count against: its tenant's, or its
// own for a principal of no tenant.
func tenantOf(p policy.Principal) string {
	if p.Tenant != "" {
		return p.Tenant
	}
	return "principal " + p.ID
}
