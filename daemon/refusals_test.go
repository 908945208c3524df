package daemon_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// TestRefusalsAudited: a vendor calling operator and reviewer actions, and requests with a
// bad token, are refused and recorded: one entry per principal (or source) and action and
// window with the count, written at the window's end or when the daemon stops; never the
// token or the body.
func TestRefusalsAudited(t *testing.T) {
	e := start(t, func(c *daemon.Config) {
		c.Isolation = "process"
		c.RefusalWindow = time.Hour // only the shutdown writes them
	})
	ctx := context.Background()
	vendor := e.principal("acme analyst", "vendor", "acme")
	auditor := e.principal("inspector", "auditor", "")
	me, err := vendor.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := vendor.CreatePrincipal(ctx, api.CreatePrincipal{Name: "SECRET-BODY-MARKER", Role: "operator"}); kindOf(err) != "forbidden" {
			t.Fatalf("a vendor creates principals: %v", err)
		}
	}
	for range 7 {
		if _, err := vendor.Reviews(ctx); kindOf(err) != "forbidden" {
			t.Fatalf("a vendor lists reviews: %v", err)
		}
	}
	badToken := "veil_SECRET-TOKEN-MARKER"
	bad := e.client(badToken)
	for range 30 {
		if _, err := bad.Whoami(ctx); kindOf(err) != "unauthenticated" {
			t.Fatalf("a bad token: %v", err)
		}
	}
	before := entries(t, auditor)
	if len(find(before, "auth.refused", "action/principal.manage")) != 0 {
		t.Fatal("refusals written before their window ended")
	}

	e.stop()
	e.boot()
	es := entries(t, auditor)
	got := map[string]map[string]string{}
	for _, x := range es {
		if strings.HasPrefix(x.Action, "auth.") {
			if _, dup := got[x.Action+" "+x.Object+" "+x.Actor]; dup {
				t.Fatalf("two entries for one key in one window: %+v", x)
			}
			got[x.Action+" "+x.Object+" "+x.Actor] = x.Details
		}
	}
	if d := got["auth.refused action/principal.manage "+me.ID]; d["count"] != "50" || d["from"] == "" || d["to"] == "" {
		t.Fatalf("vendor's refused principal.manage: %v (all: %v)", d, got)
	}
	if d := got["auth.refused action/output.review "+me.ID]; d["count"] != "7" {
		t.Fatalf("vendor's refused output.review: %v", d)
	}
	d := got["auth.unauthenticated action/GET /v1/whoami anonymous"]
	if d["count"] != "30" || !strings.HasPrefix(d["source"], "unix uid ") {
		t.Fatalf("bad tokens: %v (all: %v)", d, got)
	}
	recs, err := auditor.AuditRecords(ctx, 0, 10000, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs.Records {
		if strings.Contains(string(r), "SECRET") {
			t.Fatalf("an audit entry holds a token or a body: %s", r)
		}
	}

	// With a short window, entries come at its end, without a shutdown.
	e.stop()
	e.cfg.RefusalWindow = 200 * time.Millisecond
	e.boot()
	for range 3 {
		bad.Whoami(ctx)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		n := len(find(entries(t, auditor), "auth.unauthenticated", "action/GET /v1/whoami"))
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d unauthenticated entries after the window ended, want 2", n)
		}
	}
}
