package daemon

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/policy"
)

func (s *Server) applyGrant(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusCreated, func(ctx context.Context, req api.ApplyGrant) (*policy.Grant, error) {
		return s.grants.Apply(ctx, p, req)
	})
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.grants.List(r.Context(), p)
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) showGrant(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.grants.Show(r.Context(), p, r.PathValue("id"))
	return reply(w, http.StatusOK, out, err)
}

// actOnGrant handles approve, reject, suspend, reinstate and revoke; who may is the stage's
// and the action's, decided by the grants service.
func (s *Server) actOnGrant(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	action := r.PathValue("action")
	return answer(w, r, http.StatusOK, func(ctx context.Context, req api.Decide) (*policy.Grant, error) {
		g, err := s.grants.Act(ctx, p, r.PathValue("id"), action, req)
		if err == nil && (action == "revoke" || action == "reject") {
			// A fused upload goes with its grant.
			err = s.fusion.Sweep(ctx)
		}
		return g, err
	})
}

func (s *Server) budgetSpends(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	q := r.URL.Query()
	num := func(name string, def int) (int, error) {
		if q.Get(name) == "" {
			return def, nil
		}
		n, err := strconv.Atoi(q.Get(name))
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%w: %s must be a whole number ≥ 0", policy.ErrInvalid, name)
		}
		return n, nil
	}
	offset, err := num("offset", 0)
	if err != nil {
		return err
	}
	limit, err := num("limit", 200)
	if err != nil {
		return err
	}
	if limit < 1 || limit > grants.MaxSpendPage {
		return fmt.Errorf("%w: limit must be in 1..%d", policy.ErrInvalid, grants.MaxSpendPage)
	}
	out, err := s.grants.Spends(r.Context(), p, q.Get("dataset"), q.Get("grant"), offset, limit)
	return reply(w, http.StatusOK, out, err)
}

func (s *Server) showBudget(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	out, err := s.grants.Budgets(r.Context(), p)
	return reply(w, http.StatusOK, out, err)
}
