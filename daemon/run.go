package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"golang.org/x/sys/unix"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// runJob takes one queued job through the runner and the gate into the review queue.
func (s *Server) runJob(ctx context.Context, id string) {
	err := s.runJob1(ctx, id)
	if err == nil {
		return
	}
	msg, detail := launch.Explain(err)
	s.slog.Warn("job failed", "job", id, "err", detail)
	uerr := s.db.Update(context.Background(), func(tx store.Tx) error {
		sj, err := tx.Job(context.Background(), id)
		if err != nil {
			return err
		}
		j, err := decodeJob(sj)
		if err != nil {
			return err
		}
		if j.Status != jobRunning && j.Status != jobQueued {
			return nil // canceled meanwhile
		}
		if j.Status == jobQueued {
			// Refused before it started (the grant was suspended or expired meanwhile): it
			// never touched the data, so its reservation goes back.
			if err := s.ledger.Refund(context.Background(), tx, id); err != nil {
				return err
			}
		}
		j.Status = jobFailed
		j.body.Message = msg
		j.body.Finished = s.rec.Now()
		if err := j.put(context.Background(), tx, s.rec.Now()); err != nil {
			return err
		}
		return s.rec.Record(context.Background(), tx, platform.System, "job.fail", "job/"+id, map[string]string{"message": msg})
	})
	if uerr != nil {
		s.slog.Error("record job failure", "job", id, "err", uerr)
	}
}

