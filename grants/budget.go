package grants

import (
	"context"
	"errors"

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
