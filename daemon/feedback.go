package daemon

import (
	"net/http"

	"github.com/veil-dp/veil/catalog/feedback"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

func (s *Server) submitFeedback(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActFeedbackSubmit); err != nil {
		return err
	}
	var req api.SubmitFeedback
	if err := readJSON(r, &req); err != nil {
		return err
	}
	out, err := s.feedback.Submit(r.Context(), p, r.PathValue("name"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listFeedback(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActFeedbackRead); err != nil {
		return err
	}
	q := r.URL.Query()
	out, err := s.feedback.List(r.Context(), p, q.Get("dataset"), q.Get("status"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) resolveFeedback(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := feedback.MayResolve(p); err != nil {
		return err
	}
	var req api.ResolveFeedback
	if err := readJSON(r, &req); err != nil {
		return err
	}
	out, err := s.feedback.Resolve(r.Context(), p, r.PathValue("id"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
