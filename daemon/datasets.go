package daemon

import (
	"context"
	"net/http"

	"github.com/veil-dp/veil/catalog/feedback"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// maxFusionBytes bounds a vendor's table for fusion.
const maxFusionBytes = 256 << 20

func (s *Server) registerDataset(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusCreated, func(ctx context.Context, req api.RegisterDataset) (api.Dataset, error) {
		return s.catalog.Register(ctx, p, req)
	})
}

func (s *Server) listDatasets(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.catalog.List(r.Context(), p)
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) showDataset(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.catalog.Show(r.Context(), p, r.PathValue("name"))
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) buildTwin(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusAccepted, func(ctx context.Context, req api.BuildTwin) (api.Job, error) {
		return s.twins.Build(ctx, p, r.PathValue("name"), req)
	})
}

func (s *Server) uploadFusion(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	q := r.URL.Query()
	read, upload := s.bodyOrUpload(r, p, "upload", maxFusionBytes)
	out, err := s.fusion.Upload(r.Context(), p, r.PathValue("id"), r.PathValue("name"), q.Get("key"), q.Get("match"), read)
	if err == nil && upload != "" {
		s.catalog.DropUpload(p, upload)
	}
	return reply(w, http.StatusCreated, out, err)
}

func (s *Server) approveFusion(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.fusion.Approve(r.Context(), p, r.PathValue("name"))
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) submitFeedback(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusCreated, func(ctx context.Context, req api.SubmitFeedback) (api.Feedback, error) {
		return s.feedback.Submit(ctx, p, r.PathValue("name"), req)
	})
}

func (s *Server) listFeedback(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	q := r.URL.Query()
	out, err := s.feedback.List(r.Context(), p, q.Get("dataset"), q.Get("status"))
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) resolveFeedback(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	// Who may resolve is checked before the body is read.
	if err := feedback.MayResolve(p); err != nil {
		return err
	}
	return answer(w, r, http.StatusOK, func(ctx context.Context, req api.ResolveFeedback) (api.Feedback, error) {
		return s.feedback.Resolve(ctx, p, r.PathValue("id"), req)
	})
}
