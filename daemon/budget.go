package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/dp"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// The budget ledger. Every dataset has a total (its provider's declaration), grants receive
// slices of it when they are approved, and jobs spend from their grant's slices. All sums
// are of integer units, inside one store transaction: the store serializes writers, so a
// check and the write that depends on it can never interleave with another's.

// errBudget marks a job refused because its grant's slice cannot pay for it.
var errBudget = fmt.Errorf("%w: budget exhausted", policy.ErrConflict)

func amount(eps, delta int64) api.Amount {
	// The floats are parsed from the exact decimals, so that 1e-6 prints as 1e-06 and not as
	// the nearest binary neighbour of a product.
	e, _ := strconv.ParseFloat(dp.FormatEpsilon(eps), 64)
	d, _ := strconv.ParseFloat(dp.FormatDelta(delta), 64)
	return api.Amount{Epsilon: e, Delta: d, EpsilonUnits: eps, DeltaUnits: delta}
}

func apiAmount(a dp.Amount) api.Amount { return amount(a.Eps, a.Delta) }

// setBudget records a newly registered dataset's total.
func setBudget(ctx context.Context, tx store.Tx, sch *policy.Schema) error {
	total, err := dp.Total(sch.Budget.Epsilon, sch.Budget.Delta)
	if err != nil {
		return fmt.Errorf("%w: dataset %s: %v", policy.ErrInvalid, sch.Name, err)
	}
	return tx.SetBudget(ctx, sch.Name, total.Eps, total.Delta)
}

// datasetUse sums the slices and spends on a dataset.
func datasetUse(ctx context.Context, tx store.Tx, dataset string) (total, allocated, spent dp.Amount, err error) {
	if total.Eps, total.Delta, err = tx.Budget(ctx, dataset); err != nil {
		return
	}
	slices, err := tx.Slices(ctx, "", dataset)
	if err != nil {
		return
	}
	for _, s := range slices {
		allocated = allocated.Add(dp.Amount{Eps: s.Eps, Delta: s.Delta})
	}
	spends, err := tx.Spends(ctx, "", dataset, "")
	for _, s := range spends {
		if !s.Refunded {
			spent = spent.Add(dp.Amount{Eps: s.Eps, Delta: s.Delta})
		}
	}
	return
}

// allocate gives a grant that has just become active its slice of each dataset it reads. The
// slices of a dataset never add up to more than its total: a grant that does not fit is not
// activated.
func (s *Server) allocate(ctx context.Context, tx store.Tx, g *policy.Grant) error {
	// dp grants always hold a slice; model grants when they ask for a budget (their DP
	// trainers spend it; custom jobs need none).
	if !slices.Contains(g.Modes, policy.ModeDP) && !(slices.Contains(g.Modes, policy.ModeModel) && g.Budget.Epsilon > 0) {
		return nil
	}
	want, err := dp.Total(g.Budget.Epsilon, g.Budget.Delta)
	if err != nil {
		return fmt.Errorf("%w: grant %s: %v", policy.ErrInvalid, g.ID, err)
	}
	for _, d := range g.Datasets {
		total, allocated, _, err := datasetUse(ctx, tx, d.Name)
		if err != nil {
			return err
		}
		free := total.Sub(allocated)
		if !free.Covers(want) {
			return fmt.Errorf("%w: dataset %s has %s left to give to grants (of %s); grant %s asks %s. The provider can raise the total only by registering the data under a new name; the authority can revoke grants that no longer need their slices",
				errBudget, d.Name, free, total, g.ID, want)
		}
		if err := tx.PutSlice(ctx, store.Slice{Grant: g.ID, Dataset: d.Name, Eps: want.Eps, Delta: want.Delta, At: s.rec.Now()}); err != nil {
			return err
		}
	}
	return s.rec.Record(ctx, tx, platform.System, "budget.allocate", "grant/"+g.ID, map[string]string{"epsilon": dp.FormatEpsilon(want.Eps), "delta": dp.FormatDelta(want.Delta)})
}

// grantRemaining is what a grant has left on a dataset.
func grantRemaining(ctx context.Context, tx store.Tx, grant, dataset string) (slice, spent dp.Amount, jobs int, err error) {
	sl, err := tx.Slices(ctx, grant, dataset)
	if err != nil {
		return
	}
	if len(sl) == 0 {
		err = fmt.Errorf("%w: grant %s has no budget on dataset %s; was it approved with an epsilon?", errBudget, grant, dataset)
		return
	}
	slice = dp.Amount{Eps: sl[0].Eps, Delta: sl[0].Delta}
	spends, err := tx.Spends(ctx, grant, dataset, "")
	for _, s := range spends {
		if !s.Refunded {
			spent = spent.Add(dp.Amount{Eps: s.Eps, Delta: s.Delta})
			jobs++
		}
	}
	return
}

