package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// PlanJob plans a job without running it: the request is validated through its kind as a
// submission would be, and the answer says what it would spend, what would remain, and how
// noisy its release would be. Nothing is queued, no data is read, no budget is reserved;
// the audit log records the plan request (job.plan), not a spend.
func (s *Service) PlanJob(ctx context.Context, p policy.Principal, req api.SubmitJob) (api.JobPlan, error) {
	var k Kind
	for _, c := range s.kinds {
		if c.Accepts(&req) {
			k = c
			break
		}
	}
	if k == nil {
		return api.JobPlan{}, fmt.Errorf("%w: no kind of job takes this request", policy.ErrInvalid)
	}
	pl, err := k.Plan(ctx, &Submission{Principal: p, Request: req, DryRun: true, s: s})
	var r *refusal
	if errors.As(err, &r) {
		s.DB.Update(ctx, func(tx store.Tx) error {
			return s.Rec.Record(ctx, tx, p, "job.plan", "grant/"+r.grant, map[string]string{"refused": r.err.Error()})
		})
		return api.JobPlan{}, r.err
	}
	if err != nil {
		return api.JobPlan{}, err
	}
	out := api.JobPlan{}
	if pl.Preview != nil {
		out = *pl.Preview
	}
	out.Grant, out.Mode = pl.Grant.ID, string(pl.Mode)
	if out.SQL == "" {
		out.SQL = pl.Describe
	}
	if out.Datasets == nil {
		out.Datasets = pl.Datasets
	}
	details := map[string]string{"grant": pl.Grant.ID, "mode": string(pl.Mode)}
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		if pl.Spend != nil {
			spend := *pl.Spend
			a := ledger.APIAmount(spend)
			out.Spend, out.MaxQueryEpsilon = &a, pl.Cap
			if c, err := ledger.Total(pl.Cap, 0); err == nil && spend.Eps > c.Eps {
				out.Refusal = fmt.Sprintf("the query asks ε=%s, above the per-query cap ε=%s of this grant and its datasets", ledger.FormatEpsilon(spend.Eps), ledger.FormatEpsilon(c.Eps))
			}
			for _, d := range pl.Datasets {
				slice, spent, _, err := ledger.Remaining(ctx, tx, pl.Grant.ID, d)
				if errors.Is(err, ledger.ErrBudget) {
					out.Refusal = err.Error()
					continue
				}
				if err != nil {
					return err
				}
				left := slice.Sub(spent)
				out.Budget = append(out.Budget, api.PlanBudget{Dataset: d, Remaining: ledger.APIAmount(left), After: ledger.APIAmount(left.Sub(spend))})
				if why := ledger.Short(left, spend); why != "" && out.Refusal == "" {
					out.Refusal = fmt.Sprintf("grant %s has %s left on dataset %s: %s", pl.Grant.ID, left, d, why)
				}
			}
			// What the job would spend, named so that no reader sums it with spends.
			details["planned_epsilon"] = ledger.FormatEpsilon(spend.Eps)
			details["planned_delta"] = ledger.FormatDelta(spend.Delta)
		}
		return s.Rec.Record(ctx, tx, p, "job.plan", "grant/"+pl.Grant.ID, details)
	})
	if err != nil {
		return api.JobPlan{}, err
	}
	return out, nil
}
