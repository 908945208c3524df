package daemon

import (
	"context"
	"errors"
	"sort"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/metrics"
	"github.com/veil-dp/veil/store"
)

// snapshot reads what a scrape shows of the platform's state, in one read transaction: the
// jobs not yet final (the work in flight, found through the status index, not every job
// ever run), the queues, each dataset's budget, the audit log's size and newest checkpoint.
func (s *Server) snapshot(ctx context.Context) (metrics.Snapshot, error) {
	snap := metrics.Snapshot{Queued: s.jobs.QueueDepths()}
	now := s.rec.Now()
	err := s.db.View(ctx, func(tx store.Tx) error {
		active, err := tx.Jobs(ctx, store.JobFilter{Statuses: []string{jobs.Queued, jobs.Running, jobs.Review}})
		if err != nil {
			return err
		}
		counts := map[[2]string]int{}
		for _, sj := range active {
			j, err := jobs.Decode(sj)
			if err != nil {
				return err
			}
			counts[[2]string{j.Body.Kind, j.Status}]++
			if j.Status == jobs.Review {
				snap.Review++
				if !j.Body.Finished.IsZero() { // in review since its run finished
					snap.Oldest = max(snap.Oldest, now.Sub(j.Body.Finished))
				}
			}
		}
		for k, n := range counts {
			snap.Jobs = append(snap.Jobs, metrics.JobCount{Kind: k[0], State: k[1], N: n})
		}
		sort.Slice(snap.Jobs, func(a, b int) bool {
			return snap.Jobs[a].Kind+"/"+snap.Jobs[a].State < snap.Jobs[b].Kind+"/"+snap.Jobs[b].State
		})
		sets, err := tx.Datasets(ctx)
		if err != nil {
			return err
		}
		for _, d := range sets {
			total, allocated, spent, err := ledger.Use(ctx, tx, d.Name)
			if errors.Is(err, store.ErrNotFound) {
				continue // no budget recorded for it
			}
			if err != nil {
				return err
			}
			snap.Budgets = append(snap.Budgets, metrics.Budget{Dataset: d.Name, Total: total.Epsilon(), Allocated: allocated.Epsilon(), Spent: spent.Epsilon()})
		}
		if snap.AuditEntries, err = tx.Size(ctx); err != nil {
			return err
		}
		cp, err := tx.LatestCheckpoint(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		snap.Checkpointed = cp.Size
		recs, err := tx.ReadRecords(ctx, cp.Size-1, cp.Size)
		if err != nil || len(recs) != 1 {
			return err
		}
		if e, err := audit.DecodeEntry(recs[0]); err == nil {
			snap.CheckpointTime = e.Time
		}
		return nil
	})
	return snap, err
}

var _ jobs.Observer = (*metrics.Registry)(nil)