// queryCap is the most one job may spend under g on the given datasets.
func queryCap(g *policy.Grant, schemas map[string]*policy.Schema) float64 {
	c := g.Budget.QueryCap()
	if c > g.Budget.Epsilon {
		c = g.Budget.Epsilon
	}
	for _, sch := range schemas {
		if sc := sch.Budget.QueryCap(); sch.Budget.MaxQueryEpsilon > 0 && sc < c {
			c = sc
		}
	}
	return c
}

// reserve spends a job's budget on every dataset it reads, in the transaction that queues
// it. A job the slice cannot pay for is refused and nothing is written.
func (s *Server) reserve(ctx context.Context, tx store.Tx, j *job, spend dp.Amount, datasets []string, maxQuery float64) error {
	capUnits, err := dp.Total(maxQuery, 0)
	if err != nil {
		return err
	}
	if spend.Eps > capUnits.Eps {
		return fmt.Errorf("%w: the query asks ε=%s, above the per-query cap ε=%s of this grant and its datasets; ask for less",
			policy.ErrInvalid, dp.FormatEpsilon(spend.Eps), dp.FormatEpsilon(capUnits.Eps))
	}
	for _, d := range datasets {
		slice, spent, _, err := grantRemaining(ctx, tx, j.GrantID, d)
		if err != nil {
			return err
		}
		if left := slice.Sub(spent); !left.Covers(spend) {
			return fmt.Errorf("%w: grant %s has %s left on dataset %s and this query asks %s; ask for less, or apply for a new grant",
				errBudget, j.GrantID, left, d, spend)
		}
	}
	for _, d := range datasets {
		if err := tx.PutSpend(ctx, store.Spend{Job: j.ID, Grant: j.GrantID, Dataset: d, Eps: spend.Eps, Delta: spend.Delta, At: s.rec.Now()}); err != nil {
			return err
		}
	}
	return nil
}

// refund returns a job's reservation: only for a job that never ran.
func (s *Server) refund(ctx context.Context, tx store.Tx, jobID string) error {
	spends, err := tx.Spends(ctx, "", "", jobID)
	if err != nil {
		return err
	}
	for _, sp := range spends {
		if sp.Refunded {
			continue
		}
		sp.Refunded = true
		if err := tx.PutSpend(ctx, sp); err != nil {
			return err
		}
	}
	if len(spends) > 0 {
		return s.rec.Record(ctx, tx, platform.System, "budget.refund", "job/"+jobID, map[string]string{"reason": "the job never ran"})
	}
	return nil
}

// grantBudgets lists a grant's slices and what is left of them.
func grantBudgets(ctx context.Context, tx store.Tx, g *policy.Grant, schemas map[string]*policy.Schema) ([]api.GrantBudget, error) {
	var out []api.GrantBudget
	for _, d := range g.Datasets {
		slice, spent, jobs, err := grantRemaining(ctx, tx, g.ID, d.Name)
		if errors.Is(err, errBudget) {
			continue // no slice: not a dp grant, or not active yet
		}
		if err != nil {
			return nil, err
		}
		out = append(out, api.GrantBudget{Grant: g.ID, Tenant: g.Tenant, Scenario: g.Scenario, Dataset: d.Name,
			Slice: apiAmount(slice), Spent: apiAmount(spent), Remaining: apiAmount(slice.Sub(spent)), Jobs: jobs,
			MaxQuery: queryCap(g, schemas)})
	}
	return out, nil
}

// showBudget serves `veil budget show`: vendors see their grants, providers their datasets
// and the grants on them, the platform roles everything.
func (s *Server) showBudget(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActBudgetRead); err != nil {
		return err
	}
	ctx := r.Context()
	out := api.Budgets{Datasets: []api.DatasetBudget{}, Grants: []api.GrantBudget{}}
	err := s.db.View(ctx, func(tx store.Tx) error {
		if p.Role != policy.Vendor {
			sets, err := tx.Datasets(ctx)
			if err != nil {
				return err
			}
			for _, d := range sets {
				if p.Role == policy.Provider && d.Provider != p.Tenant {
					continue
				}
				total, allocated, spent, err := datasetUse(ctx, tx, d.Name)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				out.Datasets = append(out.Datasets, api.DatasetBudget{Dataset: d.Name, Provider: d.Provider, Total: apiAmount(total),
					Allocated: apiAmount(allocated), Spent: apiAmount(spent), Free: apiAmount(total.Sub(allocated))})
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
			g, err := decodeGrant(sg)
			if err != nil {
				return err
			}
			if !policy.CanSeeGrant(p, g) && p.Role != policy.Auditor {
				continue
			}
			schemas, _, err := loadCatalog(ctx, tx, grantDatasets(g))
			if err != nil {
				return err
			}
			gb, err := grantBudgets(ctx, tx, g, schemas)
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
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
