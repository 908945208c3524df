package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/launch"
)

const visitsSchema = `
name: %s
title: Clinic visits
provider: civil-affairs
unit: person
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: person_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: district, type: VARCHAR, level: 1, kind: none, domain: [north, south, tiny]}
  - {name: cost, type: BIGINT, level: 2, kind: none, bounds: [0, 1000]}
`

// writeVisits writes one visit for each of 100 persons (60 in north, 37 in south, 3 in
// tiny) and, when heavy > 0, that many more visits (at no cost) of person 1000: two datasets
// that differ only in one person's many rows.
func writeVisits(t *testing.T, heavy int) string {
	var b strings.Builder
	b.WriteString("person_id,district,cost\n")
	for i := range 100 {
		d := "north"
		switch {
		case i >= 97:
			d = "tiny"
		case i >= 60:
			d = "south"
		}
		fmt.Fprintf(&b, "%d,%s,%d\n", 1000+i, d, 10*(i%50))
	}
	// Costs of 0: the person's sums stay what they were, so the dominance rules judge the
	// two datasets alike; its rows change the counts (and the work).
	for range heavy {
		b.WriteString("1000,north,0\n")
	}
	p := filepath.Join(t.TempDir(), "visits.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// rawGet is the body of GET path as the holder of tok reads it, byte for byte.
func (e *env) rawGet(tok, path string) []byte {
	e.t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.cfg.Socket)
	}}}
	req, _ := http.NewRequest("GET", "http://veil"+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, b)
	}
	return b
}

// observed is a job as its vendor read it, with what names the job (its id, its dataset)
// replaced and every time written as its distance from the submission: what is left must be
// the same for the two datasets, byte for byte.
func observed(t *testing.T, raw []byte, dataset string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	created, err := time.Parse(time.RFC3339Nano, m["created"].(string))
	if err != nil {
		t.Fatal(err)
	}
	m["id"] = "J"
	m["sql"] = strings.ReplaceAll(m["sql"].(string), dataset, "DATASET")
	for _, k := range []string{"created", "started", "finished"} {
		if s, ok := m[k].(string); ok {
			at, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				t.Fatal(err)
			}
			m[k] = "+" + at.Sub(created).String()
		}
	}
	out, _ := json.Marshal(m)
	return string(out)
}

