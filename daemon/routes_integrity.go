package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// auditCheckpoint answers the latest signed checkpoint, for auditors to keep (veil audit
// checkpoint -o FILE) and check later with consistency proofs.
func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActAuditRead); err != nil {
		return err
	}
	var cp audit.Checkpoint
	err := s.db.View(r.Context(), func(tx store.Tx) error {
		var err error
		cp, err = tx.LatestCheckpoint(r.Context())
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: the audit log has no signed checkpoint yet", policy.ErrNotFound)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cp)
	return nil
}

// auditConsistency answers an RFC 6962 consistency proof from the tree of size from to the
// checkpoint of size to (absent: the latest), both read in one snapshot.
func (s *Server) auditConsistency(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActAuditRead); err != nil {
		return err
	}
	q := r.URL.Query()
	from, err := strconv.ParseInt(q.Get("from"), 10, 64)
	if err != nil || from < 1 {
		return fmt.Errorf("%w: from must be the size of a tree you kept a checkpoint of (a number ≥ 1)", policy.ErrInvalid)
	}
	var to int64
	if v := q.Get("to"); v != "" {
		if to, err = strconv.ParseInt(v, 10, 64); err != nil || to < 1 {
			return fmt.Errorf("%w: to must be the size of a signed checkpoint (a number ≥ 1), or absent for the latest", policy.ErrInvalid)
		}
	}
	var proof *audit.ConsistencyProof
	err = s.db.View(r.Context(), func(tx store.Tx) error {
		var err error
		proof, err = s.log.ProveConsistency(r.Context(), tx, from, to)
		return err
	})
	switch {
	case errors.Is(err, audit.ErrNotFound):
		return fmt.Errorf("%w: %v", policy.ErrNotFound, err)
	case errors.Is(err, audit.ErrInvalid):
		return fmt.Errorf("%w: %v", policy.ErrInvalid, err)
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusOK, proof)
	return nil
}
