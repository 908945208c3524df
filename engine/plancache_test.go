package engine

import (
	"context"
	"encoding/json"
	"testing"
)

// TestPlanCache: a text validated again under the same scope, by the same tenant, is
// answered from the plans the validator keeps, without DuckDB (no rewrite, no bound-plan
// check), with the plan a validation would give; a change of the scope (a grant's columns,
// a dataset version's statistics), of the dp options or of the tenant validates again; the
// plan handed out is the caller's own, and a refusal is never kept.
func TestPlanCache(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	const q = "SELECT district, COUNT(*) AS n FROM residents WHERE age > 41 GROUP BY district"
	sc := scope()
	sc.Tenant = "acme"
	sc.Tables[0].MaxRowsPerUnit, sc.Tables[0].UnitComplete = 3, true
	validate := func(sc Scope) (*Plan, int64) {
		t.Helper()
		before := v.planRuns.Load()
		p, err := v.Validate(ctx, q, sc)
		if err != nil {
			t.Fatal(err)
		}
		return p, v.planRuns.Load() - before
	}
	asJSON := func(p *Plan) string {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	first, n := validate(sc)
	if n != 1 {
		t.Fatalf("the first validation ran %d times, want 1", n)
	}
	want := asJSON(first)
	first.SQL, first.Tables[0], first.Units = "changed by its caller", "changed", nil
	again, n := validate(sc)
	if n != 0 {
		t.Errorf("the same text under the same scope was validated again (%d), want it answered from the kept plan", n)
	}
	if got := asJSON(again); got != want {
		t.Errorf("the kept plan differs from the validation's (or its first caller changed it):\n got %s\nwant %s", got, want)
	}

	// Whatever the plan depends on is in the key.
	other := scope()
	other.Tenant = "acme"
	other.Tables[0].MaxRowsPerUnit, other.Tables[0].UnitComplete = 3, false // another dataset version
	p, n := validate(other)
	if n != 1 {
		t.Errorf("a scope of another dataset version was answered from the kept plan")
	}
	if p.FastAll {
		t.Error("the plan for a version with rows without a unit counts every row (FastAll): it is another scope's plan")
	}
	narrow := scope()
	narrow.Tenant = "acme"
	narrow.Tables[0].Columns = narrow.Tables[0].Columns[:3] // a grant without age
	if _, err := v.Validate(ctx, q, narrow); err == nil {
		t.Error("a scope without the column the query reads was answered with the plan of a scope that has it")
	}
	if _, err := v.Validate(ctx, q, narrow); err == nil {
		t.Error("a refusal was kept as a plan")
	}
	// Measured values of a key column (not in a Table's JSON) change the plan: it sums
	// magnitudes.
	measured := scope()
	measured.Tenant = "acme"
	measured.Tables[0].MaxRowsPerUnit, measured.Tables[0].UnitComplete = 3, true
	measured.Tables[0].ValueUnits = map[string]map[string]ValueUnits{"district": {"north": {}}}
	if _, n := validate(measured); n != 1 {
		t.Error("a scope whose key column has measured values was answered from the plan of one without")
	}
	globex := sc
	globex.Tenant = "globex"
	if _, n := validate(globex); n != 1 {
		t.Error("another tenant's validation of the same text was answered from acme's plans: a vendor could time whether a text was submitted")
	}

	// dp: the options are in the key.
	const dq = "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"
	dsc := scope()
	dsc.Mode, dsc.Tenant = "dp", "acme"
	dp := func(eps float64) (*Plan, int64) {
		t.Helper()
		before := v.planRuns.Load()
		p, err := v.ValidateDP(ctx, dq, dsc, DPOptions{Epsilon: eps, Delta: 1e-6, MaxGroups: 1, MaxRows: 1})
		if err != nil {
			t.Fatal(err)
		}
		return p, v.planRuns.Load() - before
	}
	a, _ := dp(1)
	b, n := dp(1)
	if n != 0 {
		t.Error("the same dp query and options were validated again")
	}
	if asJSON(a) != asJSON(b) {
		t.Error("the kept dp plan differs from the validation's")
	}
	c, n := dp(0.5)
	if n != 1 {
		t.Error("a dp query with another epsilon was answered from the kept plan")
	}
	if c.DP == nil || c.DP.Epsilon != 0.5 {
		t.Errorf("the dp plan for epsilon 0.5 is another's: %+v", c.DP)
	}
}
