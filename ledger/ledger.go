package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// The budget ledger. Every dataset has a total (its provider's declaration), grants receive
// slices of it when they are approved, and jobs spend from their grant's slices. All sums
// are of integer units, inside one store transaction: the store serializes writers, so a
// check and the write that depends on it can never interleave with another's.

// ErrBudget marks a job refused because its grant's slice cannot pay for it.
var ErrBudget = fmt.Errorf("%w: budget exhausted", policy.ErrConflict)

// Book is the writer of the budget ledger: the changes it makes are recorded in the audit log.
type Book struct {
	rec *platform.Recorder
}

// New returns the ledger that records its changes with rec.
func New(rec *platform.Recorder) *Book { return &Book{rec: rec} }

func amount(eps, delta int64) api.Amount {
	// The floats are parsed from the exact decimals, so that 1e-6 prints as 1e-06 and not as
	// the nearest binary neighbour of a product.
	e, _ := strconv.ParseFloat(FormatEpsilon(eps), 64)
	d, _ := strconv.ParseFloat(FormatDelta(delta), 64)
	return api.Amount{Epsilon: e, Delta: d, EpsilonUnits: eps, DeltaUnits: delta}
}

// APIAmount is an amount as the API shows it.
func APIAmount(a Amount) api.Amount { return amount(a.Eps, a.Delta) }

// SetTotal records a newly registered dataset's total.
func SetTotal(ctx context.Context, tx store.Tx, sch *policy.Schema) error {
	total, err := Total(sch.Budget.Epsilon, sch.Budget.Delta)
	if err != nil {
		return fmt.Errorf("%w: dataset %s: %v", policy.ErrInvalid, sch.Name, err)
	}
	return tx.SetBudget(ctx, sch.Name, total.Eps, total.Delta)
}

// Use sums the slices and spends on a dataset.
func Use(ctx context.Context, tx store.Tx, dataset string) (total, allocated, spent Amount, err error) {
	if total.Eps, total.Delta, err = tx.Budget(ctx, dataset); err != nil {
		return
	}
	slices, err := tx.Slices(ctx, "", dataset)
	if err != nil {
		return
	}
	for _, s := range slices {
		allocated = allocated.Add(Amount{Eps: s.Eps, Delta: s.Delta})
	}
	spends, err := tx.Spends(ctx, "", dataset, "")
	for _, s := range spends {
		if !s.Refunded {
			spent = spent.Add(Amount{Eps: s.Eps, Delta: s.Delta})
		}
	}
	return
}

// Allocate gives a grant that has just become active its slice of each dataset it reads. The
// slices of a dataset never add up to more than its total: a grant that does not fit is not
// activated.
func (l *Book) Allocate(ctx context.Context, tx store.Tx, g *policy.Grant) error {
	// dp grants always hold a slice; model grants when they ask for a budget (their DP
	// trainers spend it; custom jobs need none).
	if !slices.Contains(g.Modes, policy.ModeDP) && !(slices.Contains(g.Modes, policy.ModeModel) && g.Budget.Epsilon > 0) {
		return nil
	}
	want, err := Total(g.Budget.Epsilon, g.Budget.Delta)
	if err != nil {
		return fmt.Errorf("%w: grant %s: %v", policy.ErrInvalid, g.ID, err)
	}
	// Every dataset is checked before any slice is written: a refusal leaves none (a caller
	// that keeps its transaction after an OverBudget, as Settle does when it holds the
	// grant, must not keep slices of a grant that is not active).
	for _, d := range g.Datasets {
		total, allocated, _, err := Use(ctx, tx, d.Name)
		if err != nil {
			return err
		}
		free := total.Sub(allocated)
		if !free.Covers(want) {
			return &OverBudget{Dataset: d.Name, Grant: g.ID, Free: free, Total: total, Want: want}
		}
	}
	for _, d := range g.Datasets {
		if err := tx.PutSlice(ctx, store.Slice{Grant: g.ID, Dataset: d.Name, Eps: want.Eps, Delta: want.Delta, At: l.rec.Now()}); err != nil {
			return err
		}
	}
	return l.rec.Record(ctx, tx, platform.System, "budget.allocate", "grant/"+g.ID, map[string]string{"epsilon": FormatEpsilon(want.Eps), "delta": FormatDelta(want.Delta)})
}

// OverBudget refuses a slice larger than what a dataset has left to give to grants. Its
// figures depend on every tenant's grants: they are for the reviewers who may see the ledger
// (the approver the error is returned to, the audit log), never for the applicant.
type OverBudget struct {
	Dataset, Grant    string
	Free, Total, Want Amount
}

func (e *OverBudget) Error() string {
	return fmt.Sprintf("%v: dataset %s has %s left to give to grants (of %s): %s for grant %s. Slices given are never returned, not even by revoking or at the expiry of their grants (what a grant was given may have been spent): reject this application with a reason, so that its vendor may apply for less; the provider can raise the total only by registering the data under a new name",
		ErrBudget, e.Dataset, e.Free, e.Total, Short(e.Free, e.Want), e.Grant)
}

