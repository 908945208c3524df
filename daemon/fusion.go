package daemon

import (
	"net/http"

	"github.com/veil-dp/veil/policy"
)

// maxFusionBytes bounds a vendor's table for fusion.
const maxFusionBytes = 256 << 20

func (s *Server) uploadFusion(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActJobSubmit); err != nil {
		return err
	}
	q := r.URL.Query()
	out, err := s.fusion.Upload(r.Context(), p, r.PathValue("id"), r.PathValue("name"), q.Get("key"), q.Get("match"),
		func() ([]byte, error) { return readUpload(r, maxFusionBytes, "upload") })
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) approveFusion(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActGrantSuspend); err != nil {
		return err
	}
	out, err := s.fusion.Approve(r.Context(), p, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
