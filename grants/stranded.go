package grants

import (
	"context"
	"strconv"
	"strings"

	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// ReleaseStranded gives back to their datasets the budget slices of grants that never became
// active: a pending or rejected grant. None holds a slice since the ledger writes a grant's
// slices only once every dataset has room (89d6386), but a store written before may: an
// overdue default approval gave the datasets that had room their slices, found one without,
// and held the grant, keeping the slices; a reviewer may have rejected it since. Such a slice
// reserves budget that no job can use, and a vendor could have drained a dataset with such
// grants. No job ran on such a grant, so nothing was spent from what is released. Each
// release is one audit entry (grant.slices.released) in the same transaction. The daemon
// calls it when it starts; with nothing to release it writes nothing.
func (s *Service) ReleaseStranded(ctx context.Context) error {
	var stranded []store.Grant
	err := s.DB.View(ctx, func(tx store.Tx) error {
		gs, err := tx.Grants(ctx, "")
		if err != nil {
			return err
		}
		for _, g := range gs {
			if neverActive(g.Status) {
				stranded = append(stranded, g)
			}
		}
		return nil
	})
	if err != nil || len(stranded) == 0 {
		return err
	}
	return s.DB.Update(ctx, func(tx store.Tx) error {
		for _, g := range stranded {
			cur, err := tx.Grant(ctx, g.ID)
			if err != nil {
				return err
			}
			if !neverActive(cur.Status) {
				continue
			}
			slices, err := tx.Slices(ctx, g.ID, "")
			if err != nil || len(slices) == 0 {
				if err != nil {
					return err
				}
				continue
			}
			var names, eps, delta []string
			for _, sl := range slices {
				names = append(names, sl.Dataset)
				eps = append(eps, strconv.FormatInt(sl.Eps, 10))
				delta = append(delta, strconv.FormatInt(sl.Delta, 10))
			}
			if err := tx.DeleteSlices(ctx, g.ID); err != nil {
				return err
			}
			if err := s.Rec.Record(ctx, tx, platform.System, "grant.slices.released", "grant/"+g.ID, map[string]string{
				"status": cur.Status, "datasets": strings.Join(names, ","),
				"epsilon_units": strings.Join(eps, ","), "delta_units": strings.Join(delta, ",")}); err != nil {
				return err
			}
			if s.Log != nil {
				s.Log.Warn("released the budget slices of a grant that never became active (left by an earlier version)", "grant", g.ID, "status", cur.Status, "datasets", strings.Join(names, ","))
			}
		}
		return nil
	})
}

// neverActive says whether a grant in status can never have run a job: pending (in review,
// or held) or rejected.
func neverActive(status string) bool {
	return status == string(policy.StatusPending) || status == string(policy.StatusRejected)
}
