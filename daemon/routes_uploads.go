package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// uploadRoutes are a provider's data-file uploads: started with their size and digest, sent
// in parts of at most catalog.MaxUploadChunk bytes at the offset the daemon holds (resumable),
// then registered by ID.
func (s *Server) uploadRoutes(mux interface {
	Handle(string, http.Handler)
}) {
	mux.Handle("POST /v1/uploads", s.authed(s.startUpload, policy.ActDatasetRegister, maxJSONBody))
	mux.Handle("GET /v1/uploads/{id}", s.authed(s.uploadStatus, policy.ActDatasetRegister, maxJSONBody))
	mux.Handle("PATCH /v1/uploads/{id}", s.authed(s.appendUpload, policy.ActDatasetRegister, catalog.MaxUploadChunk))
}

func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusCreated, func(ctx context.Context, req api.StartUpload) (api.Upload, error) {
		return s.catalog.StartUpload(ctx, p, req)
	})
}

func (s *Server) uploadStatus(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.catalog.UploadStatus(r.Context(), p, r.PathValue("id"))
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) appendUpload(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || off < 0 {
		return fmt.Errorf("%w: give ?offset=N, the bytes the daemon holds (GET /v1/uploads/{id})", policy.ErrInvalid)
	}
	out, err := s.catalog.AppendUpload(r.Context(), p, r.PathValue("id"), off, r.Body)
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return fmt.Errorf("%w: a part of an upload is at most %s; send the rest from the offset the daemon holds", ErrTooLarge, size(mb.Limit))
	}
	return reply(w, http.StatusOK, out, err)
}

// versionRoutes are a dataset's versions: listed, and a new one registered explicitly.
func (s *Server) versionRoutes(mux interface {
	Handle(string, http.Handler)
}) {
	mux.Handle("GET /v1/datasets/{name}/versions", s.authed(s.datasetVersions, policy.ActDatasetRead, maxJSONBody))
	mux.Handle("POST /v1/datasets/{name}/versions", s.authed(s.updateDataset, policy.ActDatasetRegister, maxJSONBody))
}

func (s *Server) datasetVersions(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.catalog.Versions(r.Context(), p, r.PathValue("name"))
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) updateDataset(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusCreated, func(ctx context.Context, req api.RegisterDataset) (api.DatasetVersions, error) {
		return s.catalog.Update(ctx, p, r.PathValue("name"), req)
	})
}
