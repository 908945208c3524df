package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/veil-dp/veil/daemon/api"
)

// TestDifferencingGuard is the attack through the real daemon: two threshold queries whose
// row sets differ by one person in each district (the only north resident and the only
// south resident earning 39000). Subtracting the first output from the second would give
// their ages; the second job's affected cells are suppressed instead, its reviewer is told
// which released job it was paired with, and the vendor sees the cells missing, not why
// which person differs.
func TestDifferencingGuard(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	acme := e.principal("acme analyst", "vendor", "acme")
	rev := e.principal("reviewer one", "reviewer", "")

	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "district ages", Purpose: "plan services", Modes: []string{"threshold"}, K: 5, RoundTo: 1, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "income"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []interface {
		ActOnGrant(context.Context, string, string, string) (map[string]any, error)
	}{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	run := func(sql string) (api.Job, api.Review) {
		t.Helper()
		j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: sql})
		if err != nil {
			t.Fatal(err)
		}
		if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
			t.Fatalf("%s: job %+v err %v", sql, j, err)
		}
		rv, err := rev.Review(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		return j, rv
	}

	first, rv := run("SELECT district, SUM(age) AS s FROM residents GROUP BY district ORDER BY district")
	if len(rv.Rows) != 2 || rv.Mechanism.Differencing != 0 {
		t.Fatalf("first query: %+v rows %v", rv.Mechanism, rv.Rows)
	}
	if _, err := rev.Decide(ctx, first.ID, "approve", rv.Digest, ""); err != nil {
		t.Fatal(err)
	}

	second, rv := run("SELECT district, SUM(age) AS s FROM residents WHERE income <> 39000 GROUP BY district ORDER BY district")
	if len(rv.Rows) != 0 || rv.Mechanism.Differencing != 2 || len(rv.Mechanism.Paired) != 1 || rv.Mechanism.Paired[0] != first.ID {
		t.Fatalf("second query released %v, mechanism %+v", rv.Rows, rv.Mechanism)
	}
	warned := false
	for _, w := range rv.Warnings {
		warned = warned || (strings.Contains(w, "differencing") && strings.Contains(w, first.ID))
	}
	if !warned {
		t.Errorf("no warning names the paired job %s: %q", first.ID, rv.Warnings)
	}
	if !strings.Contains(second.Message, "differencing") {
		t.Errorf("the job's message says nothing of the suppression: %q", second.Message)
	}

	// A query over different persons in every cell (many differ) is released as usual.
	_, rv = run("SELECT district, SUM(age) AS s FROM residents WHERE age < 40 GROUP BY district ORDER BY district")
	if len(rv.Rows) != 2 || rv.Mechanism.Differencing != 0 {
		t.Fatalf("a harmless query: %+v rows %v", rv.Mechanism, rv.Rows)
	}
}
