package daemon

import (
	"net/http"

	"github.com/veil-dp/veil/policy"
)

func (s *Server) showBudget(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActBudgetRead); err != nil {
		return err
	}
	out, err := s.grants.Budgets(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
