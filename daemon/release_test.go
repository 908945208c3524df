package daemon_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// approve approves a job's output as a reviewer does: it shows it and names its digest.
func approve(t *testing.T, rev *client.Client, id string) (api.Job, error) {
	t.Helper()
	rv, err := rev.Review(context.Background(), id)
	if err != nil {
		return api.Job{}, err
	}
	return rev.Decide(context.Background(), id, "approve", rv.Digest, "")
}

// entries returns the audit log's entries, decoded.
func entries(t *testing.T, auditor *client.Client) []audit.Entry {
	t.Helper()
	recs, err := auditor.AuditRecords(context.Background(), 0, 10000, false)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, r := range recs.Records {
		e, err := audit.DecodeEntry(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// find returns the entries of action on object.
func find(es []audit.Entry, action, object string) []audit.Entry {
	var out []audit.Entry
	for _, e := range es {
		if e.Action == action && e.Object == object {
			out = append(out, e)
		}
	}
	return out
}

// releaseEnv is a daemon with the residents fixture, an active threshold grant of acme and
// the principals that review.
type releaseEnv struct {
	*env
	acme, auth, prov, rev, auditor *client.Client
	gid                            string
}

func startRelease(t *testing.T, edit func(*daemon.Config)) *releaseEnv {
	e := start(t, func(c *daemon.Config) {
		c.Isolation = "process" // the fixture is synthetic; what is tested here is after the sandbox
		if edit != nil {
			edit(c)
		}
	})
	r := &releaseEnv{env: e, acme: e.principal("acme analyst", "vendor", "acme"), auth: e.principal("data bureau", "authority", ""),
		prov: e.principal("civil affairs", "provider", "civil-affairs"), rev: e.principal("reviewer", "reviewer", ""),
		auditor: e.principal("inspector", "auditor", "")}
	if _, err := r.prov.RegisterDataset(context.Background(), api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	r.gid = e.grantWith(r.acme, r.auth, r.prov)
	return r
}

// job runs a threshold query of acme into review.
func (r *releaseEnv) job(q string) string {
	r.t.Helper()
	return r.jobIn(r.gid, q)
}

func (r *releaseEnv) jobIn(gid, q string) string {
	r.t.Helper()
	j, err := r.acme.SubmitJob(context.Background(), api.SubmitJob{Grant: gid, SQL: q})
	if err != nil {
		r.t.Fatal(err)
	}
	if j, err = r.acme.Wait(context.Background(), j.ID, nil); err != nil || j.Status != "review" {
		r.t.Fatalf("job %+v: %v", j, err)
	}
	return j.ID
}

// sql runs statements on the store's file behind the daemon's back, as someone with write
// access to the disk could.
func (r *releaseEnv) sql(q string, args ...any) {
	r.t.Helper()
	db, err := sql.Open("sqlite3", filepath.Join(r.cfg.DataDir, "veil.db"))
	if err != nil {
		r.t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q, args...); err != nil {
		r.t.Fatalf("%s: %v", q, err)
	}
}

// swapOutput puts the stored output of from (a valid output of another query) in the place
// of to's; with meta, it also rewrites to's stored description to claim the new bytes.
func (r *releaseEnv) swapOutput(to, from string, meta bool) {
	r.t.Helper()
	r.sql(`UPDATE outputs SET data = (SELECT data FROM outputs WHERE job_id = ?) WHERE job_id = ?`, from, to)
	if meta {
		r.sql(`UPDATE outputs SET meta = json_set(meta, '$.digest', (SELECT json_extract(meta, '$.digest') FROM outputs WHERE job_id = ?)) WHERE job_id = ?`, from, to)
	}
}

const (
	qDistricts = "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"
	qIncome    = "SELECT district, SUM(income) AS total FROM residents GROUP BY district"
	qAges      = "SELECT district, AVG(age) AS age FROM residents GROUP BY district"
)

// TestReleaseBoundToReview: the digest of an output is recorded when the gate produces it;
// the reviewer sees it and the approval names it; an export is served only while the stored
// bytes hash to it, and its certificate names it. Changing the stored output in the SQLite
// file between show and approve, or between approval and export (even with its stored
// description, even with its audit entry), is refused and recorded.
func TestReleaseBoundToReview(t *testing.T) {
	r := startRelease(t, nil)
	ctx := context.Background()
	other := r.job(qIncome) // a valid output to swap in

	jA := r.job(qDistricts)
	rv, err := r.rev.Review(ctx, jA)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rv.Digest, "sha256:") || len(rv.Digest) != 71 {
		t.Fatalf("review shows no digest: %q", rv.Digest)
	}
	gate := find(entries(t, r.auditor), "job.gate", "job/"+jA)
	if len(gate) != 1 || gate[0].Details["output_sha256"] != rv.Digest {
		t.Fatalf("the gate's entry does not record the digest shown: %+v vs %s", gate, rv.Digest)
	}

	t.Run("approval names the digest", func(t *testing.T) {
		if _, err := r.rev.Decide(ctx, jA, "approve", "", ""); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "--digest") {
			t.Fatalf("approval without a digest: %v", err)
		}
		wrong := "sha256:" + strings.Repeat("0", 64)
		if _, err := r.rev.Decide(ctx, jA, "approve", wrong, ""); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "show it again") {
			t.Fatalf("approval of another digest: %v", err)
		}
		if m := find(entries(t, r.auditor), "review.digest_mismatch", "job/"+jA); len(m) != 1 || m[0].Details["approved_sha256"] != wrong {
			t.Fatalf("the mismatch is not recorded: %+v", m)
		}
	})

	t.Run("tampered between show and approve", func(t *testing.T) {
		r.swapOutput(jA, other, false)
		if _, err := r.rev.Decide(ctx, jA, "approve", rv.Digest, ""); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "not the output its gate produced") {
			t.Fatalf("approval of a changed output: %v", err)
		}
		if _, err := r.rev.Review(ctx, jA); kindOf(err) != "conflict" {
			t.Fatalf("a changed output is shown: %v", err)
		}
		if j, _ := r.acme.Job(ctx, jA); j.Status != "review" || len(j.Approvals) != 0 {
			t.Fatalf("job after a refused approval: %+v", j)
		}
		ts := find(entries(t, r.auditor), "output.tampered", "job/"+jA)
		if len(ts) < 2 || ts[0].Details["recorded_sha256"] != rv.Digest || ts[0].Details["stored_sha256"] == rv.Digest || ts[0].Details["action"] != "review.approve" {
			t.Fatalf("tampering not recorded as it is: %+v", ts)
		}
	})

	// Changed after approval, with the stored description claiming the new bytes, and then
	// with the gate's audit entry rewritten too: the export is refused each time.
	for _, tc := range []struct {
		name         string
		meta, record bool
	}{{"data", false, false}, {"data and description", true, false}, {"data, description and audit entry", true, true}} {
		t.Run("tampered after approval: "+tc.name, func(t *testing.T) {
			j := r.job(qAges)
			if _, err := approve(t, r.rev, j); err != nil {
				t.Fatal(err)
			}
			good, err := r.acme.Export(ctx, j, "csv")
			if err != nil {
				t.Fatal(err)
			}
			r.swapOutput(j, other, tc.meta)
			if tc.record {
				// Point the entry at the new bytes: the signed checkpoint no longer covers it.
				gate := find(entries(t, r.auditor), "job.gate", "job/"+j)[0]
				r.sql(`UPDATE audit_records SET data = replace(CAST(data AS TEXT), ?, (SELECT json_extract(meta, '$.digest') FROM outputs WHERE job_id = ?)) WHERE CAST(data AS TEXT) LIKE ?`,
					gate.Details["output_sha256"], j, "%job.gate%"+j+"%")
			}
			ex, err := r.acme.Export(ctx, j, "csv")
			if kindOf(err) != "conflict" || !strings.Contains(err.Error(), "withheld") || ex.Certificate != nil {
				t.Fatalf("export of a changed output: %v", err)
			}
			if strings.Contains(err.Error(), "north") || strings.Contains(err.Error(), "sha256") {
				t.Fatalf("the refusal says too much: %v", err)
			}
			if tc.record {
				return // the log itself was changed: an auditor's verify shows it (TestAuditTamper)
			}
			ts := find(entries(t, r.auditor), "output.tampered", "job/"+j)
			if len(ts) != 1 || ts[0].Details["action"] != "export.get" || ts[0].Actor != "veil-daemon" || ts[0].Details["by"] == "" {
				t.Fatalf("tampered export not recorded: %+v", ts)
			}
			_ = good
		})
	}

	t.Run("certificate names the digest", func(t *testing.T) {
		j := r.job(qDistricts + " ORDER BY district")
		rv, err := r.rev.Review(ctx, j)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.rev.Decide(ctx, j, "approve", rv.Digest, ""); err != nil {
			t.Fatal(err)
		}
		ex, err := r.acme.Export(ctx, j, "parquet")
		if err != nil {
			t.Fatal(err)
		}
		var env struct{ Payload []byte }
		var st struct {
			Predicate struct {
				Output struct {
					SHA256    string `json:"sha256"`
					GateEntry int64  `json:"gate_entry"`
				} `json:"output"`
			} `json:"predicate"`
		}
		if err := json.Unmarshal(ex.Certificate, &env); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(env.Payload, &st); err != nil {
			t.Fatal(err)
		}
		if st.Predicate.Output.SHA256 != rv.Digest || st.Predicate.Output.GateEntry <= 0 {
			t.Fatalf("certificate names output %+v, reviewed %s", st.Predicate.Output, rv.Digest)
		}
		rel := find(entries(t, r.auditor), "review.approve", "job/"+j)
		if len(rel) != 1 || rel[0].Details["output_sha256"] != rv.Digest {
			t.Fatalf("the approval's entry does not name the digest: %+v", rel)
		}
	})
}

