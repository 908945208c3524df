package daemon_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestTokenExpiryAndRotation: a token created with an expiry is refused after it, saying so;
// a rotated principal's new token works at once and its old one until the grace period
// ends, then is refused, saying it was replaced; only operators rotate.
func TestTokenExpiryAndRotation(t *testing.T) {
	clk := &testClock{t: time.Now().UTC()}
	e := start(t, func(c *daemon.Config) { c.Clock = clk.now })
	ctx := context.Background()

	if _, err := e.op.CreatePrincipal(ctx, api.CreatePrincipal{Name: "x", Role: "auditor", Expires: "tomorrow"}); kindOf(err) != "invalid" {
		t.Fatalf("a bad expiry: %v", err)
	}
	p, err := e.op.CreatePrincipal(ctx, api.CreatePrincipal{Name: "temp auditor", Role: "auditor", Expires: "30d"})
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.now().Add(30 * 24 * time.Hour).Truncate(time.Millisecond); !p.Expires.Equal(want) {
		t.Fatalf("expires %v, want %v", p.Expires, want)
	}
	temp := e.client(p.Token)
	if _, err := temp.Whoami(ctx); err != nil {
		t.Fatalf("a token before its expiry: %v", err)
	}
	if ps, err := e.op.Principals(ctx); err != nil || !listed(ps, p.ID, p.Expires) {
		t.Errorf("principal list without the expiry: %+v %v", ps, err)
	}

	q, err := e.op.CreatePrincipal(ctx, api.CreatePrincipal{Name: "acme analyst", Role: "vendor", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	old := e.client(q.Token)
	if _, err := old.RotatePrincipal(ctx, q.ID, api.RotatePrincipal{Grace: "24h"}); kindOf(err) != "forbidden" {
		t.Fatalf("a vendor rotates: %v", err)
	}
	r, err := e.op.RotatePrincipal(ctx, q.ID, api.RotatePrincipal{Grace: "24h"})
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != q.ID || r.Token == "" || r.Token == q.Token {
		t.Fatalf("rotation: %+v", r)
	}
	renewed := e.client(r.Token)
	for name, c := range map[string]interface {
		Whoami(context.Context) (api.Principal, error)
	}{"new": renewed, "old, in its grace period": old} {
		if w, err := c.Whoami(ctx); err != nil || w.ID != q.ID {
			t.Errorf("%s token: %+v %v", name, w, err)
		}
	}

	clk.advance(25 * time.Hour)
	if _, err := old.Whoami(ctx); kindOf(err) != "unauthenticated" || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("the old token after its grace period: %v", err)
	}
	if _, err := renewed.Whoami(ctx); err != nil {
		t.Errorf("the new token after the grace period: %v", err)
	}
	clk.advance(30 * 24 * time.Hour)
	if _, err := temp.Whoami(ctx); kindOf(err) != "unauthenticated" || !strings.Contains(err.Error(), "expired") {
		t.Errorf("a token after its expiry: %v", err)
	}
	// A revoked principal's tokens, new and old, are refused alike.
	if _, err := e.op.RevokePrincipal(ctx, q.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := renewed.Whoami(ctx); kindOf(err) != "unauthenticated" {
		t.Errorf("a revoked principal's new token: %v", err)
	}
	if _, err := e.op.RotatePrincipal(ctx, q.ID, api.RotatePrincipal{}); kindOf(err) != "conflict" {
		t.Errorf("a revoked principal rotated: %v", err)
	}
}

func listed(ps []api.Principal, id string, expires time.Time) bool {
	for _, p := range ps {
		if p.ID == id {
			return p.Expires.Equal(expires)
		}
	}
	return false
}
