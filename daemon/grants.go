package daemon

import (
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

func (s *Server) applyGrant(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActGrantApply); err != nil {
		return err
	}
	var req api.ApplyGrant
	if err := readJSON(r, &req); err != nil {
		return err
	}
	g, err := s.grants.Apply(r.Context(), p, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, g)
	return nil
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActGrantRead); err != nil {
		return err
	}
	out, err := s.grants.List(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) showGrant(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActGrantRead); err != nil {
		return err
	}
	g, err := s.grants.Show(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

// actOnGrant handles approve, reject, suspend, reinstate and revoke.
func (s *Server) actOnGrant(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	var req api.Decide
	if err := readJSON(r, &req); err != nil {
		return err
	}
	action := r.PathValue("action")
	g, err := s.grants.Act(r.Context(), p, r.PathValue("id"), action, req)
	if err != nil {
		return err
	}
	if action == "revoke" || action == "reject" {
		// A fused upload goes with its grant.
		if err := s.fusion.Sweep(r.Context()); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}
