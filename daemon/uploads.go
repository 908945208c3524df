package daemon

import (
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

const (
	// maxBlobBytes bounds an he upload: a public bundle is about 27 MB, an encrypted model of
	// 16 features about 36 MB.
	maxBlobBytes = 256 << 20
	// maxProgramBytes bounds a custom job's program.
	maxProgramBytes = 256 << 20
)

// uploadBlob takes a vendor's public key bundle or encrypted model for he-score jobs.
func (s *Server) uploadBlob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobSubmit); err != nil {
		return err
	}
	body, err := readUpload(r, maxBlobBytes, "upload")
	if err != nil {
		return err
	}
	out, err := s.hescore.Upload(r.Context(), p, body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// uploadProgram takes a vendor's program for custom jobs.
func (s *Server) uploadProgram(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobSubmit); err != nil {
		return err
	}
	body, err := readUpload(r, maxProgramBytes, "program")
	if err != nil {
		return err
	}
	out, err := s.custom.UploadProgram(r.Context(), p, body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) registerRuntime(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActRuntimeManage); err != nil {
		return err
	}
	var req api.RegisterRuntime
	if err := readJSON(r, &req); err != nil {
		return err
	}
	out, err := s.custom.RegisterRuntime(r.Context(), p, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listRuntimes(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActRuntimeRead); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.custom.Runtimes())
	return nil
}
