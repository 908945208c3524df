package grants

import (
	"context"
	"errors"
	"fmt"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Budgets is what p may see of the ledger (`veil budget show`): vendors see their grants,
// providers their datasets and the grants on them, the platform roles everything.
func (s *Service) Budgets(ctx context.Context, p policy.Principal) (api.Budgets, error) {
	out := api.Budgets{Datasets: []api.DatasetBudget{}, Grants: []api.GrantBudget{}}
	err := s.DB.View(ctx, func(tx store.Tx) error {
		if p.Role != policy.Vendor {
			sets, err := tx.Datasets(ctx)
			if err != nil {
				return err
			}
			for _, d := range sets {
				if p.Role == policy.Provider && d.Provider != p.Tenant {
					continue
				}
				total, allocated, spent, err := ledger.Use(ctx, tx, d.Name)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				out.Datasets = append(out.Datasets, api.DatasetBudget{Dataset: d.Name, Provider: d.Provider, Total: ledger.APIAmount(total),
					Allocated: ledger.APIAmount(allocated), Spent: ledger.APIAmount(spent), Free: ledger.APIAmount(total.Sub(allocated))})
			}
		}
		tenant := ""
		if p.Role == policy.Vendor {
			tenant = p.Tenant
		}
		gs, err := tx.Grants(ctx, tenant)
		if err != nil {
			return err
		}
		for _, sg := range gs {
			g, err := Decode(sg)
			if err != nil {
				return err
			}
			if !policy.CanSeeGrant(p, g) && p.Role != policy.Auditor {
				continue
			}
			schemas, _, err := catalog.Load(ctx, tx, Datasets(g))
			if err != nil {
				return err
			}
			gb, err := ledger.GrantBudgets(ctx, tx, g, schemas)
			if err != nil {
				return err
			}
			for _, b := range gb {
				if p.Role == policy.Provider {
					if sch := schemas[b.Dataset]; sch == nil || sch.Provider != p.Tenant {
						continue
					}
				}
				out.Grants = append(out.Grants, b)
			}
		}
		return nil
	})
	return out, err
}

// MaxSpendPage bounds a page of spend history.
const MaxSpendPage = 1000

// Spends is a page of the spend history of dataset (narrowed to grant when it is not
// empty) that p may see: providers only of their own datasets, vendors only of their own
// grants, the platform roles all of it. limit is clamped to 1..MaxSpendPage.
func (s *Service) Spends(ctx context.Context, p policy.Principal, dataset, grant string, offset, limit int) (api.BudgetSpends, error) {
	if dataset == "" {
		return api.BudgetSpends{}, fmt.Errorf("%w: name the dataset whose spends to list (dataset=NAME)", policy.ErrInvalid)
	}
	if offset < 0 {
		return api.BudgetSpends{}, fmt.Errorf("%w: offset must be ≥ 0", policy.ErrInvalid)
	}
	if limit <= 0 || limit > MaxSpendPage {
		limit = MaxSpendPage
	}
	out := api.BudgetSpends{Dataset: dataset, Grant: grant, Offset: offset, Spends: []api.BudgetSpend{}}
	notFound := fmt.Errorf("%w: no budget of dataset %s%s for you to see; `veil budget show` lists the ones you may", policy.ErrNotFound, dataset, map[bool]string{true: " under grant " + grant}[grant != ""])
	err := s.DB.View(ctx, func(tx store.Tx) error {
		d, err := tx.Dataset(ctx, dataset)
		if errors.Is(err, store.ErrNotFound) {
			return notFound
		}
		if err != nil {
			return err
		}
		if p.Role == policy.Provider && d.Provider != p.Tenant {
			return notFound
		}
		// The grants whose spends p may see: nil means all of them.
		var mine map[string]bool
		if p.Role == policy.Vendor {
			mine = map[string]bool{}
			gs, err := tx.Grants(ctx, p.Tenant)
			if err != nil {
				return err
			}
			for _, sg := range gs {
				if g, err := Decode(sg); err == nil && policy.CanSeeGrant(p, g) {
					mine[g.ID] = true
				}
			}
		}
		if grant != "" {
			if mine != nil && !mine[grant] {
				return notFound
			}
			sl, err := tx.Slices(ctx, grant, dataset)
			if err != nil {
				return err
			}
			if len(sl) == 0 {
				return notFound
			}
			out.Limit = ledger.APIAmount(ledger.Amount{Eps: sl[0].Eps, Delta: sl[0].Delta})
		} else if mine == nil {
			eps, delta, err := tx.Budget(ctx, dataset)
			if errors.Is(err, store.ErrNotFound) {
				return notFound
			}
			if err != nil {
				return err
			}
			out.Limit = ledger.APIAmount(ledger.Amount{Eps: eps, Delta: delta})
		} else {
			// A vendor's view of a dataset: the sum of its own slices of it.
			var sum ledger.Amount
			for g := range mine {
				sl, err := tx.Slices(ctx, g, dataset)
				if err != nil {
					return err
				}
				for _, x := range sl {
					sum = sum.Add(ledger.Amount{Eps: x.Eps, Delta: x.Delta})
				}
			}
			out.Limit = ledger.APIAmount(sum)
		}
		spends, err := tx.Spends(ctx, grant, dataset, "")
		if err != nil {
			return err
		}
		var sum ledger.Amount
		for _, sp := range spends {
			if sp.Refunded || (mine != nil && !mine[sp.Grant]) {
				continue
			}
			a := ledger.Amount{Eps: sp.Eps, Delta: sp.Delta}
			sum = sum.Add(a)
			if out.Total >= offset && len(out.Spends) < limit {
				out.Spends = append(out.Spends, api.BudgetSpend{At: sp.At.UTC(), Job: sp.Job, Grant: sp.Grant, Dataset: sp.Dataset,
					Spent: ledger.APIAmount(a), Sum: ledger.APIAmount(sum)})
			}
			out.Total++
		}
		if offset+len(out.Spends) < out.Total {
			out.Next = offset + len(out.Spends)
		}
		return nil
	})
	return out, err
}
