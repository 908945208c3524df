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
