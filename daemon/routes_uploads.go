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

// uploadRoutes are uploads of files: started with their size and digest, sent in parts of at
// most catalog.MaxUploadChunk bytes at the offset the daemon holds (resumable), then used by
// ID: a provider's data files registered, a vendor's fusion table or he blob given as
// ?upload=ID instead of a body.
func (s *Server) uploadRoutes(mux interface {
	Handle(string, http.Handler)
}) {
	mux.Handle("POST /v1/uploads", s.authed(s.startUpload, policy.ActFileUpload, maxJSONBody))
	mux.Handle("GET /v1/uploads/{id}", s.authed(s.uploadStatus, policy.ActFileUpload, maxJSONBody))
	mux.Handle("PATCH /v1/uploads/{id}", s.authed(s.appendUpload, policy.ActFileUpload, catalog.MaxUploadChunk))
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

// bodyOrUpload returns what reads a request's file: its body, or the completed upload that
// ?upload=ID names (at most limit bytes; then the body must be empty), and the upload's ID.
func (s *Server) bodyOrUpload(r *http.Request, p policy.Principal, what string, limit int64) (func() ([]byte, error), string) {
	id := r.URL.Query().Get("upload")
	if id == "" {
		return func() ([]byte, error) { return readBody(r, what) }, ""
	}
	return func() ([]byte, error) {
		if n, _ := r.Body.Read(make([]byte, 1)); n > 0 {
			return nil, fmt.Errorf("%w: give the %s as the body or as ?upload=ID, not both", policy.ErrInvalid, what)
		}
		return s.catalog.ReadUpload(p, id, limit)
	}, id
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
