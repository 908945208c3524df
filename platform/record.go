package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// System is the principal of what the daemon does on its own: running jobs, defaults of
// overdue reviews, sweeps.
var System = policy.Principal{ID: "veil-daemon", Role: "system"}

// Recorder appends the audit entries of state changes, stamped by the platform's clock.
type Recorder struct {
	log *audit.Log
	now func() time.Time
}

// NewRecorder records into log; clock, when set, replaces the wall clock (tests of expiry).
func NewRecorder(log *audit.Log, clock func() time.Time) *Recorder {
	r := &Recorder{log: log, now: func() time.Time { return time.Now().UTC() }}
	if clock != nil {
		r.now = func() time.Time { return clock().UTC() }
	}
	return r
}

// Now is the platform's time, in UTC.
func (r *Recorder) Now() time.Time { return r.now() }

// Record appends an audit entry inside tx: it commits with the change it records, or not at
// all.
func (r *Recorder) Record(ctx context.Context, tx store.Tx, p policy.Principal, action, object string, details map[string]string) error {
	_, err := r.RecordAt(ctx, tx, p, action, object, details)
	return err
}

// RecordAt is Record, and returns the entry's index in the log: a later decision can then
// check what the entry says (Recorded) rather than a copy kept in the store.
func (r *Recorder) RecordAt(ctx context.Context, tx store.Tx, p policy.Principal, action, object string, details map[string]string) (int64, error) {
	i, err := r.log.Append(ctx, tx, audit.Entry{Time: r.now(), Actor: p.ID, Role: string(p.Role), Tenant: p.Tenant,
		Action: action, Object: object, Details: details})
	if err != nil {
		return 0, fmt.Errorf("audit %s: %w", action, err)
	}
	return i, nil
}

// Recorded reads the audit entry at index and checks that it is the entry the log signed:
// included in the latest signed checkpoint when that covers it (a proof against the
// platform's key), else equal to the tree hash stored when it was appended. A writer of the
// store who changed the entry (and what it recorded) is caught here, at the decision, not
// only by the next `veil audit verify`.
func (r *Recorder) Recorded(ctx context.Context, tx store.Tx, index int64) (audit.Entry, error) {
	var data []byte
	p, err := r.log.Prove(ctx, tx, index)
	switch {
	case err == nil:
		data = p.Record
	case errors.Is(err, audit.ErrNotFound):
		// Not signed yet (a signer signs after the commit): the stored leaf hash.
		recs, err := tx.ReadRecords(ctx, index, index+1)
		if err != nil || len(recs) != 1 {
			return audit.Entry{}, fmt.Errorf("%w: audit entry %d is missing", audit.ErrTampered, index)
		}
		hs, err := tx.ReadHashes(ctx, []int64{tlog.StoredHashIndex(0, index)})
		if err != nil || len(hs) != 1 || hs[0] != tlog.RecordHash(recs[0]) {
			return audit.Entry{}, fmt.Errorf("%w: audit entry %d does not match its stored hash", audit.ErrTampered, index)
		}
		data = recs[0]
	default:
		return audit.Entry{}, err
	}
	return audit.DecodeEntry(data)
}

// Env is what every service of the daemon is built on: the store, the configuration, the
// audit recorder with the platform's clock, and the operator's log.
type Env struct {
	DB     store.Store
	Config Config
	Rec    *Recorder
	Log    *slog.Logger
}
