package daemon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// TestDevEnvironment: a provider builds a masked and a synthetic twin, a reviewer releases
// them, and a vendor develops a job on them — the same validation, no budget, the output at
// once and labelled — and promotes it, unchanged, to production, where budget and review
// apply.
func TestDevEnvironment(t *testing.T) {
	e := start(t, func(c *daemon.Config) { c.LogRunnerOutput = true })
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
	query := api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n, AVG(age) AS mean_age FROM residents GROUP BY district", DP: &api.DPOptions{Epsilon: 0.5}}

	// No twin yet: the dev run says what is missing.
	out, err := acme.DevRun(ctx, query)
	if err != nil || out.Job.Status != "failed" || !strings.Contains(out.Job.Message, "no released dev twin") {
		t.Fatalf("dev run without a twin: %+v %v", out.Job, err)
	}
	if _, err := acme.BuildTwin(ctx, "residents", api.BuildTwin{Kind: "masked"}); kindOf(err) != "forbidden" {
		t.Fatalf("a vendor built a twin: %v", err)
	}

	// A masked twin: every column by its rule, released by a reviewer.
	tj, err := prov.BuildTwin(ctx, "residents", api.BuildTwin{Kind: "masked", Rows: 40})
	if err != nil || tj.Status != "review" {
		t.Fatalf("masked twin: %+v %v", tj, err)
	}
	rv, err := rev.Review(ctx, tj.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rv.Rows) != 40 || rv.Mechanism.Twin == nil {
		t.Fatalf("masked twin review: %d rows, %+v", len(rv.Rows), rv.Mechanism)
	}
	col := map[string]int{}
	for i, c := range rv.Columns {
		col[c] = i
	}
	if _, ok := col["religion"]; ok {
		t.Fatalf("a level-4 column reached the twin: %v", rv.Columns)
	}
	for _, r := range rv.Rows {
		id, name, age := r[col["resident_id"]].(string), r[col["name"]].(string), r[col["age"]].(float64)
		if len(id) != 32 { // a 128-bit hex pseudonym, not the 4-digit id
			t.Fatalf("resident_id not pseudonymized: %q", id)
		}
		if !strings.HasPrefix(name, "P*") || strings.ContainsAny(name[1:], "0123456789") {
			t.Fatalf("name not masked: %q", name)
		}
		if int(age)%5 != 0 {
			t.Fatalf("age not generalized to a 5-year band: %v", age)
		}
	}
	if _, err := approve(t, rev, tj.ID); err != nil {
		t.Fatal(err)
	}

	// The dev run: at once, labelled, nothing spent.
	out, err = acme.DevRun(ctx, query)
	if err != nil {
		t.Fatal(err)
	}
	if out.Job.Status != "dev" || !strings.Contains(out.Label, "DEV OUTPUT") || len(out.Rows) == 0 {
		t.Fatalf("dev run: %+v rows %v", out.Job, out.Rows)
	}
	if spentUnits(t, acme, gid) != 0 {
		t.Fatal("a dev run spent budget")
	}
	if rvs, _ := rev.Reviews(ctx); len(rvs) != 0 {
		t.Fatalf("a dev run reached the review queue: %+v", rvs)
	}
	// The same validation as production.
	if _, err := acme.DevRun(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) FROM residents WHERE resident_id = 1001 GROUP BY district", DP: &api.DPOptions{Epsilon: 0.5}}); kindOf(err) != "invalid" {
		t.Fatalf("dev run of a refused query: %v", err)
	}

	// Promotion: the same job on the data, with budget and review.
	pj, err := acme.DevPromote(ctx, out.Job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if pj, err = acme.Wait(ctx, pj.ID, nil); err != nil || pj.Status != "review" || pj.SQL != query.SQL {
		t.Fatalf("promoted job: %+v %v", pj, err)
	}
	if spentUnits(t, acme, gid) != 500_000 {
		t.Fatalf("the promoted job spent %d units, want 500000", spentUnits(t, acme, gid))
	}

	// A synthetic twin spends the dataset's budget and holds only domain values.
	before := datasetAllocated(t, prov, "residents")
	sj, err := prov.BuildTwin(ctx, "residents", api.BuildTwin{Kind: "synthetic", Epsilon: 1, Pairs: [][2]string{{"district", "age"}}})
	if err != nil || sj.Status != "review" {
		t.Fatalf("synthetic twin: %+v %v", sj, err)
	}
	if got := datasetAllocated(t, prov, "residents") - before; got != 1_000_000 {
		t.Fatalf("the synthetic twin took %d units of the dataset, want 1000000", got)
	}
	rv, err = rev.Review(ctx, sj.ID)
	if err != nil {
		t.Fatal(err)
	}
	col = map[string]int{}
	for i, c := range rv.Columns {
		col[c] = i
	}
	for _, r := range rv.Rows {
		if d, _ := r[col["district"]].(string); d != "" && d != "north" && d != "south" && d != "tiny" {
			t.Fatalf("synthetic district outside the domain: %q", d)
		}
		if r[col["name"]] != nil {
			t.Fatalf("an identifier was synthesized: %v", r)
		}
	}
	if len(rv.Rows) < 50 || len(rv.Rows) > 150 {
		t.Fatalf("synthetic twin has %d rows for 100 persons", len(rv.Rows))
	}
}

func datasetAllocated(t *testing.T, c *client.Client, dataset string) int64 {
	t.Helper()
	b, err := c.Budgets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range b.Datasets {
		if d.Dataset == dataset {
			return d.Allocated.EpsilonUnits
		}
	}
	t.Fatalf("dataset %s not in the budget listing", dataset)
	return 0
}
