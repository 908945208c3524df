package daemon

import (
	"fmt"
	"net/http"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

func (s *Server) submitJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobSubmit); err != nil {
		return err
	}
	var req api.SubmitJob
	if err := readJSON(r, &req); err != nil {
		return err
	}
	out, err := s.jobs.Submit(r.Context(), p, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, out)
	return nil
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobRead); err != nil {
		return err
	}
	out, err := s.jobs.List(r.Context(), p, r.URL.Query().Get("grant"), r.URL.Query().Get("status"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// showJob shows a job; ?wait=DURATION long-polls for its next change.
func (s *Server) showJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobRead); err != nil {
		return err
	}
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			return fmt.Errorf("%w: wait=%q: give a duration up to 1m, for example wait=30s", policy.ErrInvalid, v)
		}
		wait = d
	}
	out, err := s.jobs.Wait(r.Context(), p, r.PathValue("id"), wait)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobCancel); err != nil {
		return err
	}
	out, err := s.jobs.Cancel(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// submitDev runs a job on the dev twins at once: the request is a job's, the dev flag the
// route's.
func (s *Server) submitDev(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobSubmit); err != nil {
		return err
	}
	var req api.SubmitJob
	if err := readJSON(r, &req); err != nil {
		return err
	}
	out, err := s.jobs.SubmitDev(r.Context(), p, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) showDev(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobRead); err != nil {
		return err
	}
	out, err := s.jobs.DevOutput(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) promoteDev(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobSubmit); err != nil {
		return err
	}
	out, err := s.jobs.Promote(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, out)
	return nil
}
