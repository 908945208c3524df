package daemon

import (
	"context"
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/kinds/hescore"
	"github.com/veil-dp/veil/policy"
)

const (
	// maxBlobBytes bounds an he upload (hescore reads them back with the same bound).
	maxBlobBytes = hescore.MaxUpload
	// maxProgramBytes bounds a custom job's program.
	maxProgramBytes = 256 << 20
)

// uploadBlob takes a vendor's public key bundle or encrypted model for he-score jobs.
func (s *Server) uploadBlob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	read, upload := s.bodyOrUpload(r, p, "upload", maxBlobBytes)
	body, err := read()
	if err != nil {
		return err
	}
	out, err := s.hescore.Upload(r.Context(), p, body)
	if err == nil && upload != "" {
		s.catalog.DropUpload(p, upload)
	}
	return reply(w, http.StatusCreated, out, err)
}

// uploadProgram takes a vendor's program for custom jobs.
func (s *Server) uploadProgram(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	body, err := readBody(r, "program")
	if err != nil {
		return err
	}
	out, err := s.custom.UploadProgram(r.Context(), p, body)
	return reply(w, http.StatusCreated, out, err)
}

func (s *Server) registerRuntime(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusCreated, func(ctx context.Context, req api.RegisterRuntime) (api.Runtime, error) {
		return s.custom.RegisterRuntime(ctx, p, req)
	})
}

func (s *Server) listRuntimes(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return reply(w, http.StatusOK, s.custom.Runtimes(), nil)
}