// TestVendorCannotTellOnePersonsRows: the same threshold and dp query on two datasets that
// differ only in one person's many rows gives the vendor byte-identical status, message,
// metering (none) and timing (in release quanta), before the quantum and after it, in show,
// list and long polls; the operator sees each run's metering, the reviewer the different
// exact outputs.
func TestVendorCannotTellOnePersonsRows(t *testing.T) {
	var skew atomic.Int64 // the test moves the daemon's clock past the quantum
	e := start(t, func(c *daemon.Config) {
		c.ExactReleaseTimingForTests = false
		c.ReleaseQuantum = time.Hour
		c.Workers = 2
		c.Clock = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	vp, err := e.op.CreatePrincipal(ctx, api.CreatePrincipal{Name: "acme analyst", Role: "vendor", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	acme := e.client(vp.Token)
	for name, heavy := range map[string]int{"visits_a": 0, "visits_b": 50000} {
		if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: fmt.Sprintf(visitsSchema, name), Files: []string{writeVisits(t, heavy)}}); err != nil {
			t.Fatal(err)
		}
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "visits", Purpose: "plan clinics", Modes: []string{"threshold", "dp"}, K: 5, Epsilon: 4, Delta: 1e-7,
		MaxQuery: 1, ValidFor: "30d", Datasets: []api.DatasetAccess{{Name: "visits_a", Columns: []string{"district", "cost"}}, {Name: "visits_b", Columns: []string{"district", "cost"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}

	type pair struct{ a, b string } // job ids on visits_a and visits_b
	modes := map[string]pair{}
	for _, mode := range []string{"threshold", "dp"} {
		var ids [2]string
		for i, ds := range []string{"visits_a", "visits_b"} {
			req := api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n, SUM(cost) AS total FROM " + ds + " GROUP BY district"}
			if mode == "dp" {
				req.DP = &api.DPOptions{Epsilon: 0.5}
			}
			j, err := acme.SubmitJob(ctx, req)
			if err != nil {
				t.Fatalf("%s on %s: %v", mode, ds, err)
			}
			ids[i] = j.ID
		}
		modes[mode] = pair{ids[0], ids[1]}
	}
	// Every run ends (as the operator sees it) well within the quantum.
	for mode, p := range modes {
		for _, id := range []string{p.a, p.b} {
			if j := waitStatus(t, e.op, id, "review"); j.Metering == nil || j.Metering.WallMS <= 0 {
				t.Fatalf("%s: the operator's view has no metering: %+v", mode, j)
			}
		}
	}

	same := func(when string) {
		t.Helper()
		var status string
		for mode, p := range modes {
			a := observed(t, e.rawGet(vp.Token, "/v1/jobs/"+p.a), "visits_a")
			b := observed(t, e.rawGet(vp.Token, "/v1/jobs/"+p.b), "visits_b")
			if a != b {
				t.Errorf("%s, %s: the vendor tells the datasets apart:\n%s\n%s", when, mode, a, b)
			}
			if strings.Contains(a, "metering") || strings.Contains(a, "wall_ms") {
				t.Errorf("%s, %s: the vendor reads metering: %s", when, mode, a)
			}
			var j api.Job
			json.Unmarshal(e.rawGet(vp.Token, "/v1/jobs/"+p.a), &j)
			status = j.Status
		}
		// The list says the same as show.
		var list []api.Job
		if err := json.Unmarshal(e.rawGet(vp.Token, "/v1/jobs"), &list); err != nil {
			t.Fatal(err)
		}
		for _, j := range list {
			if j.Status != status || j.Metering != nil {
				t.Errorf("%s: the list shows %s %s (metering %v), show %s", when, j.ID, j.Status, j.Metering, status)
			}
		}
		var filtered []api.Job
		json.Unmarshal(e.rawGet(vp.Token, "/v1/jobs?status=review"), &filtered)
		if (status == "review") != (len(filtered) == 4) || (status != "review" && len(filtered) != 0) {
			t.Errorf("%s: the list of jobs in review has %d, the jobs show %s", when, len(filtered), status)
		}
	}
	// Before the quantum every job still looks queued to its vendor: when it started and
	// ended, and how, are not seen yet.
	same("before the quantum")
	var j api.Job
	if err := json.Unmarshal(e.rawGet(vp.Token, "/v1/jobs/"+modes["dp"].b), &j); err != nil || j.Status != "queued" || !j.Started.IsZero() || j.Message != "" {
		t.Fatalf("before the quantum the vendor reads %+v (%v)", j, err)
	}
	// A long poll does not answer at the run's end either.
	if err := json.Unmarshal(e.rawGet(vp.Token, "/v1/jobs/"+modes["threshold"].b+"?wait=1s&seen=queued"), &j); err != nil || j.Status != "queued" {
		t.Fatalf("a long poll answered %+v (%v)", j, err)
	}
	if _, err := acme.Export(ctx, modes["threshold"].b, "csv"); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "queued") {
		t.Fatalf("export before the quantum: %v", err)
	}

	skew.Store(int64(time.Hour))
	same("after the quantum")
	if err := json.Unmarshal(e.rawGet(vp.Token, "/v1/jobs/"+modes["dp"].a), &j); err != nil || j.Status != "review" ||
		j.Finished.Sub(j.Created) != time.Hour || j.Started.Sub(j.Created) != time.Hour {
		t.Fatalf("after the quantum the vendor reads %+v (%v)", j, err)
	}
	// The datasets do differ: the reviewer sees it in the exact threshold output.
	ra, err := rev.Review(ctx, modes["threshold"].a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := rev.Review(ctx, modes["threshold"].b)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ra.Rows) == fmt.Sprint(rb.Rows) {
		t.Fatalf("the two datasets gave the same output %v: the test tests nothing", ra.Rows)
	}
	if ra.Job.Metering != nil {
		t.Errorf("the reviewer reads metering %+v", ra.Job.Metering)
	}
}

// TestLongPollAnswersAtQuantum: a vendor following a job (veil job submit --wait) is
// answered at a whole release quantum after the submission, never at the moment the run
// ended.
func TestLongPollAnswersAtQuantum(t *testing.T) {
	const q = 2 * time.Second
	e := start(t, func(c *daemon.Config) { c.ExactReleaseTimingForTests = false; c.ReleaseQuantum = q })
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	gid := e.grantFor(acme)
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	if j, err = acme.Wait(ctx, j.ID, func(j api.Job) { seen = append(seen, j.Status) }); err != nil || j.Status != "review" {
		t.Fatalf("%+v %v", j, err)
	}
	answered := time.Now()
	if answered.Before(j.Finished) {
		t.Fatalf("answered at %v, before the end the vendor may see (%v)", answered, j.Finished)
	}
	if d := j.Finished.Sub(j.Created); d <= 0 || d%q != 0 || j.Started.Sub(j.Created)%q != 0 {
		t.Fatalf("started +%v, finished +%v: not whole quanta of %v", j.Started.Sub(j.Created), d, q)
	}
	if j.Metering != nil {
		t.Fatalf("the vendor reads metering %+v", j.Metering)
	}
	t.Logf("statuses seen: %v", seen)
}

// TestFailureHiddenUntilQuantum: a job that failed on the data looks, until the quantum, like
// one that ran; a vendor that cancels it then gets what cancelling a running job gives, not
// a "failed" conflict; and once seen, a failure on data reads only its class.
func TestFailureHiddenUntilQuantum(t *testing.T) {
	var skew atomic.Int64
	e := start(t, func(c *daemon.Config) {
		c.ExactReleaseTimingForTests = false
		c.ReleaseQuantum = time.Hour
		c.Clock = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	ctx := context.Background()
	vp, err := e.op.CreatePrincipal(ctx, api.CreatePrincipal{Name: "acme analyst", Role: "vendor", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	acme := e.client(vp.Token)
	gid := e.grantFor(acme)
	const q = "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"
	ok, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e.op, ok.ID, "review")
	// A reviewer releases an output within the quantum: its vendor does not know yet, and
	// cancelling the job is what cancelling a running one is.
	rev := e.principal("reviewer", "reviewer", "")
	rel, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e.op, rel.ID, "review")
	rv, err := rev.Review(ctx, rel.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := rev.Decide(ctx, rel.ID, "approve", rv.Digest, ""); err != nil || d.Status != "released" {
		t.Fatalf("approve: %+v %v", d, err)
	}
	if _, err := acme.Export(ctx, rel.ID, "csv"); kindOf(err) != "conflict" {
		t.Fatalf("export of a release the vendor cannot see yet: %v", err)
	}
	if c, err := acme.CancelJob(ctx, rel.ID); err != nil || c.Status != "canceled" {
		t.Fatalf("cancelling the (secretly released) job: %+v %v", c, err)
	}
	// The data breaks (here its files and the projection the sandbox mounts are damaged):
	// the next run of the same query fails on it.
	if n := damageDataset(t, e.cfg.DataDir, "residents"); n == 0 {
		t.Fatal("no projection of the dataset was found to damage")
	}
	bad, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e.op, bad.ID, "failed")
	a := observed(t, e.rawGet(vp.Token, "/v1/jobs/"+ok.ID), "residents")
	b := observed(t, e.rawGet(vp.Token, "/v1/jobs/"+bad.ID), "residents")
	if a != b {
		t.Fatalf("before the quantum the vendor tells a failure from a run:\n%s\n%s", a, b)
	}
	c, err := acme.CancelJob(ctx, bad.ID)
	if err != nil || c.Status != "canceled" {
		t.Fatalf("cancelling the (secretly failed) job: %+v %v", c, err)
	}

	other, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: q})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e.op, other.ID, "failed")
	skew.Store(int64(time.Hour))
	j, err := acme.Job(ctx, other.ID)
	if err != nil || j.Status != "failed" || j.Message != launch.ClassMessage(launch.ClassData) {
		t.Fatalf("after the quantum: %+v %v", j, err)
	}
}
