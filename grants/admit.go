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

// MaxPending is how many applications a tenant may have in review at once: each tells its
// vendor, at its last approval, one bit (whether its slice fitted), so that a tenant can
// learn little of what other tenants hold by applying many times.
const MaxPending = 8

// admissible refuses, at application time, a grant that its review could only end in
// failure, from what the vendor may know: one for a scenario its tenant already holds (a
// grant pending, active or suspended), one beyond the tenant's applications in review at once
// (MaxPending), or one asking a budget slice larger than a dataset's whole budget (its
// schema's, which the catalog shows the vendor). What a dataset has left to give is never
// read here: it depends on other tenants' grants, and a refusal that did depend on it would
// let a vendor bisect its ask to learn it. Whether the slice fits is decided at the grant's
// last approval (ledger.Allocate), by the reviewer who may see it.
func (s *Service) admissible(ctx context.Context, tx store.Tx, g *policy.Grant) error {
	held, err := tx.Grants(ctx, g.Tenant)
	if err != nil {
		return err
	}
	now := s.Rec.Now()
	pending := 0
	for _, sg := range held {
		o, err := Decode(sg)
		if err != nil {
			return err
		}
		switch o.Effective(now) {
		case policy.StatusPending:
			pending++
		case policy.StatusActive, policy.StatusSuspended:
		default:
			continue
		}
		if strings.EqualFold(strings.TrimSpace(o.Scenario), strings.TrimSpace(g.Scenario)) {
			return fmt.Errorf("%w: tenant %s already holds grant %s (%s) for the scenario %q: use it, or have it revoked before applying again",
				policy.ErrConflict, g.Tenant, o.ID, o.Effective(now), o.Scenario)
		}
	}
	if err := withinTotals(ctx, tx, g); err != nil {
		return err
	}
	if pending >= MaxPending {
		return fmt.Errorf("%w: tenant %s has %d applications in review, the most at once: wait for their decisions, or ask the data bureau to reject those you no longer need",
			policy.ErrConflict, g.Tenant, pending)
	}
	return nil
}

// withinTotals refuses a slice larger than a dataset's whole budget.
func withinTotals(ctx context.Context, tx store.Tx, g *policy.Grant) error {
	if !slices.Contains(g.Modes, policy.ModeDP) && !(slices.Contains(g.Modes, policy.ModeModel) && g.Budget.Epsilon > 0) {
		return nil
	}
	want, err := ledger.Total(g.Budget.Epsilon, g.Budget.Delta)
	if err != nil {
		return fmt.Errorf("%w: %v", policy.ErrInvalid, err)
	}
	for _, d := range g.Datasets {
		var total ledger.Amount
		if total.Eps, total.Delta, err = tx.Budget(ctx, d.Name); err != nil {
			return err
		}
		if !total.Covers(want) {
			return fmt.Errorf("%w: the grant asks %s of dataset %s, more than its whole budget (%s, its schema's budget in `veil dataset show %s`): apply for at most that",
				policy.ErrInvalid, want, d.Name, total, d.Name)
		}
	}
	return nil
}
