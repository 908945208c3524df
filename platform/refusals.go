package platform

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// maxRefusalKeys bounds the (who, action) pairs one window keeps apart; refusals beyond are
// counted together in one entry, so that a flood from many sources grows neither memory nor
// the log without bound.
const maxRefusalKeys = 1000

// Refusals records refused requests in the audit log, coalesced: one entry per (principal,
// action) — or, for requests without a valid token, per (source, action) — and window, with
// the number of refusals and the window's bounds. Entries are written at the end of each
// window and when the daemon stops (Run). They never hold a token, a body or a query string.
type Refusals struct {
	db     store.Store
	rec    *Recorder
	log    *slog.Logger
	window time.Duration
	max    int

	mu       sync.Mutex
	from     time.Time // the window's start; zero while nothing was refused in it
	counts   map[refusalKey]int64
	overflow int64 // refusals of keys beyond max
}

type refusalKey struct {
	forbidden bool   // a known principal refused an action; else an unauthenticated source
	kind      string // for a known principal: why a permitted action was refused (Refused); "" when forbidden
	who       string
	role      string
	tenant    string
	action    string
}

// NewRefusals records refusals through rec into db, one entry per key and window.
func NewRefusals(db store.Store, rec *Recorder, log *slog.Logger, window time.Duration) *Refusals {
	if window <= 0 {
		window = time.Minute
	}
	return &Refusals{db: db, rec: rec, log: log, window: window, max: maxRefusalKeys, counts: map[refusalKey]int64{}}
}

// Forbidden notes that p was refused action (their role or tenant does not allow it).
func (r *Refusals) Forbidden(p policy.Principal, action string) {
	r.note(refusalKey{forbidden: true, who: p.ID, role: string(p.Role), tenant: p.Tenant, action: action})
}

// Refused notes that an authenticated request of p for action was refused for another
// reason than its role: kind is the API's error kind ("invalid", "conflict", "too_large"),
// or "budget" for a spend the privacy budget does not allow. Nothing of the request or the
// error's text is kept: kind and the count are enough to see who is refused what, and the
// text could repeat what the caller sent.
func (r *Refusals) Refused(p policy.Principal, action, kind string) {
	r.note(refusalKey{forbidden: true, kind: kind, who: p.ID, role: string(p.Role), tenant: p.Tenant, action: action})
}

// Unauthenticated notes a request for action from source without a valid token.
func (r *Refusals) Unauthenticated(source, action string) {
	r.note(refusalKey{who: source, action: action})
}

func (r *Refusals) note(k refusalKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.from.IsZero() {
		r.from = r.rec.Now()
	}
	if _, ok := r.counts[k]; !ok && len(r.counts) >= r.max {
		r.overflow++
		return
	}
	r.counts[k]++
}

// Run writes the window's entries at the end of each window until ctx ends; Flush writes
// the last one.
func (r *Refusals) Run(ctx context.Context) {
	Every(ctx, r.window, r.log, "audit refused requests", r.Flush)
}

// Flush writes one entry per key of the current window, in one transaction, and starts a new
// window. If the write fails the counts are kept for the next flush.
func (r *Refusals) Flush(ctx context.Context) error {
	r.mu.Lock()
	counts, overflow, from := r.counts, r.overflow, r.from
	r.counts, r.overflow, r.from = map[refusalKey]int64{}, 0, time.Time{}
	r.mu.Unlock()
	if len(counts) == 0 && overflow == 0 {
		return nil
	}
	to := r.rec.Now()
	err := r.db.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		for k, n := range counts {
			details := map[string]string{"count": fmt.Sprint(n), "from": from.Format(time.RFC3339), "to": to.Format(time.RFC3339)}
			if k.forbidden {
				p := policy.Principal{ID: k.who, Role: policy.Role(k.role), Tenant: k.tenant}
				action := "auth.refused"
				if k.kind != "" {
					action, details["kind"] = "request.refused", k.kind
				}
				if err := r.rec.Record(ctx, tx, p, action, "action/"+k.action, details); err != nil {
					return err
				}
				continue
			}
			details["source"] = k.who
			if err := r.rec.Record(ctx, tx, policy.Principal{ID: "anonymous", Role: "none"}, "auth.unauthenticated", "action/"+k.action, details); err != nil {
				return err
			}
		}
		if overflow > 0 {
			return r.rec.Record(ctx, tx, System, "auth.refused.other", "daemon", map[string]string{"count": fmt.Sprint(overflow),
				"from": from.Format(time.RFC3339), "to": to.Format(time.RFC3339), "note": fmt.Sprintf("refusals beyond %d distinct principals and sources in one window", r.max)})
		}
		return nil
	})
	if err != nil {
		r.mu.Lock()
		for k, n := range counts {
			if _, ok := r.counts[k]; ok || len(r.counts) < r.max {
				r.counts[k] += n
			} else {
				r.overflow += n
			}
		}
		r.overflow += overflow
		if r.from.IsZero() || from.Before(r.from) {
			r.from = from
		}
		r.mu.Unlock()
	}
	return err
}
