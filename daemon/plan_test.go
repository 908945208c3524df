package daemon_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/veil-dp/veil/daemon/api"
)

// TestJobPlan: a plan validates the query, says what it would spend and what would remain,
// and predicts the interval the release then shows (within 10%); planning spends nothing
// and queues nothing. A plan the budget cannot pay for says which dimension ran out, as the
// submission's refusal does.
func TestJobPlan(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gid, err := e.dpGrant(acme, auth, prov, "district statistics", 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	q := "SELECT district, COUNT(*) AS residents, SUM(income) AS income FROM residents GROUP BY district"
	req := api.SubmitJob{Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 0.5}}
	pl, err := acme.PlanJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Mode != "dp" || pl.SQL != q || pl.Spend == nil || pl.Spend.Epsilon != 0.5 || pl.Refusal != "" {
		t.Fatalf("plan %+v", pl)
	}
	if len(pl.Budget) != 1 || pl.Budget[0].Remaining.Epsilon != 2 || pl.Budget[0].After.Epsilon != 1.5 {
		t.Fatalf("plan budget %+v", pl.Budget)
	}
	if len(pl.Aggregates) != 2 || pl.Selection != nil {
		t.Fatalf("plan aggregates %+v, selection %+v", pl.Aggregates, pl.Selection)
	}
	for _, a := range pl.Aggregates {
		if a.HalfWidth == nil || !(*a.HalfWidth > 0) || a.Epsilon != 0.25 || a.Mechanism != "laplace" {
			t.Fatalf("plan aggregate %+v", a)
		}
	}
	if got := spentUnits(t, acme, gid); got != 0 {
		t.Fatalf("a plan spent %d units", got)
	}
	if js, err := acme.Jobs(ctx, gid, ""); err != nil || len(js) != 0 {
		t.Fatalf("a plan queued jobs: %v, %v", js, err)
	}

	// The release shows the intervals the plan predicted.
	j, err := acme.SubmitJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, acme, j.ID, "review")
	r, err := rev.Review(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	col := func(name string) int {
		for i, c := range r.Columns {
			if c == name {
				return i
			}
		}
		t.Fatalf("no column %s in %v", name, r.Columns)
		return -1
	}
	for _, a := range pl.Aggregates {
		lo, hi := col(a.Column+"_ci_lower"), col(a.Column+"_ci_upper")
		for _, row := range r.Rows {
			if row[0] != "north" { // 60 persons: far from 0, where intervals are clipped
				continue
			}
			got := (row[hi].(float64) - row[lo].(float64)) / 2
			if math.Abs(got-*a.HalfWidth) > 0.1**a.HalfWidth {
				t.Errorf("%s: released half-width %g, the plan predicted %g", a.Column, got, *a.HalfWidth)
			}
		}
	}

	// Partition selection: keys without a public domain.
	sel, err := acme.PlanJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT age, COUNT(*) AS n FROM residents GROUP BY age", DP: &api.DPOptions{Epsilon: 0.5, Delta: 1e-8}})
	if err != nil {
		t.Fatal(err)
	}
	if s := sel.Selection; s == nil || !(1 < s.LikelyUnits && s.LikelyUnits < s.AlmostSurelyUnits) || s.Epsilon != 0.25 {
		t.Fatalf("selection %+v", sel.Selection)
	}

	// What the budget cannot pay: the plan and the refusal name the dimension.
	big := api.SubmitJob{Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 0.1, Delta: 1e-6}}
	pl, err = acme.PlanJob(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(pl.Refusal, "delta has run out") || strings.Contains(pl.Refusal, "epsilon has run out") {
		t.Errorf("plan refusal %q", pl.Refusal)
	}
	if _, err := acme.SubmitJob(ctx, big); err == nil || !strings.Contains(err.Error(), "delta has run out (δ=0.0000001 left, δ=0.000001 asked)") {
		t.Errorf("submission beyond the delta: %v", err)
	}
	// A refused query is refused by the plan as by the submission, and spends nothing.
	if _, err := acme.PlanJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) FROM residents GROUP BY ROLLUP (district)", DP: &api.DPOptions{Epsilon: 0.1}}); kindOf(err) != "invalid" {
		t.Errorf("plan of a refused query: %v", err)
	}
	if got := spentUnits(t, acme, gid); got != 500000 {
		t.Errorf("spent %d units, want the one job's 500000", got)
	}
}
