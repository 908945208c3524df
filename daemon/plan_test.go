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
	e.registerResidents(prov)
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
	// Intervals of non-negative columns are clipped at 0 (post-processing): north's income
	// sum (970,000) lies within one predicted half-width of 0, so a clipped lower end is
	// measured from the released value instead; a value clipped to 0 itself says nothing.
	compared := 0
	for _, a := range pl.Aggregates {
		v, lo, hi := col(a.Column), col(a.Column+"_ci_lower"), col(a.Column+"_ci_upper")
		for _, row := range r.Rows {
			if row[0] != "north" {
				continue
			}
			num := func(x any) float64 {
				switch x := x.(type) {
				case float64:
					return x
				case int64:
					return float64(x)
				}
				t.Fatalf("%s: value %v (%T)", a.Column, x, x)
				return 0
			}
			val, l, h := num(row[v]), num(row[lo]), num(row[hi])
			var got float64
			switch {
			case l > 0:
				got = (h - l) / 2
			case val > 0:
				got = h - val
			default:
				t.Logf("%s: released value clipped to 0; its interval is not compared", a.Column)
				continue
			}
			compared++
			if math.Abs(got-*a.HalfWidth) > 0.1**a.HalfWidth {
				t.Errorf("%s: released half-width %g, the plan predicted %g (value %g, interval [%g, %g])", a.Column, got, *a.HalfWidth, val, l, h)
			}
		}
	}
	if compared == 0 {
		t.Fatal("no released interval was compared with the plan")
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

// TestGrantApplyRefusals: a grant its review could only fail, from what the vendor may know,
// is refused when it is applied for, with what was wrong: a slice beyond a dataset's whole
// budget (its schema's, which the vendor reads in the catalog), or a scenario the tenant
// already holds. Nothing is stored for a refused application. What a dataset has left is
// never the reason (TestGrantApplyHidesRemainingBudget).
func TestGrantApplyRefusals(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	e.registerResidents(prov)
	if _, err := e.dpGrant(acme, auth, prov, "district statistics", 8, 1); err != nil {
		t.Fatal(err)
	}
	// 10 in total (δ 1e-6), 8 given: 2 are left.
	apply := func(scenario string, eps, delta float64) error {
		_, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: scenario, Purpose: "plan services", Modes: []string{"dp"}, Epsilon: eps, Delta: delta,
			ValidFor: "30d", Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district"}}}})
		return err
	}
	for _, tc := range []struct {
		scenario   string
		eps, delta float64
		kind, want string
	}{
		{"more", 11, 1e-7, "invalid", "more than its whole budget (ε=10 δ=0.000001"},
		{"more delta", 1, 1e-5, "invalid", "more than its whole budget (ε=10 δ=0.000001"},
		{"District Statistics ", 1, 1e-7, "conflict", `already holds grant`},
	} {
		err := apply(tc.scenario, tc.eps, tc.delta)
		if kindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("apply %q ε=%g δ=%g: %v, want %s naming %q", tc.scenario, tc.eps, tc.delta, err, tc.kind, tc.want)
		}
		// The vendor does not learn what the dataset has left (ε=2, δ=9e-7 of 1e-6).
		if err != nil && (strings.Contains(err.Error(), "ε=2") || strings.Contains(err.Error(), "left") || strings.Contains(err.Error(), "0.0000009")) {
			t.Errorf("apply %q: the refusal shows the dataset's remaining budget: %v", tc.scenario, err)
		}
	}
	gs, err := acme.Grants(ctx)
	if err != nil || len(gs) != 1 {
		t.Fatalf("refused applications were stored: %d grants, %v", len(gs), err)
	}
	// More than is left, within the total, is taken for review; so is what fits.
	if err := apply("more", 3, 1e-7); err != nil {
		t.Errorf("a slice beyond what is left, within the total: %v", err)
	}
	if err := apply("less", 2, 1e-7); err != nil {
		t.Errorf("a slice that fits: %v", err)
	}
}

// TestDevTwinNulls: a dev run says which granted columns its twin holds only as NULL, and
// why, so that a vendor does not take a NULL column's output for the data's.
func TestDevTwinNulls(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	schema := strings.Replace(residentsSchema, "bounds: [0, 100000]}", "bounds: [0, 100000], mask: suppress}", 1)
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: schema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gid, err := e.dpGrant(acme, auth, prov, "district statistics", 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	tj, err := prov.BuildTwin(ctx, "residents", api.BuildTwin{Kind: "masked", Rows: 40})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := approve(t, rev, tj.ID); err != nil {
		t.Fatal(err)
	}
	out, err := acme.DevRun(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n FROM residents GROUP BY district", DP: &api.DPOptions{Epsilon: 0.5}})
	if err != nil || out.Job.Status != "dev" {
		t.Fatalf("dev run: %+v %v", out.Job, err)
	}
	if len(out.Nulls) != 1 || out.Nulls[0].Column != "income" || !strings.Contains(out.Nulls[0].Reason, "mask rule is suppress") {
		t.Errorf("twin nulls %+v, want income (mask rule suppress) only", out.Nulls)
	}
}
