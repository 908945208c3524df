package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Tampered is a stored output that is not the output its gate produced: its bytes do not
// hash to the digest the job.gate audit entry recorded, or that entry is not in the log as
// signed. Nothing is shown or released from it; Note records it. It is a conflict with the
// state the platform vouches for; its message names neither digest nor value.
type Tampered struct {
	Job      string
	Recorded string // the digest the gate's audit entry holds ("" if none can be read)
	Stored   string // the digest of the bytes in the store
	Reason   string // for the operator and the audit log
}

func (e *Tampered) Error() string {
	return fmt.Sprintf("the stored output of job %s is not the output its gate produced (the audit log holds that one's digest); it is withheld, and the operator has been told", e.Job)
}

func (e *Tampered) Unwrap() error { return policy.ErrConflict }

// LoadOutput reads a job's stored (protected) output and its metadata, and checks that the
// bytes are those the gate produced: they hash to the digest recorded in the job's job.gate
// audit entry, read from the log and checked against its signed checkpoint. Meta.Digest is
// then that digest. Every reader of an output (review, export, dev runs, twins) goes
// through here, so a changed store row is never shown, approved or released.
func (s *Service) LoadOutput(ctx context.Context, tx store.Tx, id string) (output.Meta, arrow.RecordBatch, error) {
	var meta output.Meta
	o, err := tx.Output(ctx, id)
	if err != nil {
		return meta, nil, err
	}
	if err := json.Unmarshal(o.Meta, &meta); err != nil {
		return meta, nil, &Tampered{Job: id, Stored: output.Digest(o.Data), Reason: "its stored description does not parse"}
	}
	stored := output.Digest(o.Data)
	if meta.GateEntry <= 0 {
		return meta, nil, &Tampered{Job: id, Stored: stored, Reason: "no audit entry recorded its digest (stored before outputs were bound to their digest, or the record was changed); run the job again"}
	}
	e, err := s.Rec.Recorded(ctx, tx, meta.GateEntry)
	if err != nil {
		return meta, nil, &Tampered{Job: id, Stored: stored, Reason: fmt.Sprintf("its gate entry %d does not verify: %v", meta.GateEntry, err)}
	}
	recorded := e.Details["output_sha256"]
	if e.Action != "job.gate" || e.Object != "job/"+id || recorded == "" {
		return meta, nil, &Tampered{Job: id, Stored: stored, Reason: fmt.Sprintf("audit entry %d is not this job's gate entry", meta.GateEntry)}
	}
	if recorded != stored {
		return meta, nil, &Tampered{Job: id, Recorded: recorded, Stored: stored, Reason: "the stored bytes do not hash to the digest the gate recorded"}
	}
	meta.Digest = recorded
	rec, err := output.DecodeIPC(o.Data)
	return meta, rec, err
}

// Note records in the audit log, in a transaction of its own (the refused one rolled back),
// that p met a tampered output while doing action, and tells the operator; other errors it
// leaves alone. It returns err.
func (s *Service) Note(ctx context.Context, p policy.Principal, action string, err error) error {
	var t *Tampered
	if !errors.As(err, &t) {
		return err
	}
	s.Log.Error("stored output does not match its gate's audit entry; withheld", "job", t.Job, "action", action, "by", p.ID,
		"recorded", t.Recorded, "stored", t.Stored, "reason", t.Reason)
	details := map[string]string{"action": action, "by": p.ID, "stored_sha256": t.Stored, "reason": t.Reason}
	if t.Recorded != "" {
		details["recorded_sha256"] = t.Recorded
	}
	if aerr := s.DB.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		return s.Rec.Record(ctx, tx, platform.System, "output.tampered", "job/"+t.Job, details)
	}); aerr != nil {
		s.Log.Error("audit a tampered output", "job", t.Job, "err", aerr)
	}
	return err
}
