package jobs

import "time"

// Observer is told what jobs do, for the operator's metrics: kinds, tenants, statuses and
// durations, never anything of a job's data or query. Its methods run on the goroutine that
// runs the job and must not block.
type Observer interface {
	// Started: a job of kind left tenant's queue after waiting waited since its submission.
	Started(tenant, kind string, waited time.Duration)
	// Ran: a job's run ended with outcome (review, dev, failed or canceled) after took.
	Ran(kind, outcome string, took time.Duration)
	// Decided: a review decision left a job of kind in status.
	Decided(kind, status string)
}

// QueueDepths returns the number of jobs waiting for a worker, per tenant with any.
func (s *Service) QueueDepths() map[string]int {
	out := map[string]int{}
	if s.sched == nil {
		return out
	}
	s.sched.mu.Lock()
	defer s.sched.mu.Unlock()
	for t, q := range s.sched.queues {
		out[t] = len(q)
	}
	return out
}

// Changed tells the readers long-polling j (GET /v1/jobs/{id}?wait=) that its status changed
// outside a run, by a review decision, and the Observer what the decision made of it.
func (s *Service) Changed(j *Job) {
	s.changed.notify()
	if s.Observe != nil {
		s.Observe.Decided(j.Body.Kind, j.Status)
	}
}

// ran is what runJob tells the Observer about a run.
type ran struct {
	kind  string
	dev   bool
	start time.Time // zero: the job did not start
}

// observeRun tells the Observer how a run that started ended.
func (s *Service) observeRun(r *ran, err error, canceled bool) {
	if s.Observe == nil || r.start.IsZero() {
		return
	}
	outcome := Review
	switch {
	case err != nil && canceled:
		outcome = Canceled
	case err != nil:
		outcome = Failed
	case r.dev:
		outcome = Dev
	}
	s.Observe.Ran(r.kind, outcome, time.Since(r.start))
}
