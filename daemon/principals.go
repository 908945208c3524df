package daemon

import (
	"context"
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.principals.Whoami(r.Context(), p)
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) setZone(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusOK, func(ctx context.Context, req api.SetZone) (api.Principal, error) {
		return s.principals.SetZone(ctx, p, req)
	})
}

func (s *Server) createPrincipal(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusCreated, func(ctx context.Context, req api.CreatePrincipal) (api.Principal, error) {
		return s.principals.Create(ctx, p, req)
	})
}

func (s *Server) listPrincipals(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.principals.List(r.Context())
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) revokePrincipal(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.principals.Revoke(r.Context(), p, r.PathValue("id"))
	if err == nil {
		// A revoked reviewer's approvals stop counting: releases that rested on them go
		// back to review now (Export checks again at each download).
		err = s.review.Reopen(r.Context(), out.ID)
	}
	return reply(w, http.StatusOK, out, err)
}