func (s *Server) runJob1(ctx context.Context, id string) error {
	var j *job
	var g *policy.Grant
	var sc engine.Scope
	versions := map[string]string{}
	err := s.db.Update(ctx, func(tx store.Tx) error {
		sj, err := tx.Job(ctx, id)
		if err != nil {
			return err
		}
		if j, err = decodeJob(sj); err != nil {
			return err
		}
		if j.Status != jobQueued {
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
		if err := g.Usable(s.rec.Now(), j.body.Mode); err != nil {
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
		sc = grants.Scope(g, schemas, sets, j.body.Mode)
		j.Status = jobRunning
		j.body.Started = s.rec.Now()
		if err := j.put(ctx, tx, s.rec.Now()); err != nil {
			return err
		}
		details := map[string]string{"isolation": s.box.Name()}
		for n, v := range versions {
			details["dataset."+n] = v
		}
		return s.rec.Record(ctx, tx, platform.System, "job.start", "job/"+id, details)
	})
	if errors.Is(err, errSkip) {
		return nil
	}
	if err != nil {
		return err
	}

	s.changed.notify() // it runs now
	if j.body.Dev {
		if err := s.devScope(ctx, j, &sc); err != nil {
			return err
		}
	}
	if j.body.HE != nil {
		return s.runHE(ctx, id, g, sc, versions, j.body.HE, j.Tenant)
	}
	if j.body.Model != nil {
		return s.runModel(ctx, id, sc, versions, j.body.Model)
	}
	if j.body.Custom != nil {
		return s.runCustom(ctx, id, j.Tenant, sc, versions, j.body.Custom)
	}
	// The fast plan relies on the rows-per-unit maximum of the dataset version that runs now.
	plan := *j.body.Plan
	plan.MaxRowsPerUnit = 0
	if plan.FastSQL != "" && len(plan.Tables) == 1 {
		for _, t := range sc.Tables {
			if t.Name == plan.Tables[0] {
				plan.MaxRowsPerUnit = t.MaxRowsPerUnit
			}
		}
	}
	if plan.MaxRowsPerUnit < 1 {
		plan.FastSQL = ""
	}
	ejob := engine.Job{SQL: plan.SQL, FastSQL: plan.FastSQL, K: g.K, MaxRowsPerUnit: plan.MaxRowsPerUnit, Tables: sc.Tables, Threads: s.cfg.JobThreads, MemoryLimitMB: s.cfg.JobMemoryMB * 3 / 4, MaxResultBytes: s.cfg.MaxResultByte}
	if plan.DP != nil {
		if j.body.Spend == nil {
			return launch.Fail("the job has no budget reservation; submit it again", nil)
		}
		return s.runDP(ctx, id, &plan, *j.body.Spend, sc, ejob, versions)
	}
	var exact bytes.Buffer
	usage, err := s.box.Run(ctx, id, ejob, &exact)
	if err != nil {
		return err
	}
	rec, err := engine.ReadResult(&exact, s.cfg.MaxResultByte)
	clear(exact.Bytes()) // the exact result lives only in memory, and not longer than needed
	if err != nil {
		return launch.Fail("the runner returned no readable result", err)
	}
	protected, rep, err := gate.Threshold(rec, &plan, gate.ThresholdRule{K: g.K, RoundTo: g.RoundTo})
	rec.Release()
	if err != nil {
		return launch.Fail("the output gate refused the result", err)
	}
	defer protected.Release()
	meta := output.Meta{
		Mechanism: api.Mechanism{Kind: string(policy.ModeThreshold), K: g.K, RoundTo: g.RoundTo, Groups: rep.Groups, Suppressed: rep.Suppressed, NearK: rep.NearK},
		Datasets:  versions,
	}
	return s.toReview(ctx, id, protected, meta, func(tx store.Tx, cur *job) error {
		cur.Status = jobReview
		cur.body.Finished = s.rec.Now()
		cur.body.Message = fmt.Sprintf("waiting for export review: %d groups released, %d suppressed (fewer than %d persons)", rep.Released, rep.Suppressed, g.K)
		cur.body.Metering = &api.Metering{WallMS: usage.Wall.Milliseconds(), CPUMS: usage.CPU.Milliseconds(), PeakMemoryMB: usage.PeakMemoryBytes >> 20,
			OutputRows: protected.NumRows(), Groups: rep.Groups, Suppressed: rep.Suppressed}
		if err := cur.put(ctx, tx, s.rec.Now()); err != nil {
			return err
		}
		s.slog.Info("job gated", "job", id, "isolation", s.box.Name(), "wall_ms", usage.Wall.Milliseconds(),
			"peak_mb", usage.PeakMemoryBytes>>20, "groups", rep.Groups, "suppressed", rep.Suppressed)
		return s.rec.Record(ctx, tx, platform.System, "job.gate", "job/"+id, map[string]string{
			"mechanism": "threshold", "k": fmt.Sprint(g.K), "groups": fmt.Sprint(rep.Groups), "suppressed": fmt.Sprint(rep.Suppressed),
			"wall_ms": fmt.Sprint(usage.Wall.Milliseconds())})
	})
}

var errSkip = errors.New("skip")

// toReview stores a job's protected output and moves the job to review, in one
// transaction; finish fills in the job's message, metering and audit entry. A job canceled
// while it ran keeps no output (and a dp job's budget stays spent: it ran).
func (s *Server) toReview(ctx context.Context, id string, protected arrow.RecordBatch, meta output.Meta, finish func(tx store.Tx, cur *job) error) error {
	data, err := output.EncodeIPC(protected)
	if err != nil {
		return err
	}
	meta.Rows = protected.NumRows()
	for _, f := range protected.Schema().Fields() {
		meta.Columns = append(meta.Columns, f.Name)
	}
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	return s.db.Update(context.Background(), func(tx store.Tx) error {
		sj, err := tx.Job(ctx, id)
		if err != nil {
			return err
		}
		cur, err := decodeJob(sj)
		if err != nil {
			return err
		}
		if cur.Status != jobRunning {
			return nil
		}
		if err := tx.PutOutput(ctx, store.Output{JobID: id, Data: data, Meta: metaJSON, Created: s.rec.Now()}); err != nil {
			return err
		}
		if err := finish(tx, cur); err != nil {
			return err
		}
		if cur.body.Dev {
			// A dev run's output is the vendor's at once; it never waits for review.
			cur.Status = jobDev
			cur.body.Message = "dev run done: the output, computed on the dev twins, is shown at once (veil dev show)"
			return cur.put(ctx, tx, s.rec.Now())
		}
		return nil
	})
}

// runDP runs a dp job: the bounded partial aggregates come from the sandbox, the noise from
// the DP gate here.
func (s *Server) runDP(ctx context.Context, id string, plan *engine.Plan, spend ledger.Amount, sc engine.Scope, ejob engine.Job, versions map[string]string) error {
	ejob.FastSQL, ejob.K, ejob.MaxRowsPerUnit = "", 0, 0
	// Where the dataset version that runs now has one row per unit and no row without one,
	// bounding is the identity and the direct plan computes the same partial aggregates
	// faster.
	if plan.DP.DirectSQL != "" && len(sc.Tables) > 0 {
		for _, t := range sc.Tables {
			if t.Name == plan.Tables[0] && t.MaxRowsPerUnit == 1 && t.UnitComplete {
				ejob.SQL = plan.DP.DirectSQL
			}
		}
	}
	var secret [8]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return err
	}
	ejob.Secret = int64(binary.LittleEndian.Uint64(secret[:]) | 1)
	var exact bytes.Buffer
	usage, err := s.box.Run(ctx, id, ejob, &exact)
	if err != nil {
		return err
	}
	rec, err := engine.ReadResult(&exact, s.cfg.MaxResultByte)
	clear(exact.Bytes())
	if err != nil {
		return launch.Fail("the runner returned no readable result", err)
	}
	protected, rep, err := gate.DP(rec, plan, spend)
	rec.Release()
	if err != nil {
		return launch.Fail("the output gate refused the result", err)
	}
	defer protected.Release()
	report, _ := json.Marshal(rep)
	d := plan.DP
	meta := output.Meta{
		Mechanism: api.Mechanism{Kind: string(policy.ModeDP), Groups: rep.Released, DP: &api.DPMechanism{Epsilon: spend.Epsilon(), Delta: spend.DeltaValue(),
			MaxGroups: d.MaxGroups, MaxRows: d.MaxRows, Noise: d.Noise, Report: report}},
		Datasets: versions,
	}
	return s.toReview(ctx, id, protected, meta, func(tx store.Tx, cur *job) error {
		cur.Status = jobReview
		cur.body.Finished = s.rec.Now()
		cur.body.Message = fmt.Sprintf("waiting for export review: %d groups released with differential privacy (%s)", rep.Released, spend)
		cur.body.Metering = &api.Metering{WallMS: usage.Wall.Milliseconds(), CPUMS: usage.CPU.Milliseconds(), PeakMemoryMB: usage.PeakMemoryBytes >> 20,
			OutputRows: protected.NumRows(), Groups: rep.Released}
		if err := cur.put(ctx, tx, s.rec.Now()); err != nil {
			return err
		}
		s.slog.Info("job gated", "job", id, "isolation", s.box.Name(), "mechanism", "dp", "wall_ms", usage.Wall.Milliseconds(),
			"peak_mb", usage.PeakMemoryBytes>>20, "released", rep.Released)
		return s.rec.Record(ctx, tx, platform.System, "job.gate", "job/"+id, map[string]string{
			"mechanism": "dp", "epsilon": ledger.FormatEpsilon(spend.Eps), "delta": ledger.FormatDelta(spend.Delta),
			"released": fmt.Sprint(rep.Released), "wall_ms": fmt.Sprint(usage.Wall.Milliseconds())})
	})
}

// recover runs at start: jobs that were running when the daemon stopped are marked failed
// (their containers were destroyed by the launcher's cleanup), queued jobs are queued again.
func (s *Server) recover(ctx context.Context) error {
	leftovers, err := s.box.Cleanup(ctx)
	if err != nil {
		return fmt.Errorf("clean up after the previous run: %w", err)
	}
	for _, id := range leftovers {
		s.slog.Warn("destroyed leftover sandbox", "job", id)
	}
	// A custom job's inputs (copies of granted columns) and its /out tmpfs do not outlive a
	// crash.
	work := filepath.Join(s.cfg.DataDir, "work")
	if ents, err := os.ReadDir(work); err == nil {
		for _, e := range ents {
			dir := filepath.Join(work, e.Name())
			unix.Unmount(filepath.Join(dir, "out"), unix.MNT_DETACH)
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("remove the leftover work of job %s: %w", e.Name(), err)
			}
			s.slog.Warn("removed leftover custom-job work", "job", e.Name())
		}
	}
	var queued []store.Job
	err = s.db.Update(ctx, func(tx store.Tx) error {
		// Datasets registered before the ledger existed get their declared total now (a
		// no-op for every other dataset: a total is set once).
		sets, err := tx.Datasets(ctx)
		if err != nil {
			return err
		}
		for _, d := range sets {
			schemas, _, err := catalog.Load(ctx, tx, []string{d.Name})
			if err != nil {
				return err
			}
			if err := ledger.SetTotal(ctx, tx, schemas[d.Name]); err != nil {
				return err
			}
		}
		js, err := tx.Jobs(ctx, store.JobFilter{Statuses: []string{jobRunning, jobQueued}})
		if err != nil {
			return err
		}
		for _, sj := range js {
			if sj.Status == jobQueued {
				queued = append(queued, sj)
				continue
			}
			j, err := decodeJob(sj)
			if err != nil {
				return err
			}
			j.Status = jobFailed
			j.body.Message = "the platform restarted while the job ran; submit it again"
			j.body.Finished = s.rec.Now()
			if err := j.put(ctx, tx, s.rec.Now()); err != nil {
				return err
			}
			if err := s.rec.Record(ctx, tx, platform.System, "job.fail", "job/"+j.ID, map[string]string{"message": j.body.Message}); err != nil {
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

var _ = time.Second
