package daemon_test

import (
	"context"
	"testing"
	"time"

	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// TestStrandedSlicesReleased: a store written before 89d6386 may hold slices of grants that
// never became active (an overdue default approval gave some datasets their slices, found one
// without room, and held the grant; its reviewer may have rejected it since). Such a slice
// reserves budget no job can ever use. The daemon gives it back to its dataset when it
// starts, says so in the audit log, and leaves the slices of active grants alone.
func TestStrandedSlicesReleased(t *testing.T) {
	r := startBudget(t, nil)
	ctx := context.Background()
	e, acme, globex, prov, auth := r.env, r.acme, r.globex, r.prov, r.auth
	active, err := e.dpGrant(globex, auth, prov, "globex statistics", 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	rejected, err := applyDP(acme, "rejected", 3)
	if err != nil {
		t.Fatal(err)
	}
	rid := rejected["id"].(string)
	if g, err := e.op.ActOnGrant(ctx, rid, "reject", "not now"); err != nil || g["status"] != "rejected" {
		t.Fatalf("reject: %v %v", g["status"], err)
	}
	pending, err := applyDP(acme, "pending", 2)
	if err != nil {
		t.Fatal(err)
	}
	pid := pending["id"].(string)

	// What the old code left behind, written into the store while the daemon is down.
	e.stop()
	marker, err := e.cfg.StoreMarkerPath()
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.OpenWith(ctx, sqlite.Options{Path: e.cfg.StorePath(), Marker: marker})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = db.Update(ctx, func(tx store.Tx) error {
		for _, s := range []store.Slice{{Grant: rid, Dataset: "residents", Eps: 3_000_000, At: now}, {Grant: pid, Dataset: "residents", Eps: 2_000_000, At: now}} {
			if err := tx.PutSlice(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	e.boot()

	b, err := e.op.Budgets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range b.Datasets {
		if d.Dataset == "residents" {
			found = true
			if d.Allocated.EpsilonUnits != 4_000_000 {
				t.Errorf("residents has %d epsilon units given to grants, want the active grant's 4000000 only", d.Allocated.EpsilonUnits)
			}
		}
	}
	if !found {
		t.Fatal("no budget figures for residents")
	}
	es := entries(t, r.aud)
	for _, id := range []string{rid, pid} {
		if n := len(find(es, "grant.slices.released", "grant/"+id)); n != 1 {
			t.Errorf("grant %s: %d audit entries for the release of its slices, want 1", id, n)
		}
	}
	if n := len(find(es, "grant.slices.released", "grant/"+active)); n != 0 {
		t.Errorf("the active grant's slices were released")
	}
	// A second start finds nothing more to release.
	e.stop()
	e.boot()
	es = entries(t, r.aud)
	if n := len(find(es, "grant.slices.released", "grant/"+rid)); n != 1 {
		t.Errorf("after a second start: %d release entries for grant %s, want 1", n, rid)
	}
}
