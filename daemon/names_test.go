package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/veil-dp/veil/daemon/api"
)

// TestOutputNamesEveryMode: one query gives the same output columns in threshold and in dp
// mode: the vendor's aliases, and for what has none one rule (a column's name, count,
// f_column), never the engine's own names (count_star(), sum(income)).
func TestOutputNamesEveryMode(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	e.registerResidents(prov)
	gid := e.mustGrant(acme, auth, prov, api.ApplyGrant{Scenario: "district profile", Purpose: "plan services", Modes: []string{"threshold", "dp"}, K: 5, Epsilon: 4, Delta: 1e-7,
		MaxQuery: 2, ValidFor: "30d", Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age", "income"}}}})
	const q = "SELECT r.district, COUNT(*), SUM(r.income), AVG(age) AS mean_age, COUNT(DISTINCT resident_id) FROM residents r GROUP BY r.district"
	want := []string{"district", "count", "sum_income", "mean_age", "count_units"}
	cols := map[string][]string{}
	for _, mode := range []string{"threshold", "dp"} {
		req := api.SubmitJob{Grant: gid, SQL: q}
		if mode == "dp" {
			req.DP = &api.DPOptions{Epsilon: 1}
		}
		j, err := acme.SubmitJob(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
			t.Fatalf("%s: %+v %v", mode, j, err)
		}
		rv, err := rev.Review(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		// dp adds each aggregate's interval; the columns the query names are the same.
		for _, c := range rv.Columns {
			if !strings.HasSuffix(c, "_ci_lower") && !strings.HasSuffix(c, "_ci_upper") {
				cols[mode] = append(cols[mode], c)
			}
		}
	}
	for mode, c := range cols {
		if strings.Join(c, ",") != strings.Join(want, ",") {
			t.Errorf("%s mode names the columns %v, want %v", mode, c, want)
		}
	}
	// Two columns of one name are refused in either mode, before anything runs.
	for _, dp := range []*api.DPOptions{nil, {Epsilon: 1}} {
		if _, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*), COUNT(*) AS n, COUNT(*) FROM residents GROUP BY district", DP: dp}); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "ambiguous") {
			t.Errorf("two columns named count (dp %v): %v", dp != nil, err)
		}
	}
}
