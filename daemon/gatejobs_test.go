package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
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

// TestIdempotencyConflict: a retry with the key of a job and the same request returns that
// job and spends nothing more; the key with another request (other SQL, other epsilon,
// another mode) is a conflict, not a silent answer with the first job.
func TestIdempotencyConflict(t *testing.T) {
	_, acme, gid := dpEnv(t)
	ctx := context.Background()
	q := "SELECT district, COUNT(*) FROM residents GROUP BY district"
	req := api.SubmitJob{Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 0.1}, IdempotencyKey: "nightly-1"}
	first, err := acme.SubmitJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := acme.SubmitJob(ctx, req)
	if err != nil || again.ID != first.ID {
		t.Fatalf("same request, same key: %+v %v; want job %s", again, err, first.ID)
	}
	for name, other := range map[string]api.SubmitJob{
		"sql":     {Grant: gid, SQL: "SELECT district, AVG(income) FROM residents GROUP BY district", DP: &api.DPOptions{Epsilon: 0.1}, IdempotencyKey: "nightly-1"},
		"epsilon": {Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 0.2}, IdempotencyKey: "nightly-1"},
		"bounds":  {Grant: gid, SQL: q, DP: &api.DPOptions{Epsilon: 0.1, MaxGroups: 1}, IdempotencyKey: "nightly-1"},
	} {
		if j, err := acme.SubmitJob(ctx, other); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "idempotency key") {
			t.Errorf("%s differs, same key: %+v %v; want a conflict naming the key", name, j, err)
		}
	}
	if js, _ := acme.Jobs(ctx, gid, ""); len(js) != 1 {
		t.Errorf("%d jobs, want 1", len(js))
	}
	if got := spentUnits(t, acme, gid); got != 100000 {
		t.Errorf("spent %d units, want 100000 (one job of 0.1)", got)
	}
	waitStatus(t, acme, first.ID, "review")
}

// vendorToken creates a vendor of tenant and returns its token and a client for it.
func (e *env) vendorToken(name, tenant string) (string, *client.Client) {
	e.t.Helper()
	p, err := e.op.CreatePrincipal(context.Background(), api.CreatePrincipal{Name: name, Role: "vendor", Tenant: tenant})
	if err != nil {
		e.t.Fatal(err)
	}
	return p.Token, e.client(p.Token)
}

// rawSubmit posts a job over the daemon's socket and returns the answer's status, its
// Retry-After header and its error kind.
func (e *env) rawSubmit(tok string, req api.SubmitJob) (int, string, string) {
	e.t.Helper()
	body, _ := json.Marshal(req)
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.cfg.Socket)
	}}}
	r, _ := http.NewRequest("POST", "http://veil/v1/jobs", bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var ae api.Error
	json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ae)
	return resp.StatusCode, resp.Header.Get("Retry-After"), ae.Kind
}

// TestSubmitRate: a tenant that submits faster than its rate gets 429 with Retry-After
// before any validation is done, and nothing is queued; another tenant is not slowed.
func TestSubmitRate(t *testing.T) {
	// One submission in 1000 s after a burst of 2: no refill during the test.
	e := start(t, func(c *daemon.Config) { c.SubmitRate, c.SubmitBurst = 0.001, 2 })
	ctx := context.Background()
	tok, acme := e.vendorToken("acme analyst", "acme")
	gid := e.grantFor(acme)
	_, rival := e.vendorToken("rival analyst", "rival")
	prov2 := e.principal("civil affairs 2", "provider", "civil-affairs")
	auth2 := e.principal("data bureau 2", "authority", "")
	gRival := e.grantWith(rival, auth2, prov2)
	q := "SELECT district, COUNT(*) FROM residents GROUP BY district"
	for range 2 {
		if _, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q}); err != nil {
			t.Fatal(err)
		}
	}
	code, retry, kind := e.rawSubmit(tok, api.SubmitJob{Grant: gid, SQL: q})
	if code != http.StatusTooManyRequests || kind != "rate_limited" {
		t.Fatalf("third submission: %d %q, want 429 rate_limited", code, kind)
	}
	if n, err := strconv.Atoi(retry); err != nil || n < 900 || n > 1000 {
		t.Fatalf("Retry-After %q, want about 1000 s (one token at 0.001/s)", retry)
	}
	// A query the validator would refuse is throttled too: no validation work is done.
	if _, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT * FROM residents"}); kindOf(err) != "rate_limited" {
		t.Fatalf("throttled bad query: %v", err)
	}
	if js, _ := acme.Jobs(ctx, gid, ""); len(js) != 2 {
		t.Fatalf("%d jobs stored, want 2", len(js))
	}
	if _, err := rival.SubmitJob(ctx, api.SubmitJob{Grant: gRival, SQL: q}); err != nil {
		t.Fatalf("another tenant is throttled too: %v", err)
	}
}

// TestTenantQueueBound: a tenant with as many jobs queued or running as its limit gets 429
// with Retry-After; a retry of one of its jobs still answers with that job; another tenant
// submits as before and its job runs in its turn; a finished or cancelled job frees a place.
func TestTenantQueueBound(t *testing.T) {
	e := start(t, func(c *daemon.Config) { c.Workers, c.JobThreads, c.TenantJobs = 1, 1, 3 })
	ctx := context.Background()
	_, slow := e.vendorToken("slow analyst", "slowco")
	gSlow := e.grantFor(slow)
	tok, acme := e.vendorToken("acme analyst", "acme")
	prov2 := e.principal("civil affairs 2", "provider", "civil-affairs")
	auth2 := e.principal("data bureau 2", "authority", "")
	gid := e.grantWith(acme, auth2, prov2)
	_, rival := e.vendorToken("rival analyst", "rival")
	gRival := e.grantWith(rival, auth2, prov2)

	// Another tenant's endless job holds the only worker: acme's jobs stay queued.
	blocker, err := slow.SubmitJob(ctx, api.SubmitJob{Grant: gSlow, SQL: endless})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, slow, blocker.ID, "running")
	defer slow.CancelJob(ctx, blocker.ID)
	q := "SELECT district, COUNT(*) FROM residents GROUP BY district"
	var queued []api.Job
	for i := range 3 {
		j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q, IdempotencyKey: fmt.Sprintf("q%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, j)
	}
	code, retry, kind := e.rawSubmit(tok, api.SubmitJob{Grant: gid, SQL: q})
	if code != http.StatusTooManyRequests || kind != "rate_limited" {
		t.Fatalf("fourth job: %d %q, want 429 rate_limited", code, kind)
	}
	if n, err := strconv.Atoi(retry); err != nil || n < 1 {
		t.Fatalf("Retry-After %q, want whole seconds", retry)
	}
	if j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q, IdempotencyKey: "q1"}); err != nil || j.ID != queued[1].ID {
		t.Fatalf("a retry of a queued job: %+v %v, want job %s", j, err, queued[1].ID)
	}
	r, err := rival.SubmitJob(ctx, api.SubmitJob{Grant: gRival, SQL: q})
	if err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	if _, err := acme.CancelJob(ctx, queued[2].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q}); err != nil {
		t.Fatalf("after a cancel: %v", err)
	}
	if _, err := slow.CancelJob(ctx, blocker.ID); err != nil {
		t.Fatal(err)
	}
	// Round robin: rival's job runs before acme's second, though queued after it.
	rj := waitStatus(t, rival, r.ID, "review")
	if aj := waitStatus(t, acme, queued[1].ID, "review"); !aj.Started.After(rj.Started) {
		t.Errorf("acme's second job started at %v, before rival's first at %v: the scheduler is not fair", aj.Started, rj.Started)
	}
}
