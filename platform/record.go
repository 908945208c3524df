package platform

import (
	"context"
	"fmt"
	"log/slog"
	"time"

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
	_, err := r.log.Append(ctx, tx, audit.Entry{Time: r.now(), Actor: p.ID, Role: string(p.Role), Tenant: p.Tenant,
		Action: action, Object: object, Details: details})
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// Env is what every service of the daemon is built on: the store, the configuration, the
// audit recorder with the platform's clock, and the operator's log.
type Env struct {
	DB     store.Store
	Config Config
	Rec    *Recorder
	Log    *slog.Logger
}
