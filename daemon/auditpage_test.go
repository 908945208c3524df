package daemon_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
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

// editRecord changes the audit record that names name, in the store at path, as an insider
// would, and recomputes every stored hash; it returns the record's index.
func editRecord(t *testing.T, path, name string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	idx := int64(-1)
	var data []byte
	err = db.QueryRow(`SELECT idx, data FROM audit_records WHERE instr(data, ?) > 0 ORDER BY idx LIMIT 1`, []byte(strconv.Quote(name))).Scan(&idx, &data)
	db.Close()
	if err != nil {
		t.Fatalf("find the record naming %s: %v", name, err)
	}
	data = bytes.Replace(data, []byte(name), []byte(strings.ToUpper(name)), 1)
	db, err = sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_records SET data = ? WHERE idx = ?`, data, idx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	rehash(t, path)
	return idx
}

// TestIncrementalVerify: VerifyAuditIncrement reads only what the log added since the
// head verified last, and still proves it: entries changed after that head (the stored
// hashes recomputed) are caught by the next incremental verification; entries changed
// before it are not read again by it, but the full verification at the end catches them.
// The crash loop verifies this way after each crash and fully at the end.
func TestIncrementalVerify(t *testing.T) {
	ctx := context.Background()
	grow := func(e *env, prefix string, n int) {
		for i := range n {
			e.principal(fmt.Sprintf("%s %d", prefix, i), "vendor", "acme")
		}
	}
	t.Run("after the verified head", func(t *testing.T) {
		e := start(t, nil)
		aud := e.principal("inspector", "auditor", "")
		vkey := vkeyOf(t, e)
		grow(e, "early", 3)
		head, added, err := aud.VerifyAuditIncrement(ctx, vkey, nil)
		if err != nil || head.Size == 0 || int64(len(added)) != head.Size {
			t.Fatalf("first verification: %v (%d entries)", err, len(added))
		}
		latest, _ := aud.AuditCheckpoint(ctx)
		if latest.Size != head.Size || !bytes.Equal(latest.Note, head.Note) {
			t.Fatalf("head at %d, latest checkpoint at %d", head.Size, latest.Size)
		}
		grow(e, "late", 4)
		next, added, err := aud.VerifyAuditIncrement(ctx, vkey, head)
		if err != nil || int64(len(added)) != next.Size-head.Size || next.Size <= head.Size {
			t.Fatalf("incremental verification: %v (%d entries, %d → %d)", err, len(added), head.Size, next.Size)
		}
		// Its root is the one a full verification finds.
		rep, err := aud.VerifyAudit(ctx, vkey)
		if err != nil || rep.Root != next.Root.String() || rep.Size != next.Size {
			t.Fatalf("full verification %+v %v; incremental head %d %s", rep, err, next.Size, next.Root)
		}
		grow(e, "later", 3)
		if idx := editRecord(t, e.cfg.StorePath(), "later 1"); idx < next.Size {
			t.Fatalf("edited entry %d, want one after the head at %d", idx, next.Size)
		}
		if _, _, err := aud.VerifyAuditIncrement(ctx, vkey, next); err == nil {
			t.Fatal("an entry changed after the verified head passes the incremental verification")
		}
		// Hashed here, without the daemon's consistency proof (which the daemon refuses
		// to give for a store that no longer matches its checkpoints).
		_, _, err = aud.VerifyAuditIncrement(ctx, vkey, nil)
		if !errors.Is(err, audit.ErrTampered) || !strings.Contains(err.Error(), "they were changed") {
			t.Fatalf("verification from the start of a changed log: %v", err)
		}
	})
	t.Run("before the verified head", func(t *testing.T) {
		e := start(t, nil)
		aud := e.principal("inspector", "auditor", "")
		vkey := vkeyOf(t, e)
		grow(e, "early", 4)
		head, _, err := aud.VerifyAuditIncrement(ctx, vkey, nil)
		if err != nil {
			t.Fatal(err)
		}
		if idx := editRecord(t, e.cfg.StorePath(), "early 2"); idx >= head.Size {
			t.Fatalf("edited entry %d, want one before the head at %d", idx, head.Size)
		}
		// Nothing was added since: the incremental verification reads nothing again.
		if _, added, err := aud.VerifyAuditIncrement(ctx, vkey, head); err != nil || len(added) != 0 {
			t.Fatalf("incremental verification with nothing added: %v (%d entries)", err, len(added))
		}
		// The full verification, as at the end of the crash loop, catches the change.
		_, err = aud.VerifyAuditSince(ctx, vkey, []client.Kept{{Name: "verified head", Note: head.Note}})
		if !errors.Is(err, audit.ErrTampered) {
			t.Fatalf("full verification of a log changed before the verified head: %v", err)
		}
	})
}
