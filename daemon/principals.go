package daemon

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (s *Server) createPrincipal(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActPrincipalManage); err != nil {
		return err
	}
	var req api.CreatePrincipal
	if err := readJSON(r, &req); err != nil {
		return err
	}
	role, err := policy.ParseRole(req.Role)
	if err != nil {
		return err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 100 {
		return fmt.Errorf("%w: give the principal a name (at most 100 characters)", errInvalid)
	}
	if role.NeedsTenant() && !tenantRE.MatchString(req.Tenant) {
		return fmt.Errorf("%w: a %s needs --tenant: lower-case letters, digits and '-'", errInvalid, role)
	}
	if !role.NeedsTenant() && req.Tenant != "" {
		return fmt.Errorf("%w: a %s belongs to no tenant; drop --tenant", errInvalid, role)
	}
	tok, hash := newToken()
	sp := store.Principal{ID: newID("p"), Name: req.Name, Role: string(role), Tenant: req.Tenant, TokenHash: hash, Created: s.now()}
	err = s.db.Update(r.Context(), func(tx store.Tx) error {
		if err := tx.PutPrincipal(r.Context(), sp); err != nil {
			return err
		}
		return s.record(r.Context(), tx, p, "principal.create", "principal/"+sp.ID, map[string]string{"role": sp.Role, "tenant": sp.Tenant, "name": sp.Name})
	})
	if err != nil {
		return err
	}
	out := toAPIPrincipal(sp)
	out.Token = tok
	writeJSON(w, http.StatusCreated, out)
	return nil
}

func toAPIPrincipal(sp store.Principal) api.Principal {
	return api.Principal{ID: sp.ID, Name: sp.Name, Role: sp.Role, Tenant: sp.Tenant, Created: sp.Created, Revoked: sp.Revoked}
}

func (s *Server) listPrincipals(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActPrincipalManage); err != nil {
		return err
	}
	var out []api.Principal
	err := s.db.View(r.Context(), func(tx store.Tx) error {
		ps, err := tx.Principals(r.Context())
		for _, sp := range ps {
			out = append(out, toAPIPrincipal(sp))
		}
		return err
	})
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
	id := r.PathValue("id")
	if id == p.ID {
		return fmt.Errorf("%w: you cannot revoke your own token; ask another operator", errConflict)
	}
	var sp store.Principal
	err := s.db.Update(r.Context(), func(tx store.Tx) error {
		var err error
		if sp, err = tx.Principal(r.Context(), id); err != nil {
			return err
		}
		sp.Revoked = true
		if err := tx.PutPrincipal(r.Context(), sp); err != nil {
			return err
		}
		return s.record(r.Context(), tx, p, "principal.revoke", "principal/"+id, nil)
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toAPIPrincipal(sp))
	return nil
}
