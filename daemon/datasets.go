package daemon

import (
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

func (s *Server) registerDataset(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActDatasetRegister); err != nil {
		return err
	}
	var req api.RegisterDataset
	if err := readJSON(r, &req); err != nil {
		return err
	}
	out, err := s.catalog.Register(r.Context(), p, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listDatasets(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActDatasetRead); err != nil {
		return err
	}
	out, err := s.catalog.List(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) showDataset(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActDatasetRead); err != nil {
		return err
	}
	out, err := s.catalog.Show(r.Context(), p, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) buildTwin(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActDatasetRegister); err != nil {
		return err
	}
	var req api.BuildTwin
	if err := readJSON(r, &req); err != nil {
		return err
	}
	out, err := s.twins.Build(r.Context(), p, r.PathValue("name"), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, out)
	return nil
}
