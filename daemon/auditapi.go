package daemon

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

func (s *Server) auditRecords(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActAuditRead); err != nil {
		return err
	}
	q := r.URL.Query()
	from, err1 := strconv.ParseInt(q.Get("from"), 10, 64)
	if q.Get("from") == "" {
		from, err1 = 0, nil
	}
	limit, err2 := strconv.ParseInt(q.Get("limit"), 10, 64)
	if q.Get("limit") == "" {
		limit, err2 = 1000, nil
	}
	if err1 != nil || err2 != nil || from < 0 || limit <= 0 || limit > 10000 {
		return fmt.Errorf("%w: from must be ≥ 0 and limit in 1..10000", policy.ErrInvalid)
	}
	var out api.AuditRecords
	err := s.db.View(r.Context(), func(tx store.Tx) error {
		n, err := tx.Size(r.Context())
		if err != nil {
			return err
		}
		out.Size, out.From = n, from
		if q.Get("tail") != "" && from == 0 {
			out.From = max(0, n-limit)
		}
		out.Records, err = tx.ReadRecords(r.Context(), out.From, min(n, out.From+limit))
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// maxCheckpointsPage is the most checkpoints one GET /v1/audit/checkpoints returns, as
// for records; defaultCheckpointsPage when the request names no limit.
const (
	maxCheckpointsPage     = 10000
	defaultCheckpointsPage = 1000
)

func (s *Server) auditCheckpoints(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActAuditRead); err != nil {
		return err
	}
	q := r.URL.Query()
	from, err1 := strconv.ParseInt(q.Get("from"), 10, 64)
	if q.Get("from") == "" {
		from, err1 = 0, nil
	}
	limit, err2 := strconv.ParseInt(q.Get("limit"), 10, 64)
	if q.Get("limit") == "" {
		limit, err2 = defaultCheckpointsPage, nil
	}
	if err1 != nil || err2 != nil || from < 0 || limit <= 0 || limit > maxCheckpointsPage {
		return fmt.Errorf("%w: from (a tree size) must be ≥ 0 and limit in 1..%d; follow next to read further", policy.ErrInvalid, maxCheckpointsPage)
	}
	out := api.AuditCheckpoints{From: from, Checkpoints: []api.AuditCheckpoint{}}
	err := s.db.View(r.Context(), func(tx store.Tx) error {
		// One more than asked for tells whether a next page exists.
		cps, err := tx.CheckpointsFrom(r.Context(), from, int(limit)+1)
		if err != nil {
			return err
		}
		if int64(len(cps)) > limit {
			cps = cps[:limit]
			out.Next = cps[len(cps)-1].Size + 1
		}
		for _, c := range cps {
			out.Checkpoints = append(out.Checkpoints, api.AuditCheckpoint{Size: c.Size, Note: c.Note})
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// auditVerify verifies the log as stored, including the stored interior hashes; the CLI also
// verifies the records independently against the signed checkpoints.
func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActAuditRead); err != nil {
		return err
	}
	var rep *audit.Report
	var verr error
	err := s.db.View(r.Context(), func(tx store.Tx) error {
		rep, verr = s.log.Verify(r.Context(), tx)
		return nil
	})
	if err != nil {
		return err
	}
	if verr != nil {
		writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": verr.Error()})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "report": rep})
	return nil
}

func (s *Server) auditProof(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	if err := policy.Allow(p, policy.ActAuditRead); err != nil {
		return err
	}
	idx, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil || idx < 0 {
		return fmt.Errorf("%w: the entry index must be a number ≥ 0", policy.ErrInvalid)
	}
	var proof *audit.Proof
	err = s.db.View(r.Context(), func(tx store.Tx) error {
		n, err := tx.Size(r.Context())
		if err != nil {
			return err
		}
		if idx >= n {
			return fmt.Errorf("%w: the log has %d entries; entry %d does not exist", policy.ErrNotFound, n, idx)
		}
		proof, err = s.log.Prove(r.Context(), tx, idx)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, proof)
	return nil
}
