package jobs

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/veil-dp/veil/policy"
)

// admission bounds what one tenant may ask of the daemon, so that a flood from one tenant
// cannot slow the others' submissions or crowd their jobs out: submissions a second (a token
// bucket per tenant), validations at once (more wait their turn), and jobs queued or running
// (checked in the transaction that queues a job). The scheduler then takes the tenants'
// jobs in turn.
type admission struct {
	rate      float64 // tokens a second; 0: no limit
	burst     float64
	validates int // 0: no limit
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	slots   map[string]chan struct{}
}

type bucket struct {
	tokens float64
	at     time.Time
}

// queueFullRetry is the Retry-After of a submission refused for a full queue: about the time
// a short job takes to leave it.
const queueFullRetry = 10 * time.Second

func newAdmission(rate float64, burst, validates int) *admission {
	return &admission{rate: rate, burst: float64(max(burst, 1)), validates: validates, now: time.Now,
		buckets: map[string]*bucket{}, slots: map[string]chan struct{}{}}
}

// allow takes one submission from tenant's bucket, or says when there will be one.
func (a *admission) allow(tenant string) error {
	if a.rate <= 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	b := a.buckets[tenant]
	if b == nil {
		b = &bucket{tokens: a.burst, at: now}
		a.buckets[tenant] = b
	}
	b.tokens = math.Min(a.burst, b.tokens+now.Sub(b.at).Seconds()*a.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	wait := time.Duration(math.Ceil((1 - b.tokens) / a.rate * float64(time.Second)))
	return &policy.Throttled{Retry: wait, Reason: fmt.Sprintf("tenant %s submits more than %s jobs a second (bursts of %d); wait and submit again",
		tenant, strconv.FormatFloat(a.rate, 'g', -1, 64), int(a.burst))}
}

// validating waits for one of tenant's validation places, honouring ctx; done gives it back.
func (a *admission) validating(ctx context.Context, tenant string) (done func(), err error) {
	if a.validates <= 0 {
		return func() {}, nil
	}
	a.mu.Lock()
	ch := a.slots[tenant]
	if ch == nil {
		ch = make(chan struct{}, a.validates)
		a.slots[tenant] = ch
	}
	a.mu.Unlock()
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for one of the tenant's %d validation places: %w", a.validates, ctx.Err())
	}
}

// queueFull is the refusal of a job whose tenant has max jobs queued or running already.
func queueFull(tenant string, max int) error {
	return &policy.Throttled{Retry: queueFullRetry, Reason: fmt.Sprintf("tenant %s has %d jobs queued or running, the most it may; wait for one to finish (or cancel one) and submit again", tenant, max)}
}