func (e *OverBudget) Unwrap() error { return ErrBudget }

// Detail is the refusal's figures, for the audit log.
func (e *OverBudget) Detail() map[string]string {
	return map[string]string{"reason": "budget", "dataset": e.Dataset, "left": e.Free.String(), "total": e.Total.String(),
		"asked": e.Want.String(), "short": Short(e.Free, e.Want)}
}

// Remaining is what a grant has left on a dataset.
func Remaining(ctx context.Context, tx store.Tx, grant, dataset string) (slice, spent Amount, jobs int, err error) {
	sl, err := tx.Slices(ctx, grant, dataset)
	if err != nil {
		return
	}
	if len(sl) == 0 {
		err = fmt.Errorf("%w: grant %s has no budget on dataset %s; was it approved with an epsilon?", ErrBudget, grant, dataset)
		return
	}
	slice = Amount{Eps: sl[0].Eps, Delta: sl[0].Delta}
	spends, err := tx.Spends(ctx, grant, dataset, "")
	for _, s := range spends {
		if !s.Refunded {
			spent = spent.Add(Amount{Eps: s.Eps, Delta: s.Delta})
			jobs++
		}
	}
	return
}

// QueryCap is the most one job may spend under g on the given datasets.
func QueryCap(g *policy.Grant, schemas map[string]*policy.Schema) float64 {
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

// Reserve spends a job's budget under grant on every dataset it reads, in the transaction
// that queues it. A job the slice cannot pay for is refused and nothing is written.
func (l *Book) Reserve(ctx context.Context, tx store.Tx, job, grant string, spend Amount, datasets []string, maxQuery float64) error {
	capUnits, err := Total(maxQuery, 0)
	if err != nil {
		return err
	}
	if spend.Eps > capUnits.Eps {
		return fmt.Errorf("%w: the query asks ε=%s, above the per-query cap ε=%s of this grant and its datasets; ask for less",
			policy.ErrInvalid, FormatEpsilon(spend.Eps), FormatEpsilon(capUnits.Eps))
	}
	for _, d := range datasets {
		slice, spent, _, err := Remaining(ctx, tx, grant, d)
		if err != nil {
			return err
		}
		if left := slice.Sub(spent); !left.Covers(spend) {
			return fmt.Errorf("%w: grant %s on dataset %s: %s; ask for less, or apply for a new grant",
				ErrBudget, grant, d, Short(left, spend))
		}
	}
	for _, d := range datasets {
		if err := tx.PutSpend(ctx, store.Spend{Job: job, Grant: grant, Dataset: d, Eps: spend.Eps, Delta: spend.Delta, At: l.rec.Now()}); err != nil {
			return err
		}
	}
	return nil
}

// Refund returns a job's reservation: only for a job that never ran.
func (l *Book) Refund(ctx context.Context, tx store.Tx, jobID string) error {
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
		return l.rec.Record(ctx, tx, platform.System, "budget.refund", "job/"+jobID, map[string]string{"reason": "the job never ran"})
	}
	return nil
}

// GrantBudgets lists a grant's slices and what is left of them.
func GrantBudgets(ctx context.Context, tx store.Tx, g *policy.Grant, schemas map[string]*policy.Schema) ([]api.GrantBudget, error) {
	var out []api.GrantBudget
	for _, d := range g.Datasets {
		slice, spent, jobs, err := Remaining(ctx, tx, g.ID, d.Name)
		if errors.Is(err, ErrBudget) {
			continue // no slice: not a dp grant, or not active yet
		}
		if err != nil {
			return nil, err
		}
		out = append(out, api.GrantBudget{Grant: g.ID, Tenant: g.Tenant, Scenario: g.Scenario, Dataset: d.Name,
			Slice: APIAmount(slice), Spent: APIAmount(spent), Remaining: APIAmount(slice.Sub(spent)), Jobs: jobs,
			MaxQuery: QueryCap(g, schemas)})
	}
	return out, nil
}

// Draw is a dataset's provider using its budget directly (a synthetic twin): a slice of the
// free total and its spend, under a grant of its own ("twin:" and the job), in one
// transaction. It stays spent whatever becomes of the output.
func (l *Book) Draw(ctx context.Context, tx store.Tx, dataset, job string, spend Amount) error {
	total, allocated, _, err := Use(ctx, tx, dataset)
	if err != nil {
		return err
	}
	if !total.Sub(allocated).Covers(spend) {
		free := total.Sub(allocated)
		return fmt.Errorf("%w: dataset %s has ε=%s left to give, the twin asks %s", ErrBudget, dataset, FormatEpsilon(free.Eps), FormatEpsilon(spend.Eps))
	}
	now := l.rec.Now()
	if err := tx.PutSlice(ctx, store.Slice{Grant: "twin:" + job, Dataset: dataset, Eps: spend.Eps, Delta: spend.Delta, At: now}); err != nil {
		return err
	}
	return tx.PutSpend(ctx, store.Spend{Job: job, Grant: "twin:" + job, Dataset: dataset, Eps: spend.Eps, Delta: spend.Delta, At: now})
}
