package grants

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// admissible refuses, at application time, a grant that its review could only end in
// failure: one for a scenario its tenant already holds (a grant pending, active or
// suspended), or one asking a budget slice larger than what a dataset it reads has left to
// give to grants (its approval would fail in Allocate).
func (s *Service) admissible(ctx context.Context, tx store.Tx, g *policy.Grant) error {
	held, err := tx.Grants(ctx, g.Tenant)
	if err != nil {
		return err
	}
	now := s.Rec.Now()
	for _, sg := range held {
		o, err := Decode(sg)
		if err != nil {
			return err
		}
		switch o.Effective(now) {
		case policy.StatusPending, policy.StatusActive, policy.StatusSuspended:
		default:
			continue
		}
		if strings.EqualFold(strings.TrimSpace(o.Scenario), strings.TrimSpace(g.Scenario)) {
			return fmt.Errorf("%w: tenant %s already holds grant %s (%s) for the scenario %q: use it, or have it revoked before applying again",
				policy.ErrConflict, g.Tenant, o.ID, o.Effective(now), o.Scenario)
		}
	}
	if !slices.Contains(g.Modes, policy.ModeDP) && !(slices.Contains(g.Modes, policy.ModeModel) && g.Budget.Epsilon > 0) {
		return nil
	}
	want, err := ledger.Total(g.Budget.Epsilon, g.Budget.Delta)
	if err != nil {
		return fmt.Errorf("%w: %v", policy.ErrInvalid, err)
	}
	for _, d := range g.Datasets {
		total, allocated, _, err := ledger.Use(ctx, tx, d.Name)
		if err != nil {
			return err
		}
		if free := total.Sub(allocated); !free.Covers(want) {
			return &overBudget{dataset: d.Name, free: free, total: total, want: want}
		}
	}
	return nil
}

// overBudget refuses an application asking more than a dataset has left to give. What the
// dataset has left says how much other grants hold of it, which is not the applicant's to
// know: the vendor reads only that the grant asks too much (Error), the operator the exact
// figures, in the log and the audit entry of the refusal (detail).
type overBudget struct {
	dataset           string
	free, total, want ledger.Amount
}

func (e *overBudget) Error() string {
	return fmt.Sprintf("%v: the grant asks more than dataset %s can give; ask the data bureau (the authority) what it can give, then apply for less",
		ledger.ErrBudget, e.dataset)
}

func (e *overBudget) Unwrap() error { return ledger.ErrBudget }

func (e *overBudget) detail() map[string]string {
	return map[string]string{"reason": "budget", "dataset": e.dataset, "left": e.free.String(), "total": e.total.String(),
		"asked": e.want.String(), "short": ledger.Short(e.free, e.want)}
}
