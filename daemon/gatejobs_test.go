package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
)

// dpEnv is a daemon with the residents dataset and an active dp grant (ε=2, at most 0.5 a
// query) for tenant acme.
func dpEnv(t *testing.T) (*env, *client.Client, string) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gid, err := e.dpGrant(acme, auth, prov, "district statistics", 2, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	return e, acme, gid
}

// TestNoFreeQueries: a dp job asking for less than one ledger unit of epsilon (1e-13 used to
// round to nothing, run over the data and be refused by the gate afterwards) is refused at
// submission: nothing queued, nothing spent. So is a positive delta below one unit.
func TestNoFreeQueries(t *testing.T) {
	_, acme, gid := dpEnv(t)
	ctx := context.Background()
	q := "SELECT district, COUNT(*) FROM residents GROUP BY district"
	for _, o := range []api.DPOptions{
		{Epsilon: 1e-13},
		{Epsilon: 4e-7},
		{Epsilon: 0.1, Delta: 1e-20, Noise: "gaussian"},
	} {
		_, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q, DP: &o})
		if kindOf(err) != "invalid" || !strings.Contains(err.Error(), "at least") {
			t.Errorf("ε=%g δ=%g: %v, want a refusal saying the least a job may ask", o.Epsilon, o.Delta, err)
		}
		// A dev run is validated alike.
		if _, err := acme.DevRun(ctx, api.SubmitJob{Grant: gid, SQL: q, DP: &o}); kindOf(err) != "invalid" {
			t.Errorf("dev run ε=%g δ=%g: %v, want a refusal", o.Epsilon, o.Delta, err)
		}
	}
	if js, err := acme.Jobs(ctx, gid, ""); err != nil || len(js) != 0 {
		t.Fatalf("refused jobs were stored: %v %v", js, err)
	}
	if got := spentUnits(t, acme, gid); got != 0 {
		t.Fatalf("refused jobs spent %d units", got)
	}
	// One unit is the least a job spends, and it is accepted.
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 1e-6}})
	if err != nil {
		t.Fatal(err)
	}
	if got := spentUnits(t, acme, gid); got != 1 {
		t.Fatalf("a job of one unit spent %d", got)
	}
	waitStatus(t, acme, j.ID, "review")
}

// TestIdempotencyConflict: a retry with the key of a job and the same request returns that
// job and spends nothing more; the key with another request (other SQL, other epsilon,
// another mode) is a conflict, not a silent answer with the first job.
func TestIdempotencyConflict(t *testing.T) {
	_, acme, gid := dpEnv(t)
	ctx := context.Background()
	q := "SELECT district, COUNT(*) FROM residents GROUP BY district"
	req := api.SubmitJob{Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 0.1}, IdempotencyKey: "nightly-1"}
	first, err := acme.SubmitJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := acme.SubmitJob(ctx, req)
	if err != nil || again.ID != first.ID {
		t.Fatalf("same request, same key: %+v %v; want job %s", again, err, first.ID)
	}
	for name, other := range map[string]api.SubmitJob{
		"sql":     {Grant: gid, SQL: "SELECT district, AVG(income) FROM residents GROUP BY district", DP: &api.DPOptions{Epsilon: 0.1}, IdempotencyKey: "nightly-1"},
		"epsilon": {Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 0.2}, IdempotencyKey: "nightly-1"},
		"bounds":  {Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 0.1, MaxGroups: 1}, IdempotencyKey: "nightly-1"},
	} {
		if j, err := acme.SubmitJob(ctx, other); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "idempotency key") {
			t.Errorf("%s differs, same key: %+v %v; want a conflict naming the key", name, j, err)
		}
	}
	if js, _ := acme.Jobs(ctx, gid, ""); len(js) != 1 {
		t.Errorf("%d jobs, want 1", len(js))
	}
	if got := spentUnits(t, acme, gid); got != 100000 {
		t.Errorf("spent %d units, want 100000 (one job of 0.1)", got)
	}
	waitStatus(t, acme, first.ID, "review")
}
