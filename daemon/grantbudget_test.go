package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// applyDP applies for a dp grant of eps on residents under scenario.
func applyDP(vendor *client.Client, scenario string, eps float64) (client.Grant, error) {
	return vendor.ApplyGrant(context.Background(), api.ApplyGrant{Scenario: scenario, Purpose: "plan services", Modes: []string{"dp"}, Epsilon: eps, Delta: 1e-7,
		ValidFor: "30d", Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district"}}}})
}

// vendorView is what a vendor reads of its application, less what differs between any two
// applications (identity, scenario, times).
func vendorView(t *testing.T, g client.Grant) string {
	t.Helper()
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "id")
	delete(m, "scenario")
	delete(m, "created")
	if st, ok := m["stages"].([]any); ok {
		for _, s := range st {
			delete(s.(map[string]any), "deadline")
		}
	}
	out, _ := json.Marshal(m)
	return string(out)
}

// budgetRoom is a daemon with the residents fixture, two vendors of two tenants (acme and
// globex), the provider, the authority and an auditor.
type budgetRoom struct {
	*env
	acme, globex, prov, auth, aud *client.Client
}

func startBudget(t *testing.T, edit func(*daemon.Config)) budgetRoom {
	e := start(t, edit)
	r := budgetRoom{env: e, acme: e.principal("acme analyst", "vendor", "acme"), globex: e.principal("globex analyst", "vendor", "globex"),
		prov: e.principal("civil affairs", "provider", "civil-affairs"), auth: e.principal("data bureau", "authority", ""), aud: e.principal("inspector", "auditor", "")}
	e.registerResidents(r.prov)
	return r
}

// TestGrantApplyHidesRemainingBudget: what a dataset has left to give depends on the grants
// of other tenants, so a vendor's application is answered alike whatever is left: the same
// ask, with 10 left and with 2 left, is taken for review with the same answer (no refusal a
// vendor could bisect its ask against). Whether it fits is decided at its last approval.
func TestGrantApplyHidesRemainingBudget(t *testing.T) {
	r := startBudget(t, nil)
	ctx := context.Background()
	e, acme, globex, prov, auth := r.env, r.acme, r.globex, r.prov, r.auth
	// 10 left.
	first, err := applyDP(acme, "first", 3)
	if err != nil {
		t.Fatalf("an ask within the dataset's total, with 10 left: %v", err)
	}
	// Another tenant takes 8: 2 left.
	if _, err := e.dpGrant(globex, auth, prov, "globex statistics", 8, 1); err != nil {
		t.Fatal(err)
	}
	second, err := applyDP(acme, "second", 3)
	if err != nil {
		t.Fatalf("the same ask with 2 left is answered otherwise than with 10 left: %v", err)
	}
	if a, b := vendorView(t, first), vendorView(t, second); a != b {
		t.Errorf("the vendor reads its application differently with 10 and 2 left:\n%s\n%s", a, b)
	}
	for _, id := range []any{first["id"], second["id"]} {
		g, err := acme.GetGrant(ctx, id.(string))
		if err != nil || g["status"] != "pending" {
			t.Errorf("grant %v: %v %v, want pending", id, g["status"], err)
		}
	}
	// The last approval is where the slice must fit: the provider is told what is left.
	gid := second["id"].(string)
	for _, c := range []*client.Client{e.op, auth} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := prov.ActOnGrant(ctx, gid, "approve", ""); err == nil || !strings.Contains(err.Error(), "budget exhausted") || !strings.Contains(err.Error(), "ε=2") {
		t.Errorf("the provider's approval of a slice that does not fit: %v", err)
	}
	g, err := acme.GetGrant(ctx, gid)
	if err != nil || g["status"] != "pending" {
		t.Errorf("after the failed approval: %v %v, want pending", g["status"], err)
	}
}

// TestOverdueApprovalHeldOverBudget: an overdue last stage whose default approval cannot be
// given its slice is not decided by default: the grant stays pending, the stage held for a
// person, and the vendor reads nothing of what is left; the audit log has the figures. The
// provider then decides.
func TestOverdueApprovalHeldOverBudget(t *testing.T) {
	r := startBudget(t, func(c *daemon.Config) { c.Review.Deadline = 200 * time.Millisecond })
	ctx := context.Background()
	acme, globex, prov, aud := r.acme, r.globex, r.prov, r.aud
	wait := func(c *client.Client, id string, done func(client.Grant) bool) client.Grant {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			g, err := c.GetGrant(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if done(g) {
				return g
			}
			if time.Now().After(deadline) {
				t.Fatalf("grant %s: %v", id, g)
			}
		}
	}
	big, err := applyDP(globex, "globex statistics", 8)
	if err != nil {
		t.Fatal(err)
	}
	wait(globex, big["id"].(string), func(g client.Grant) bool { return g["status"] == "active" })
	small, err := applyDP(acme, "acme statistics", 3)
	if err != nil {
		t.Fatal(err)
	}
	gid := small["id"].(string)
	held := func(g client.Grant) bool {
		st, _ := g["stages"].([]any)
		return len(st) > 0 && st[len(st)-1].(map[string]any)["held"] == true
	}
	g := wait(acme, gid, func(g client.Grant) bool { return held(g) || g["status"] != "pending" })
	if g["status"] != "pending" || !held(g) {
		t.Fatalf("an overdue approval that does not fit: %v, want pending with its last stage held", g)
	}
	time.Sleep(500 * time.Millisecond) // past another deadline: a held stage takes no default
	g = wait(acme, gid, func(client.Grant) bool { return true })
	if b, _ := json.Marshal(g); g["status"] != "pending" || strings.Contains(string(b), "ε=2") || strings.Contains(string(b), "left") {
		t.Errorf("the vendor's view of a held grant: %s", b)
	}
	var found bool
	for _, x := range find(entries(t, aud), "grant.review.held", "grant/"+gid) {
		found = strings.Contains(x.Details["left"], "ε=2")
	}
	if !found {
		t.Error("no grant.review.held entry with what the dataset has left")
	}
	// The held stage's reviewer decides: approving fails with the figures (the provider's to
	// see), rejecting gives the vendor the provider's reason.
	if _, err := prov.ActOnGrant(ctx, gid, "approve", ""); err == nil || !strings.Contains(err.Error(), "ε=2") {
		t.Errorf("approving the held stage: %v, want the figures", err)
	}
	if g, err := prov.ActOnGrant(ctx, gid, "reject", "the data cannot give this much now"); err != nil || g["status"] != "rejected" {
		t.Fatalf("rejecting the held stage: %v %v", g["status"], err)
	}
	if g, err := acme.GetGrant(ctx, gid); err != nil || !strings.Contains(fmt.Sprint(g["reason"]), "the data cannot give this much now") {
		t.Errorf("the vendor's rejected grant: %v %v", g["reason"], err)
	}
}

// TestGrantApplyRefusalsBounded: refused applications are audited coalesced, whatever they
// ask: a thousand asks with a thousand amounts add a bounded number of entries. Asks beyond a
// dataset's total are refused naming the total (the schema's, which the vendor reads in the
// catalog); a tenant has a bounded number of applications in review at once.
func TestGrantApplyRefusalsBounded(t *testing.T) {
	r := startBudget(t, func(c *daemon.Config) { c.RefusalWindow = time.Hour })
	e, acme, globex, prov, auth, aud := r.env, r.acme, r.globex, r.prov, r.auth, r.aud
	if _, err := e.dpGrant(globex, auth, prov, "globex statistics", 8, 1); err != nil {
		t.Fatal(err)
	}
	before := len(entries(t, aud))
	taken, misworded := 0, 0
	for i := range 1000 {
		eps := 2 + float64(i+1)*0.001 // more than the 2 left, within the total of 10
		if i%2 == 1 {
			eps = 10 + float64(i+1)*0.001 // more than the total
		}
		_, err := applyDP(acme, fmt.Sprintf("ask %d", i), eps)
		switch {
		case err == nil:
			taken++
		case i%2 == 1 && (kindOf(err) != "invalid" || !strings.Contains(err.Error(), "ε=10")):
			if misworded++; misworded == 1 {
				t.Errorf("ask ε=%g beyond the total: %v, want a refusal naming the total", eps, err)
			}
		}
	}
	if taken == 0 || taken > 10 {
		t.Errorf("%d applications taken for review, want a few, bounded", taken)
	}
	e.stop()
	e.boot()
	es := entries(t, aud)
	if added := len(es) - before; added > taken+5 {
		var acts []string
		for _, x := range es[before:min(len(es), before+10)] {
			acts = append(acts, x.Action)
		}
		t.Errorf("1000 asks added %d audit entries (%d taken for review), want a bounded number; the first: %v", added, taken, acts)
	}
}

// TestLastApproverSeesOnlyItsOwnFigures: a grant over datasets of two providers is
// approved last by the second provider; when the first provider's dataset cannot give its
// slice, that approver is told the approval failed on a dataset of another provider, but
// not what it has left (the ledger's figures of a dataset are its provider's and the
// platform's). The first provider reads its own figures on its own refusal, and neither
// message suggests revoking a grant (revoking returns no budget: what a grant was given may
// have been spent).
func TestLastApproverSeesOnlyItsOwnFigures(t *testing.T) {
	r := startBudget(t, nil)
	ctx := context.Background()
	e, acme, globex, prov, auth := r.env, r.acme, r.globex, r.prov, r.auth
	housing := e.principal("housing bureau", "provider", "housing-bureau")
	schema := strings.NewReplacer("name: residents", "name: households", "provider: civil-affairs", "provider: housing-bureau",
		"epsilon: 10", "epsilon: 7").Replace(residentsSchema)
	if _, err := housing.RegisterDataset(ctx, api.RegisterDataset{Schema: schema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	// Another tenant takes 8 of residents' 10: 2 left there, 7 in households.
	if _, err := e.dpGrant(globex, auth, prov, "globex statistics", 8, 1); err != nil {
		t.Fatal(err)
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "both", Purpose: "plan services", Modes: []string{"dp"}, Epsilon: 3, Delta: 1e-7, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district"}}, {Name: "households", Columns: []string{"district"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	_, err = housing.ActOnGrant(ctx, gid, "approve", "")
	if err == nil || kindOf(err) != "conflict" {
		t.Fatalf("the last approval of a slice that does not fit: %v, want a conflict", err)
	}
	if msg := err.Error(); strings.Contains(msg, "ε=2") || strings.Contains(msg, "ε=10") || strings.Contains(msg, "left to give") || !strings.Contains(msg, "residents") {
		t.Errorf("the housing bureau's approval fails on residents with: %s; want that dataset named without its figures", msg)
	}
	if strings.Contains(err.Error(), "revoke grants") {
		t.Errorf("the refusal suggests revoking grants, which returns no budget: %v", err)
	}
	// The residents' own provider, approving a grant on its dataset alone, reads the figures.
	one, err := applyDP(acme, "residents only", 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{e.op, auth} {
		if _, err := c.ActOnGrant(ctx, one["id"].(string), "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	_, err = prov.ActOnGrant(ctx, one["id"].(string), "approve", "")
	if err == nil || !strings.Contains(err.Error(), "ε=2") {
		t.Errorf("the provider's own refusal: %v, want its figures", err)
	}
	if err != nil && strings.Contains(err.Error(), "revoke grants") {
		t.Errorf("the refusal suggests revoking grants, which returns no budget: %v", err)
	}
}

// TestHeldGrantHoldsNoSlice: an overdue last stage whose default approval cannot be given
// its slice on one dataset is held, and the grant holds no slice of any dataset meanwhile:
// the default approval gave the datasets that had room their slices before it found one
// that had not, and kept them, so a vendor that applied over a full dataset and another
// drained the other's budget with grants that never became active (nor ever would).
func TestHeldGrantHoldsNoSlice(t *testing.T) {
	r := startBudget(t, func(c *daemon.Config) { c.Review.Deadline = 200 * time.Millisecond })
	ctx := context.Background()
	e, acme, globex := r.env, r.acme, r.globex
	housing := e.principal("housing bureau", "provider", "housing-bureau")
	schema := strings.NewReplacer("name: residents", "name: households", "provider: civil-affairs", "provider: housing-bureau").Replace(residentsSchema)
	if _, err := housing.RegisterDataset(ctx, api.RegisterDataset{Schema: schema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	status := func(c *client.Client, id string) client.Grant {
		g, err := c.GetGrant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	waitFor := func(c *client.Client, id string, done func(client.Grant) bool) client.Grant {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if g := status(c, id); done(g) {
				return g
			} else if time.Now().After(deadline) {
				t.Fatalf("grant %s: %v", id, g)
			}
		}
	}
	big, err := applyDP(globex, "globex statistics", 8) // 2 left of residents' 10
	if err != nil {
		t.Fatal(err)
	}
	waitFor(globex, big["id"].(string), func(g client.Grant) bool { return g["status"] == "active" })
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "both", Purpose: "plan services", Modes: []string{"dp"}, Epsilon: 3, Delta: 1e-7, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "households", Columns: []string{"district"}}, {Name: "residents", Columns: []string{"district"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	g := waitFor(acme, gid, func(g client.Grant) bool {
		st, _ := g["stages"].([]any)
		return g["status"] != "pending" || st[len(st)-1].(map[string]any)["held"] == true
	})
	if g["status"] != "pending" {
		t.Fatalf("the grant is %v, want pending and held", g["status"])
	}
	b, err := e.op.Budgets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range b.Datasets {
		if d.Dataset == "households" && d.Allocated.EpsilonUnits != 0 {
			t.Errorf("households has %+v given to grants while the only grant on it is held", d.Allocated)
		}
	}
}
