package daemon

import (
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	writeJSON(w, http.StatusOK, api.Principal{ID: p.ID, Name: p.Name, Role: string(p.Role), Tenant: p.Tenant})
	return nil
}

func (s *Server) createPrincipal(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActPrincipalManage); err != nil {
		return err
	}
	var req api.CreatePrincipal
	if err := readJSON(r, &req); err != nil {
		return err
	}
	out, err := s.principals.Create(r.Context(), p, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func (s *Server) listPrincipals(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActPrincipalManage); err != nil {
		return err
	}
	out, err := s.principals.List(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) revokePrincipal(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActPrincipalManage); err != nil {
		return err
	}
	out, err := s.principals.Revoke(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
