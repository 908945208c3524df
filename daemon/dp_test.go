package daemon_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
)

// dpGrant applies for and approves a dp grant with the given slice and per-query cap.
func spentUnits(t *testing.T, c *client.Client, grant string) int64 {
	t.Helper()
	b, err := c.Budgets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range b.Grants {
		if g.Grant == grant {
			return g.Spent.EpsilonUnits
		}
	}
	t.Fatalf("grant %s not in the budget listing", grant)
	return 0
}

// TestDPJob: a dp job releases noisy values with intervals, spends its epsilon, and shows
// it to the reviewer; re-running gives different noise and spends again; refused queries
// spend nothing; slices never exceed a dataset's total.
func TestDPJob(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gid, err := e.dpGrant(acme, auth, prov, "district statistics", 2, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	// The dataset's total is 10 and 2 are given: a grant asking 9 cannot be activated.
	if _, err := e.dpGrant(acme, auth, prov, "greedy", 9, 0); err == nil || !strings.Contains(err.Error(), "budget exhausted") {
		t.Fatalf("a slice beyond the dataset's total: %v", err)
	}

	for _, tc := range []struct{ sql, want string }{
		{"SELECT district, COUNT(*) FROM residents WHERE resident_id = 1001 GROUP BY district", "privacy unit"},
		{"SELECT district, COUNT(*) FROM residents GROUP BY ROLLUP (district)", "ROLLUP"},
		{"SELECT COUNT(*) FROM residents UNION ALL SELECT COUNT(*) FROM residents", "set operations"},
		{"SELECT district, COUNT(*) FROM residents WHERE CAST(district AS INTEGER) = 1 GROUP BY district", "TRY_CAST"},
		{"SELECT district, COUNT(*) FROM residents WHERE 100 / (age - 30) > 1 GROUP BY district", "can fail"},
	} {
		_, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: tc.sql, DP: &api.DPOptions{Epsilon: 0.1}})
		if kindOf(err) != "invalid" || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a refusal naming %q", tc.sql, err, tc.want)
		}
	}
	if _, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) FROM residents GROUP BY district", DP: &api.DPOptions{Epsilon: 0.6}}); err == nil || !strings.Contains(err.Error(), "per-query cap") {
		t.Errorf("above the per-query cap: %v", err)
	}
	if got := spentUnits(t, acme, gid); got != 0 {
		t.Fatalf("refused jobs spent %d units", got)
	}

	q := "SELECT district, COUNT(*) AS residents, AVG(income) AS mean_income FROM residents GROUP BY district"
	var outs []string
	for range 2 {
		j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 0.5}})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, acme, j.ID, "review")
		r, err := rev.Review(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if m := r.Mechanism; m.Kind != "dp" || m.DP == nil || m.DP.Epsilon != 0.5 {
			t.Fatalf("mechanism %+v", m)
		}
		if strings.Join(r.Columns, ",") != "district,residents,residents_ci_lower,residents_ci_upper,mean_income,mean_income_ci_lower,mean_income_ci_upper" {
			t.Fatalf("columns %v", r.Columns)
		}
		// The district domain is public: all three districts appear, tiny included.
		if len(r.Rows) != 3 || r.Rows[2][0] != "tiny" {
			t.Fatalf("rows %v", r.Rows)
		}
		if len(r.Budget) != 1 || r.Budget[0].Spent.EpsilonUnits != int64(len(outs)+1)*500000 {
			t.Fatalf("review budget %+v", r.Budget)
		}
		outs = append(outs, fmt.Sprint(r.Rows))
	}
	if outs[0] == outs[1] {
		t.Errorf("two runs released the same values: %s", outs[0])
	}
	if got := spentUnits(t, acme, gid); got != 1000000 {
		t.Fatalf("two jobs of 0.5 spent %d units, want 1000000", got)
	}
	// The provider sees the dataset's ledger.
	b, err := prov.Budgets(ctx)
	if err != nil || len(b.Datasets) != 1 || b.Datasets[0].Allocated.EpsilonUnits != 2000000 || b.Datasets[0].Spent.EpsilonUnits != 1000000 {
		t.Fatalf("provider budget %+v, %v", b, err)
	}
}

// TestBudgetRace: fifty parallel submissions against a slice that pays for ten: exactly ten
// are queued, forty refused as budget exhausted, and the ledger sums exactly. A retry with
// the same idempotency key never spends twice.
func TestBudgetRace(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gid, err := e.dpGrant(acme, auth, prov, "race", 1, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, exhausted := 0, 0
	var other []error
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT COUNT(*) FROM residents", DP: &api.DPOptions{Epsilon: 0.1},
				IdempotencyKey: fmt.Sprintf("k%d", i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case strings.Contains(err.Error(), "budget exhausted"):
				exhausted++
			default:
				other = append(other, err)
			}
		}()
	}
	wg.Wait()
	if ok != 10 || exhausted != 40 || len(other) > 0 {
		t.Fatalf("%d queued, %d exhausted, other errors %v; want 10 and 40", ok, exhausted, other)
	}
	if got := spentUnits(t, acme, gid); got != 1000000 {
		t.Fatalf("the ledger holds %d units spent, want exactly 1000000", got)
	}
	// A retry of a queued job with its key returns that job and spends nothing more; a retry
	// of a refused one is refused again.
	js, _ := acme.Jobs(ctx, gid, "")
	var retried int
	for i := range 50 {
		j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT COUNT(*) FROM residents", DP: &api.DPOptions{Epsilon: 0.1}, IdempotencyKey: fmt.Sprintf("k%d", i)})
		if err == nil {
			retried++
			found := false
			for _, x := range js {
				found = found || x.ID == j.ID
			}
			if !found {
				t.Errorf("retry with key k%d made a new job %s", i, j.ID)
			}
		}
	}
	if retried != 10 || len(js) != 10 {
		t.Errorf("%d retries answered with their job, %d jobs; want 10 and 10", retried, len(js))
	}
	if got := spentUnits(t, acme, gid); got != 1000000 {
		t.Fatalf("after retries the ledger holds %d units, want 1000000", got)
	}
	for _, j := range js {
		waitStatus(t, acme, j.ID, "review")
	}
}
