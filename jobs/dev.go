package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// The development environment: a vendor's dev run is the same job as in production — the
// same kind, validation, sandbox and gate — over the released dev twins of the datasets
// instead of the data (Run.Tables), with no budget spent and its output shown at once,
// labelled; Promote submits the same request to production.

// DevOutput is what a vendor sees of a dev run: the output at once, labelled.
func (s *Service) DevOutput(ctx context.Context, p policy.Principal, id string) (api.DevOutput, error) {
	var out api.DevOutput
	var access []policy.DatasetAccess
	err := s.DB.View(ctx, func(tx store.Tx) error {
		j, err := Load(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if !j.Body.Dev {
			return fmt.Errorf("%w: job %s is not a dev run", policy.ErrNotFound, id)
		}
		if g, err := grants.Load(ctx, tx, p, j.GrantID); err == nil {
			access = g.Datasets
		}
		out.Job = j.API()
		out.Label = "DEV OUTPUT: computed on the datasets' dev twins (masked or synthetic), not on the data; no budget was spent. Promote the job to run it on the data."
		if j.Status != Dev {
			return nil
		}
		meta, rec, err := s.LoadOutput(ctx, tx, id)
		if err != nil {
			return err
		}
		defer rec.Release()
		out.Mechanism, out.Columns = meta.Mechanism, meta.Columns
		if meta.Mechanism.Custom != nil {
			out.Files, out.Columns = output.Files(rec), nil
		} else {
			out.Rows = output.Rows(rec)
		}
		return nil
	})
	if err == nil && s.Twins != nil {
		out.Nulls, err = s.twinNulls(ctx, access)
	}
	return out, s.Note(ctx, p, "dev.show", err)
}

// twinNulls lists the granted columns that the datasets' released twins hold only as NULL:
// a dev run's output computed on them says nothing of those columns.
func (s *Service) twinNulls(ctx context.Context, access []policy.DatasetAccess) ([]api.TwinNull, error) {
	var out []api.TwinNull
	for _, d := range access {
		nulls, err := s.Twins.Nulls(ctx, d.Name)
		if err != nil {
			return nil, err
		}
		for _, c := range d.Columns {
			if why, ok := nulls[c]; ok {
				out = append(out, api.TwinNull{Dataset: d.Name, Column: c, Reason: why})
			}
		}
	}
	return out, nil
}

// Promote submits a dev run's job, unchanged, to production.
func (s *Service) Promote(ctx context.Context, p policy.Principal, id string) (api.Job, error) {
	var req api.SubmitJob
	err := s.DB.View(ctx, func(tx store.Tx) error {
		j, err := Load(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if !j.Body.Dev || j.Body.Request == nil {
			return fmt.Errorf("%w: job %s is not a dev run", policy.ErrNotFound, j.ID)
		}
		return json.Unmarshal(j.Body.Request, &req)
	})
	if err != nil {
		return api.Job{}, err
	}
	return s.Submit(ctx, p, req)
}
