package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// runJob takes one queued job through its kind into the review queue.
func (s *Service) runJob(ctx context.Context, id string) {
	var r ran
	err := s.runJob1(ctx, id, &r)
	if err != nil {
		s.Fail(id, err)
	}
	s.observeRun(&r, err, ctx.Err() != nil)
}

var errSkip = errors.New("skip")

func (s *Service) runJob1(ctx context.Context, id string, r *ran) error {
	var j *Job
	var g *policy.Grant
	var sc engine.Scope
	versions := map[string]string{}
	// The start commits without waiting for the disk, which takes its time meanwhile: the
	// kind prepares the run (its checks, its projections) while the log is flushed, and the
	// launcher hands the job to a sandbox only once the start is on disk (launch.AfterStored).
	// A crash of the daemon loses nothing of it; one of the machine before the flush loses
	// the move to running and the job.start entry, and the job, never run, is queued again
	// at the restart. So until the flush is done the job is shown queued (View), and long
	// polls are woken only then: no reader sees it running and then, after a crash, queued.
	// Its audit entry is signed with the job's output (ToReview), the next change a request
	// waits for.
	s.starting(id, true) // before the commit: a reader that sees it running finds it here
	flush, err := s.DB.UpdateAsync(ctx, func(tx store.Tx) error {
		sj, err := tx.Job(ctx, id)
		if err != nil {
			return err
		}
		if j, err = Decode(sj); err != nil {
			return err
		}
		if j.Status != Queued {
			return errSkip
		}
		sg, err := tx.Grant(ctx, j.GrantID)
		if err != nil {
			return err
		}
		if g, err = grants.Decode(sg); err != nil {
			return err
		}
		// Status and expiry are checked again now that the job runs.
		if err := g.Usable(s.Rec.Now(), j.Body.Mode); err != nil {
			return launch.Fail(err.Error(), nil)
		}
		schemas, sets, err := catalog.Load(ctx, tx, grants.Datasets(g))
		if err != nil {
			return err
		}
		for n, d := range sets {
			versions[n] = d.Version
		}
		if err := s.box.Admit(schemas); err != nil {
			return launch.Fail(err.Error(), nil)
		}
		sc = grants.Scope(g, schemas, sets, j.Body.Mode)
		if err := j.Move(Running); err != nil {
			return err
		}
		j.Body.Started = s.Rec.Now()
		if err := j.Put(ctx, tx, s.Rec.Now()); err != nil {
			return err
		}
		details := map[string]string{"isolation": s.box.Name()}
		for n, v := range versions {
			details["dataset."+n] = v
		}
		return s.Rec.Record(ctx, tx, platform.System, "job.start", "job/"+id, details)
	})
	if err != nil {
		s.starting(id, false)
		if errors.Is(err, errSkip) {
			return nil
		}
		return err
	}
	flushed := make(chan error, 1)
	go func() {
		err := flush()
		if err == nil {
			// It runs now, on disk too. After a failed flush it stays shown queued, which
			// is what the restart the failure calls for may find.
			s.starting(id, false)
			s.changed.notify()
		}
		flushed <- err
	}()
	stored := sync.OnceValue(func() error { return <-flushed })
	ctx = launch.AfterStored(ctx, stored)

	r.kind, r.dev, r.start = j.Body.Kind, j.Body.Dev, time.Now()
	if s.Observe != nil && !j.Body.Dev {
		s.Observe.Started(j.Tenant, j.Body.Kind, j.Body.Started.Sub(j.Created))
	}
	ctx = launch.ForKind(ctx, j.Body.Kind)
	k, err := s.kind(j.Body.Kind)
	if err != nil {
		return err
	}
	run := &Run{ID: id, Tenant: j.Tenant, Grant: g, Mode: j.Body.Mode, Spec: j.Body.Spec, Spend: j.Body.Spend, Dev: j.Body.Dev, scope: sc, versions: versions, s: s}
	out, err := k.Run(ctx, run)
	if serr := stored(); serr != nil && err == nil {
		// A kind that launched nothing: its output is not kept either.
		err = serr
	}
	if len(run.held) > 0 {
		// The run's projections are free again; those of versions no longer current go.
		s.release(run)
		if perr := s.PruneProjections(context.WithoutCancel(ctx)); perr != nil {
			s.Log.Warn("prune projections", "err", perr)
		}
	}
	if err != nil {
		return err
	}
	defer out.Record.Release()
	return s.ToReview(ctx, id, versions, out)
}

