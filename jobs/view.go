package jobs

import (
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
)

// What anyone but the operator observes of a production job (one on the real data, not a
// dev run on the twins) must not depend on that data beyond its protected output:
//
//   - its metering (wall and CPU time, peak memory, output counts) is the operator's only;
//   - a vendor sees its status change only at whole release quanta after the submission
//     (the job "runs" until the first quantum boundary after its run really ended, and is
//     "queued" until the first one after it really started), in every answer: show, list,
//     long polls, cancel and export;
//   - how it failed is reduced to a class (launch.ForVendor, at the failure).
//
// A dev run on the twins holds no real person and is shown exactly.

// View is j as p may observe it now. A job whose start is not yet on disk is shown queued,
// as a crash of the machine would leave it, so that no one sees a status go back.
func (s *Service) View(p policy.Principal, j *Job) api.Job {
	if j.Status == Running && s.isUnstored(j.ID) {
		q := *j
		q.Status, q.Body.Started = Queued, time.Time{}
		j = &q
	}
	q := s.quantum()
	var now time.Time
	if p.Role == policy.Vendor && q > 0 { // the clock is read only when it matters (tests tick it)
		now = s.Rec.Now()
	}
	return view(j, p.Role, now, q)
}

// quantum is the release quantum in force: the operator's, the default when unset, none only
// in tests that ask for exact timing by name.
func (s *Service) quantum() time.Duration {
	if s.Config.ExactReleaseTimingForTests {
		return 0
	}
	if s.Config.ReleaseQuantum <= 0 {
		return platform.DefaultReleaseQuantum
	}
	return s.Config.ReleaseQuantum
}

// reveal is when a vendor first sees an event of a job submitted at created that happened
// at t: the first whole quantum after the submission at or after t (never the submission
// itself). With no quantum it is t.
func reveal(created, t time.Time, q time.Duration) time.Time {
	if q <= 0 || t.IsZero() {
		return t
	}
	n := max(1, (t.Sub(created)+q-1)/q)
	return created.Add(n * q)
}

// view is j as a principal of role observes it at now with release quantum q.
func view(j *Job, role policy.Role, now time.Time, q time.Duration) api.Job {
	out := j.API()
	if j.Body.Dev {
		return out
	}
	if role != policy.Operator {
		out.Metering = nil
	}
	if role != policy.Vendor || q <= 0 {
		return out
	}
	switch j.Status {
	case Queued:
		return out
	case Canceled:
		// The canceller's doing, seen at once; when it started is seen only in quanta, and
		// not at all if the vendor could not have seen it before the cancellation.
		out.Started = reveal(j.Created, j.Body.Started, q)
		if out.Started.After(j.Body.Finished) {
			out.Started = time.Time{}
		}
		return out
	}
	started := reveal(j.Created, j.Body.Started, q)
	if j.Status != Running && !now.Before(reveal(j.Created, j.Body.Finished, q)) {
		out.Started, out.Finished = started, reveal(j.Created, j.Body.Finished, q)
		return out
	}
	// The run has not ended as far as the vendor may know.
	hidden := api.Job{ID: out.ID, Grant: out.Grant, Tenant: out.Tenant, Submitter: out.Submitter, Mode: out.Mode, SQL: out.SQL,
		Created: out.Created, Status: Queued}
	if !j.Body.Started.IsZero() && !now.Before(started) {
		hidden.Status, hidden.Started = Running, started
	}
	return hidden
}

// nextReveal is when the view of j a vendor has changes next without j changing, or zero if
// it will not.
func nextReveal(j *Job, now time.Time, q time.Duration) time.Time {
	if q <= 0 || j.Body.Dev {
		return time.Time{}
	}
	for _, t := range []time.Time{j.Body.Started, j.Body.Finished} {
		if r := reveal(j.Created, t, q); !t.IsZero() && r.After(now) {
			return r
		}
	}
	return time.Time{}
}

// starting records that job id's start is committed but not yet on disk (on), or that it
// is on disk or never committed (off).
func (s *Service) starting(id string, on bool) {
	s.unstoredMu.Lock()
	defer s.unstoredMu.Unlock()
	if on {
		if s.unstored == nil {
			s.unstored = map[string]bool{}
		}
		s.unstored[id] = true
	} else {
		delete(s.unstored, id)
	}
}

func (s *Service) isUnstored(id string) bool {
	s.unstoredMu.Lock()
	defer s.unstoredMu.Unlock()
	return s.unstored[id]
}
