package engine

import (
	"context"
	"testing"
)

// TestParseCachePerTenant: what the validator keeps of its parses answers only the tenant
// whose submission put it there. A cache shared by every tenant would let a vendor time its
// own submission of a text and learn whether another tenant had submitted that same text.
func TestParseCachePerTenant(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	const q = "SELECT district, COUNT(*) AS n FROM residents WHERE age > 41 GROUP BY district"
	as := func(tenant string) int64 {
		t.Helper()
		sc := scope()
		sc.Tenant = tenant
		before := v.parseRuns.Load()
		if _, err := v.Validate(ctx, q, sc); err != nil {
			t.Fatal(err)
		}
		return v.parseRuns.Load() - before
	}
	if n := as("acme"); n == 0 {
		t.Fatal("the first validation parsed nothing")
	}
	if n := as("acme"); n != 0 {
		t.Errorf("acme's second validation of its own text parsed %d texts, want 0 (its cache)", n)
	}
	if n := as("globex"); n == 0 {
		t.Error("globex's validation of the text acme submitted was answered from acme's parses: another tenant can time whether a text was submitted")
	}
	if n := as("globex"); n != 0 {
		t.Errorf("globex's second validation parsed %d texts, want 0", n)
	}

	// The dp validation and the checks keep theirs per tenant too.
	const dq = "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"
	dp := func(tenant string) int64 {
		t.Helper()
		sc := scope()
		sc.Mode, sc.Tenant = "dp", tenant
		before := v.parseRuns.Load()
		if _, err := v.ValidateDP(ctx, dq, sc, DPOptions{Epsilon: 1, Delta: 1e-6, MaxGroups: 1, MaxRows: 1}); err != nil {
			t.Fatal(err)
		}
		return v.parseRuns.Load() - before
	}
	dp("acme")
	if n := dp("globex"); n == 0 {
		t.Error("a dp validation was answered from another tenant's parses")
	}
}
