package daemon

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/policy"
)

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusAccepted, func(ctx context.Context, req api.SubmitJob) (api.Job, error) {
		return s.jobs.Submit(ctx, p, req)
	})
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.jobs.List(r.Context(), p, r.URL.Query().Get("grant"), r.URL.Query().Get("status"))
	return reply(w, http.StatusOK, out, err)
}

// showJob shows a job; ?wait=DURATION long-polls until its status is not ?seen= (default:
// its status now) or is final.
func (s *Server) showJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	q := r.URL.Query()
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			return fmt.Errorf("%w: wait=%q: give a duration up to 1m, for example wait=30s", policy.ErrInvalid, v)
		}
		wait = d
	}
	seen := q.Get("seen")
	if seen != "" && !slices.Contains(jobStatuses, seen) {
		return fmt.Errorf("%w: seen=%q: give the job status you last saw (%s)", policy.ErrInvalid, seen, strings.Join(jobStatuses, ", "))
	}
	out, err := s.jobs.Wait(r.Context(), p, r.PathValue("id"), seen, wait)
	return reply(w, http.StatusOK, out, err)
}

// jobStatuses are the statuses a job can have, as the API names them.
var jobStatuses = []string{jobs.Queued, jobs.Running, jobs.Review, jobs.Released, jobs.Rejected, jobs.Failed, jobs.Canceled, jobs.Dev}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.jobs.Cancel(r.Context(), p, r.PathValue("id"))
	return reply(w, http.StatusOK, out, err)
}

// submitDev runs a job on the dev twins at once: the request is a job's; that it is a dev
// run is the route's.
func (s *Server) submitDev(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusOK, func(ctx context.Context, req api.SubmitJob) (api.DevOutput, error) {
		return s.jobs.SubmitDev(ctx, p, req)
	})
}

func (s *Server) showDev(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.jobs.DevOutput(r.Context(), p, r.PathValue("id"))
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) promoteDev(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.jobs.Promote(r.Context(), p, r.PathValue("id"))
	return reply(w, http.StatusAccepted, out, err)
}

func (s *Server) listReviews(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.review.List(r.Context(), p)
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) showReview(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.review.Show(r.Context(), p, r.PathValue("id"))
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) decideReview(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusOK, func(ctx context.Context, req api.DecideOutput) (api.Job, error) {
		return s.review.Decide(ctx, p, r.PathValue("id"), req)
	})
}

func (s *Server) getExport(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.review.Export(r.Context(), p, r.PathValue("id"), r.URL.Query().Get("format"))
	return reply(w, http.StatusOK, out, err)
}