// ToReview stores a job's protected output and moves the job from running to review, in one
// transaction with its message, metering and audit entry; a dev run's output is then its
// vendor's at once. A job canceled while it ran keeps no output (and a dp job's budget stays
// spent: it ran).
func (s *Service) ToReview(ctx context.Context, id string, versions map[string]string, out *Output) error {
	data, err := output.EncodeIPC(out.Record)
	if err != nil {
		return err
	}
	// The digest of what is stored goes into the job.gate entry; every later reader checks
	// the stored bytes against that entry (LoadOutput), and approvals name it.
	meta := output.Meta{Mechanism: out.Mechanism, Datasets: versions, Rows: out.Record.NumRows(), Digest: output.Digest(data)}
	for _, f := range out.Record.Schema().Fields() {
		meta.Columns = append(meta.Columns, f.Name)
	}
	details := maps.Clone(out.Audit)
	if details == nil {
		details = map[string]string{}
	}
	details["output_sha256"] = meta.Digest
	return s.DB.Update(context.Background(), func(tx store.Tx) error {
		sj, err := tx.Job(ctx, id)
		if err != nil {
			return err
		}
		cur, err := Decode(sj)
		if err != nil {
			return err
		}
		if cur.Status != Running {
			return nil
		}
		if meta.GateEntry, err = s.Rec.RecordAt(ctx, tx, platform.System, "job.gate", "job/"+id, details); err != nil {
			return err
		}
		metaJSON, err := json.Marshal(meta)
		if err != nil {
			return err
		}
		if err := tx.PutOutput(ctx, store.Output{JobID: id, Data: data, Meta: metaJSON, Created: s.Rec.Now()}); err != nil {
			return err
		}
		if err := cur.Move(Review); err != nil {
			return err
		}
		cur.Body.Finished = s.Rec.Now()
		cur.Body.Message = out.Message
		cur.Body.Metering = out.Metering
		if err := cur.Put(ctx, tx, s.Rec.Now()); err != nil {
			return err
		}
		if out.Log != nil {
			s.Log.Info("job gated", append([]any{"job", id}, out.Log...)...)
		}
		if cur.Body.Dev {
			// A dev run's output is the vendor's at once; it never waits for review.
			if err := cur.Move(Dev); err != nil {
				return err
			}
			cur.Body.Message = "dev run done: the output, computed on the dev twins, is shown at once (veil dev show)"
			return cur.Put(ctx, tx, s.Rec.Now())
		}
		return nil
	})
}

// Fail records that a queued or running job failed with err: the vendor reads what
// launch.Explain lets it, reduced to its class for a failure on real data
// (launch.ForVendor); the operator's log gets the details, the audit entry the exact
// message. A job that never ran gets its reservation back; one canceled meanwhile stays
// canceled.
func (s *Service) Fail(id string, err error) {
	exact, detail := launch.Explain(err)
	s.Log.Warn("job failed", "job", id, "err", detail)
	cause := err
	uerr := s.DB.Update(context.Background(), func(tx store.Tx) error {
		sj, err := tx.Job(context.Background(), id)
		if err != nil {
			return err
		}
		j, err := Decode(sj)
		if err != nil {
			return err
		}
		if j.Status != Running && j.Status != Queued {
			return nil // canceled meanwhile
		}
		if j.Status == Queued {
			// Refused before it started (the grant was suspended or expired meanwhile): it
			// never touched the data, so its reservation goes back.
			if err := s.ledger.Refund(context.Background(), tx, id); err != nil {
				return err
			}
		}
		if err := j.Move(Failed); err != nil {
			return err
		}
		msg := launch.ForVendor(cause, j.Body.Dev)
		j.Body.Message = msg
		j.Body.Finished = s.Rec.Now()
		if err := j.Put(context.Background(), tx, s.Rec.Now()); err != nil {
			return err
		}
		details := map[string]string{"message": msg}
		if exact != msg {
			details["cause"] = exact // which limit, or what the runner said: never a data value
		}
		return s.Rec.Record(context.Background(), tx, platform.System, "job.fail", "job/"+id, details)
	})
	if uerr != nil {
		s.Log.Error("record job failure", "job", id, "err", uerr)
	}
}

// recover runs at start: the sandboxes of the previous run are destroyed and what kinds left
// behind removed; jobs that were running are marked failed, queued jobs are queued again.
func (s *Service) recover(ctx context.Context) error {
	leftovers, err := s.box.Cleanup(ctx)
	if err != nil {
		return fmt.Errorf("clean up after the previous run: %w", err)
	}
	for _, id := range leftovers {
		s.Log.Warn("destroyed leftover sandbox", "job", id)
	}
	for _, k := range s.kinds {
		if r, ok := k.(Recoverer); ok {
			if err := r.Recover(ctx); err != nil {
				return err
			}
		}
	}
	var queued []store.Job
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		js, err := tx.Jobs(ctx, store.JobFilter{Statuses: []string{Running, Queued}})
		if err != nil {
			return err
		}
		for _, sj := range js {
			if sj.Status == Queued {
				queued = append(queued, sj)
				continue
			}
			j, err := Decode(sj)
			if err != nil {
				return err
			}
			if err := j.Move(Failed); err != nil {
				return err
			}
			j.Body.Message = "the platform restarted while the job ran; submit it again"
			j.Body.Finished = s.Rec.Now()
			if err := j.Put(ctx, tx, s.Rec.Now()); err != nil {
				return err
			}
			if err := s.Rec.Record(ctx, tx, platform.System, "job.fail", "job/"+j.ID, map[string]string{"message": j.Body.Message}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, sj := range queued {
		s.sched.enqueue(sj.Tenant, sj.ID)
	}
	return nil
}
