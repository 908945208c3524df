package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/veil-dp/veil/daemon/api"
)

// TestAuditCheckpointsPaged lists more checkpoints than one page of GET
// /v1/audit/checkpoints holds: the pages, followed by their next cursor, give every
// checkpoint once and in order; a limit over the maximum is refused with what to do; the
// client's listing and verification follow the pages.
func TestAuditCheckpointsPaged(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	aud := e.principal("inspector", "auditor", "")
	// Each acknowledged write is signed before its request returns: one checkpoint each.
	for i := range 7 {
		e.principal(fmt.Sprintf("clerk %d", i), "vendor", "acme")
	}
	token := e.opToken(t)
	page := func(q string) (int, api.AuditCheckpoints, string) {
		code, body := e.raw("/v1/audit/checkpoints"+q, token)
		var p api.AuditCheckpoints
		if code == 200 {
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
		}
		return code, p, string(body)
	}
	code, whole, body := page("?limit=10000")
	if code != 200 || whole.Next != 0 || len(whole.Checkpoints) < 8 {
		t.Fatalf("one page of everything: %d next=%d %d checkpoints: %s", code, whole.Next, len(whole.Checkpoints), body)
	}
	var got []api.AuditCheckpoint
	pages := 0
	for from := int64(0); ; pages++ {
		code, p, body := page(fmt.Sprintf("?from=%d&limit=3", from))
		if code != 200 || len(p.Checkpoints) == 0 || len(p.Checkpoints) > 3 || p.From != from {
			t.Fatalf("page from %d: %d %s", from, code, body)
		}
		got = append(got, p.Checkpoints...)
		if p.Next == 0 {
			if len(p.Checkpoints) == 3 && len(got) < len(whole.Checkpoints) {
				t.Fatalf("page from %d has no next but %d checkpoints are left", from, len(whole.Checkpoints)-len(got))
			}
			break
		}
		if last := p.Checkpoints[len(p.Checkpoints)-1].Size; p.Next != last+1 {
			t.Fatalf("page from %d ends at size %d, next %d", from, last, p.Next)
		}
		from = p.Next
	}
	if pages < 2 || len(got) != len(whole.Checkpoints) {
		t.Fatalf("%d pages gave %d checkpoints, want %d over several pages", pages+1, len(got), len(whole.Checkpoints))
	}
	for i := range got {
		if got[i].Size != whole.Checkpoints[i].Size || string(got[i].Note) != string(whole.Checkpoints[i].Note) {
			t.Fatalf("checkpoint %d: paged size %d, whole size %d", i, got[i].Size, whole.Checkpoints[i].Size)
		}
		if i > 0 && got[i].Size <= got[i-1].Size {
			t.Fatalf("checkpoints out of order at %d: %d after %d", i, got[i].Size, got[i-1].Size)
		}
	}
	// The default page is bounded, and nothing beyond the maximum is served.
	if code, p, body := page(""); code != 200 || len(p.Checkpoints) != len(whole.Checkpoints) || p.Next != 0 {
		t.Fatalf("default page: %d %s", code, body)
	}
	for _, q := range []string{"?limit=10001", "?limit=0", "?from=-1", "?limit=x"} {
		if code, _, body := page(q); code != 400 || !strings.Contains(body, "limit in 1..10000") {
			t.Fatalf("%s: %d %s, want a refusal naming the bounds", q, code, body)
		}
	}
	// A from past the last checkpoint is an empty last page.
	if code, p, body := page(fmt.Sprintf("?from=%d", whole.Checkpoints[len(whole.Checkpoints)-1].Size+1)); code != 200 || len(p.Checkpoints) != 0 || p.Next != 0 {
		t.Fatalf("from past the end: %d %s", code, body)
	}
	// The client follows the pages, and the verification reads them all.
	all, err := aud.AllAuditCheckpoints(ctx, 2)
	if err != nil || len(all) < len(whole.Checkpoints) {
		t.Fatalf("client listing 2 at a time: %d checkpoints, %v", len(all), err)
	}
	for i := range whole.Checkpoints {
		if all[i].Size != whole.Checkpoints[i].Size {
			t.Fatalf("client listing: checkpoint %d has size %d, want %d", i, all[i].Size, whole.Checkpoints[i].Size)
		}
	}
	rep, err := aud.VerifyAudit(ctx, vkeyOf(t, e))
	if err != nil || rep.Checkpoints < int64(len(whole.Checkpoints)) {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