// TestStaleAuthority: what a release rests on is decided again when a reviewer approves and
// when the vendor downloads, not only when the job ran: the grant's status (suspended,
// revoked, expired), the submitter's principal, the reviewers still being reviewers.
func TestStaleAuthority(t *testing.T) {
	var offset atomic.Int64
	r := startRelease(t, func(c *daemon.Config) {
		c.Approvals = 2
		c.Clock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	ctx := context.Background()
	rev2 := r.principal("reviewer two", "reviewer", "")
	rev3 := r.principal("reviewer three", "reviewer", "")
	quorum := []*client.Client{r.rev, rev2}
	both := func(j string) {
		t.Helper()
		for _, c := range quorum {
			if _, err := approve(t, c, j); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("suspended grant", func(t *testing.T) {
		j := r.job(qDistricts)
		if _, err := r.auth.ActOnGrant(ctx, r.gid, "suspend", "inspection"); err != nil {
			t.Fatal(err)
		}
		if _, err := approve(t, r.rev, j); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "suspended") {
			t.Fatalf("approval under a suspended grant: %v", err)
		}
		if _, err := r.auth.ActOnGrant(ctx, r.gid, "reinstate", "done"); err != nil {
			t.Fatal(err)
		}
		both(j)
		if _, err := r.auth.ActOnGrant(ctx, r.gid, "suspend", "second inspection"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.acme.Export(ctx, j, "csv"); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "suspended") {
			t.Fatalf("export under a suspended grant: %v", err)
		}
		if _, err := r.auth.ActOnGrant(ctx, r.gid, "reinstate", "done"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.acme.Export(ctx, j, "csv"); err != nil {
			t.Fatalf("export after reinstatement: %v", err)
		}
	})

	t.Run("revoked reviewer", func(t *testing.T) {
		j := r.job(qIncome)
		both(j)
		if _, err := r.op.RevokePrincipal(ctx, r.principalID(rev2)); err != nil {
			t.Fatal(err)
		}
		got, err := r.acme.Job(ctx, j)
		if err != nil || got.Status != "review" || !strings.Contains(got.Message, "no longer counts") {
			t.Fatalf("a release resting on a revoked reviewer: %+v %v", got, err)
		}
		if _, err := r.acme.Export(ctx, j, "csv"); kindOf(err) != "conflict" {
			t.Fatalf("export with one approval that counts: %v", err)
		}
		if _, err := approve(t, rev3, j); err != nil {
			t.Fatal(err)
		}
		if _, err := r.acme.Export(ctx, j, "csv"); err != nil {
			t.Fatalf("export after a third reviewer approved: %v", err)
		}
		quorum = []*client.Client{r.rev, rev3}
		if len(find(entries(t, r.auditor), "job.reopen", "job/"+j)) != 1 {
			t.Fatal("the reopening is not in the audit log")
		}
	})

	t.Run("reviewer revoked before the quorum", func(t *testing.T) {
		rev4 := r.principal("reviewer four", "reviewer", "")
		j := r.job(qAges)
		if _, err := approve(t, rev4, j); err != nil {
			t.Fatal(err)
		}
		if _, err := r.op.RevokePrincipal(ctx, r.principalID(rev4)); err != nil {
			t.Fatal(err)
		}
		got, err := approve(t, r.rev, j)
		if err != nil || got.Status != "review" || len(got.Approvals) != 1 {
			t.Fatalf("a revoked reviewer's approval counted: %+v %v", got, err)
		}
	})

	t.Run("revoked submitter", func(t *testing.T) {
		tok := r.token("acme temp", "vendor", "acme")
		temp := r.client(tok)
		j, err := temp.SubmitJob(ctx, api.SubmitJob{Grant: r.gid, SQL: qDistricts + " ORDER BY n"})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, r.acme, j.ID, "review")
		if _, err := approve(t, r.rev, j.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := r.op.RevokePrincipal(ctx, r.principalID(temp)); err != nil {
			t.Fatal(err)
		}
		if _, err := approve(t, rev3, j.ID); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("approval of a revoked submitter's job: %v", err)
		}
	})

	t.Run("revoked grant", func(t *testing.T) {
		g2 := r.grantWith(r.acme, r.auth, r.prov)
		j := r.jobIn(g2, qDistricts+" ORDER BY district DESC")
		both(j)
		if _, err := r.auth.ActOnGrant(ctx, g2, "revoke", "misuse"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.acme.Export(ctx, j, "csv"); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("export under a revoked grant: %v", err)
		}
	})

	t.Run("expired grant", func(t *testing.T) {
		j := r.job(qIncome + " ORDER BY district DESC")
		both(j)
		if _, err := r.acme.Export(ctx, j, "csv"); err != nil {
			t.Fatal(err)
		}
		offset.Store(int64(31 * 24 * time.Hour))
		if _, err := r.acme.Export(ctx, j, "csv"); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("export under an expired grant: %v", err)
		}
	})
}

// principalID is the id of a client's principal.
func (e *env) principalID(c *client.Client) string {
	e.t.Helper()
	p, err := c.Whoami(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return p.ID
}
