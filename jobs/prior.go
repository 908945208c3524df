package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Priors lists the earlier threshold SQL queries of the job's grant that a new one is
// checked against for differencing (engine.Checks): the newest n, other than the job itself,
// that are queued, running, waiting for review or released; dev runs (on twins) and jobs
// rejected, failed or canceled (nothing of them left) are not among them. Queued and running
// ones count so that two queries submitted together are checked against each other.
//
// A job of the grant whose stored body, or whose threshold plan, cannot be read fails the
// call (*PriorUnreadable): it cannot be ruled out as the other half of a differencing pair,
// and leaving it out would free the new query from the check against it.
func (r *Run) Priors(ctx context.Context, n int) ([]engine.Prior, error) {
	if r.Grant == nil || n < 1 {
		return nil, nil
	}
	var sjs []store.Job
	err := r.s.DB.View(ctx, func(tx store.Tx) error {
		var err error
		sjs, err = tx.Jobs(ctx, store.JobFilter{GrantID: r.Grant.ID, Statuses: []string{Queued, Running, Review, Released}})
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(sjs, func(a, b store.Job) int { return b.Created.Compare(a.Created) })
	var out []engine.Prior
	for _, sj := range sjs {
		if len(out) == n {
			break
		}
		if sj.ID == r.ID {
			continue
		}
		j, err := Decode(sj)
		if err != nil {
			return nil, &PriorUnreadable{Job: sj.ID, Err: err}
		}
		if j.Body.Dev || j.Body.Mode != policy.ModeThreshold || j.Body.Kind != "plan" {
			continue
		}
		var p struct {
			Query string `json:"query"`
			DP    any    `json:"dp"`
		}
		if err := json.Unmarshal(j.Body.Spec, &p); err != nil {
			return nil, &PriorUnreadable{Job: sj.ID, Err: err}
		}
		if p.DP != nil {
			continue
		}
		if p.Query == "" {
			return nil, &PriorUnreadable{Job: sj.ID, Err: fmt.Errorf("its plan has no query")}
		}
		out = append(out, engine.Prior{Job: sj.ID, Query: p.Query})
	}
	return out, nil
}

// PriorUnreadable is a prior job of the grant that Priors could not read (a damaged or
// foreign row in the store): the new threshold job cannot be checked against it.
type PriorUnreadable struct {
	Job string
	Err error
}

func (e *PriorUnreadable) Error() string {
	return fmt.Sprintf("jobs: prior job %s cannot be read for the differencing check: %v", e.Job, e.Err)
}

func (e *PriorUnreadable) Unwrap() error { return e.Err }
