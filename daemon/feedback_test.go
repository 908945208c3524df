package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
)

// patientsSchema is a second dataset of another provider over the same files.
var patientsSchema = strings.NewReplacer("name: residents", "name: patients", "provider: civil-affairs", "provider: health",
	"title: Registered residents", "title: Patients").Replace(residentsSchema)

func feedbackIDs(fs []api.Feedback) []string {
	var ids []string
	for _, f := range fs {
		ids = append(ids, f.ID)
	}
	sort.Strings(ids) // two notes filed in the same millisecond are listed by id
	return ids
}

// TestFeedback walks data-quality feedback end to end: a vendor that uses a dataset files
// notes, other tenants and other providers learn nothing of them, the provider lists and
// resolves them once, and the audit log holds both steps with hashes, not the texts.
func TestFeedback(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	health := e.principal("health bureau", "provider", "health")
	auth := e.principal("data bureau", "authority", "")
	acme := e.principal("acme analyst", "vendor", "acme")
	acme2 := e.principal("acme lead", "vendor", "acme")
	rival := e.principal("rival analyst", "vendor", "rival")
	rev := e.principal("reviewer", "reviewer", "")
	aud := e.principal("inspector", "auditor", "")

	csv := writeResidents(t, t.TempDir())
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{csv}}); err != nil {
		t.Fatal(err)
	}
	if _, err := health.RegisterDataset(ctx, api.RegisterDataset{Schema: patientsSchema, Files: []string{csv}}); err != nil {
		t.Fatal(err)
	}
	e.grantWith(acme, auth, prov)

	// A vendor of the tenant files feedback on a column and on the whole dataset.
	msgAge := "ages above 120 appear in district south; probably birth years typed as ages"
	onAge, err := acme.SubmitFeedback(ctx, "residents", api.SubmitFeedback{Column: "age", Message: "  " + msgAge + "\n"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(onAge.ID, "f-") || onAge.Dataset != "residents" || onAge.Column != "age" || onAge.Tenant != "acme" ||
		onAge.Status != "open" || onAge.Message != msgAge || onAge.Created.IsZero() || !onAge.Resolved.IsZero() || onAge.Submitter == "" {
		t.Fatalf("filed %+v", onAge)
	}
	msgAll := "the March extract seems to miss about a tenth of the rows"
	onAll, err := acme2.SubmitFeedback(ctx, "residents", api.SubmitFeedback{Message: msgAll})
	if err != nil {
		t.Fatal(err)
	}
	if onAll.Column != "" || onAll.Tenant != "acme" {
		t.Fatalf("filed %+v", onAll)
	}

	// A vendor whose tenant has no grant on the dataset is refused.
	if _, err := rival.SubmitFeedback(ctx, "residents", api.SubmitFeedback{Message: "looks wrong"}); kindOf(err) != "forbidden" || !strings.Contains(err.Error(), "grant") {
		t.Fatalf("rival files feedback without a grant: %v", err)
	}
	// ... and neither is a grant on another dataset enough.
	if _, err := acme.SubmitFeedback(ctx, "patients", api.SubmitFeedback{Message: "looks wrong"}); kindOf(err) != "forbidden" {
		t.Fatalf("acme files feedback on a dataset it has no grant for: %v", err)
	}

	list := func(c *client.Client, dataset, status string) []string {
		t.Helper()
		fs, err := c.Feedback(ctx, dataset, status)
		if err != nil {
			t.Fatal(err)
		}
		return feedbackIDs(fs)
	}
	both := strings.Join(feedbackIDs([]api.Feedback{onAge, onAll}), ",")
	for _, tc := range []struct {
		name            string
		c               *client.Client
		dataset, status string
		want            string
	}{
		{"vendor", acme, "", "", both},
		{"other vendor of the tenant", acme2, "", "", both},
		{"provider", prov, "", "", both},
		{"provider, open, residents", prov, "residents", "open", both},
		{"provider, resolved", prov, "", "resolved", ""},
		{"provider, other dataset", prov, "patients", "", ""},
		{"operator", e.op, "", "", both},
		{"authority", auth, "", "", both},
		{"other tenant's vendor", rival, "", "", ""},
		{"other tenant's vendor, by dataset", rival, "residents", "", ""},
		{"provider of another dataset", health, "", "", ""},
		{"provider of another dataset, by name", health, "residents", "", ""},
	} {
		if got := strings.Join(list(tc.c, tc.dataset, tc.status), ","); got != tc.want {
			t.Errorf("%s lists %q, want %q", tc.name, got, tc.want)
		}
	}
	for name, c := range map[string]*client.Client{"reviewer": rev, "auditor": aud} {
		if _, err := c.Feedback(ctx, "", ""); kindOf(err) != "forbidden" {
			t.Errorf("%s lists feedback: %v", name, err)
		}
	}

	// Only the dataset's provider resolves: another provider learns nothing (the same answer
	// as for feedback that does not exist); other roles are refused.
	_, errOther := health.ResolveFeedback(ctx, onAge.ID, "not ours")
	_, errNone := health.ResolveFeedback(ctx, "f-doesnotexist", "not ours")
	if kindOf(errOther) != "not_found" || kindOf(errNone) != "not_found" || errOther.Error() != strings.Replace(errNone.Error(), "f-doesnotexist", onAge.ID, 1) {
		t.Fatalf("provider of another dataset resolves: %v / %v", errOther, errNone)
	}
	for name, c := range map[string]*client.Client{"vendor": acme, "operator": e.op, "authority": auth, "reviewer": rev} {
		if _, err := c.ResolveFeedback(ctx, onAge.ID, "done"); kindOf(err) != "forbidden" {
			t.Errorf("%s resolves: %v", name, err)
		}
	}
	if _, err := prov.ResolveFeedback(ctx, onAge.ID, "  "); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "note") {
		t.Fatalf("resolve without a note: %v", err)
	}

	note := "re-registered with birth years corrected; version changed"
	done, err := prov.ResolveFeedback(ctx, onAge.ID, note)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != "resolved" || done.Note != note || done.Resolver == "" || done.Resolver == onAge.Submitter || done.Resolved.IsZero() {
		t.Fatalf("resolved %+v", done)
	}
	if _, err := prov.ResolveFeedback(ctx, onAge.ID, "again"); kindOf(err) != "conflict" || !strings.Contains(err.Error(), "already resolved") {
		t.Fatalf("second resolve: %v", err)
	}
	if got := list(prov, "", "resolved"); len(got) != 1 || got[0] != onAge.ID {
		t.Fatalf("resolved feedback: %v", got)
	}
	if got := list(prov, "", "open"); len(got) != 1 || got[0] != onAll.ID {
		t.Fatalf("open feedback: %v", got)
	}
	// The vendor sees the answer.
	fs, err := acme.Feedback(ctx, "residents", "resolved")
	if err != nil || len(fs) != 1 || fs[0].Note != note || fs[0].Status != "resolved" {
		t.Fatalf("vendor reads the resolution: %+v %v", fs, err)
	}

	// The audit log holds each step with ids and hashes, never the texts.
	recs, err := aud.AuditRecords(ctx, 0, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	want := map[string]map[string]string{
		"feedback.submit/feedback/" + onAge.ID:  {"dataset": "residents", "column": "age", "message_sha256": hash(msgAge)},
		"feedback.submit/feedback/" + onAll.ID:  {"dataset": "residents", "message_sha256": hash(msgAll)},
		"feedback.resolve/feedback/" + onAge.ID: {"dataset": "residents", "vendor": "acme", "note_sha256": hash(note)},
	}
	got := map[string]audit.Entry{}
	for _, r := range recs.Records {
		for _, text := range []string{msgAge, msgAll, note} {
			if strings.Contains(string(r), text) {
				t.Errorf("the audit log holds a feedback text: %s", r)
			}
		}
		var en audit.Entry
		if err := json.Unmarshal(r, &en); err != nil {
			t.Fatalf("audit record %q: %v", r, err)
		}
		if strings.HasPrefix(en.Action, "feedback.") {
			got[en.Action+"/"+en.Object] = en
		}
	}
	if len(got) != len(want) {
		t.Errorf("feedback audit entries: got %d, want %d: %v", len(got), len(want), got)
	}
	for k, details := range want {
		en, ok := got[k]
		if !ok {
			t.Errorf("no audit entry %s", k)
			continue
		}
		for dk, dv := range details {
			if en.Details[dk] != dv {
				t.Errorf("%s: details[%s] = %q, want %q", k, dk, en.Details[dk], dv)
			}
		}
		if len(en.Details) != len(details) {
			t.Errorf("%s: details %v, want %v", k, en.Details, details)
		}
	}
	if en := got["feedback.submit/feedback/"+onAge.ID]; en.Actor != onAge.Submitter || en.Role != "vendor" || en.Tenant != "acme" {
		t.Errorf("submit entry: %+v", en)
	}
	if en := got["feedback.resolve/feedback/"+onAge.ID]; en.Actor != done.Resolver || en.Role != "provider" || en.Tenant != "civil-affairs" {
		t.Errorf("resolve entry: %+v", en)
	}
}

// TestFeedbackRefused checks that bad input and grants that were never approved are refused
// with a message that says what was wrong, and that nothing is stored or recorded.
func TestFeedbackRefused(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	acme := e.principal("acme analyst", "vendor", "acme")
	pending := e.principal("pending analyst", "vendor", "pending")
	aud := e.principal("inspector", "auditor", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	e.grantWith(acme, auth, prov)
	// A grant still in review does not count: the tenant has not used the data.
	if _, err := pending.ApplyGrant(ctx, api.ApplyGrant{Scenario: "district counts", Purpose: "plan services", Modes: []string{"threshold"}, K: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district"}}}}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		c       *client.Client
		dataset string
		req     api.SubmitFeedback
		kind    string
		says    string
	}{
		{"empty message", acme, "residents", api.SubmitFeedback{Message: " \n\t "}, "invalid", "message is empty"},
		{"no message", acme, "residents", api.SubmitFeedback{Column: "age"}, "invalid", "message is empty"},
		{"long message", acme, "residents", api.SubmitFeedback{Message: strings.Repeat("数", 4001)}, "invalid", "4001 characters"},
		{"unknown column", acme, "residents", api.SubmitFeedback{Column: "birthday", Message: "wrong"}, "invalid", `no column "birthday"`},
		{"unknown dataset", acme, "nosuchdata", api.SubmitFeedback{Message: "wrong"}, "not_found", "not in the catalog"},
		{"pending grant", pending, "residents", api.SubmitFeedback{Message: "wrong"}, "forbidden", "approved grant"},
		{"provider files", prov, "residents", api.SubmitFeedback{Message: "wrong"}, "forbidden", "may not feedback.submit"},
		{"operator files", e.op, "residents", api.SubmitFeedback{Message: "wrong"}, "forbidden", ""},
	}
	for _, tc := range cases {
		_, err := tc.c.SubmitFeedback(ctx, tc.dataset, tc.req)
		if kindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: err = %v (%s), want %s saying %q", tc.name, err, kindOf(err), tc.kind, tc.says)
		}
	}
	// 4000 characters (not bytes) is the limit.
	if _, err := acme.SubmitFeedback(ctx, "residents", api.SubmitFeedback{Message: strings.Repeat("数", 4000)}); err != nil {
		t.Fatalf("4000-character message: %v", err)
	}
	if _, err := prov.Feedback(ctx, "", "closed"); kindOf(err) != "invalid" || !strings.Contains(err.Error(), "open or resolved") {
		t.Fatalf("bad status filter: %v", err)
	}
	if _, err := prov.ResolveFeedback(ctx, "f-doesnotexist", "done"); kindOf(err) != "not_found" {
		t.Fatalf("resolve unknown feedback: %v", err)
	}
	fs, err := prov.Feedback(ctx, "", "")
	if err != nil || len(fs) != 1 {
		t.Fatalf("stored feedback after refusals: %+v %v", fs, err)
	}
	recs, err := aud.AuditRecords(ctx, 0, 1000, false)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs.Records {
		if strings.Contains(string(r), `"feedback.submit"`) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d feedback.submit entries after refusals, want 1", n)
	}
}
