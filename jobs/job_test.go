package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// TestBodyStoredForm reads job bodies as they were stored before kinds were separate, one
// per kind, and writes them back in the same form: a store written by an older daemon keeps
// its queued jobs and its outputs' jobs.
func TestBodyStoredForm(t *testing.T) {
	for _, tc := range []struct {
		name, body, kind, spec string
	}{
		{"sql", `{"mode":"threshold","sql":"SELECT 1","plan":{"sql":"SELECT 1","tables":["r"]},"spend":{"epsilon_units":5,"delta_units":0}}`, "plan", `{"sql":"SELECT 1","tables":["r"]}`},
		{"he", `{"mode":"he","sql":"he-score x","plan":null,"he":{"dataset":"r","k":5}}`, "he", `{"dataset":"r","k":5}`},
		{"model", `{"mode":"model","sql":"m","plan":null,"model":{"trainer":"histogram"},"dev":true,"request":{"grant":"g-1"}}`, "model", `{"trainer":"histogram"}`},
		{"custom", `{"mode":"model","sql":"c","plan":null,"custom":{"runtime":"static"}}`, "custom", `{"runtime":"static"}`},
		{"twin", `{"mode":"twin","sql":"t","plan":null,"twin":{"dataset":"r","kind":"masked"},"started":"2026-01-02T03:04:05Z"}`, "twin", `{"dataset":"r","kind":"masked"}`},
	} {
		var b Body
		if err := json.Unmarshal([]byte(tc.body), &b); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if b.Kind != tc.kind || string(b.Spec) != tc.spec {
			t.Errorf("%s: kind %q spec %s, want %q %s", tc.name, b.Kind, b.Spec, tc.kind, tc.spec)
		}
		out, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var again, want map[string]json.RawMessage
		json.Unmarshal(out, &again)
		json.Unmarshal([]byte(tc.body), &want)
		delete(want, "plan")
		if tc.kind == "plan" {
			want["plan"] = json.RawMessage(tc.spec)
		}
		for k, v := range want {
			if string(again[k]) != string(v) {
				t.Errorf("%s: written %s = %s, want %s (in %s)", tc.name, k, again[k], v, out)
			}
		}
		if len(again) != len(want) {
			t.Errorf("%s: written %s, want the keys of %s", tc.name, out, tc.body)
		}
	}
	var b Body
	if err := json.Unmarshal([]byte(`{"mode":"he","sql":"x","he":{},"model":{}}`), &b); err == nil {
		t.Error("a body with two plans was read")
	}
}

// TestMove checks the state machine: a job moves only along its arrows, and final statuses
// are final.
func TestMove(t *testing.T) {
	allowed := map[[2]string]bool{}
	for from, tos := range next {
		for _, to := range tos {
			allowed[[2]string{from, to}] = true
		}
	}
	all := []string{Queued, Running, Review, Released, Rejected, Failed, Canceled, Dev}
	for _, from := range all {
		for _, to := range all {
			j := &Job{Job: store.Job{ID: "j-1", Status: from}}
			err := j.Move(to)
			if ok := allowed[[2]string{from, to}]; ok != (err == nil) {
				t.Errorf("%s → %s: err %v, allowed %v", from, to, err, ok)
			}
			if err != nil && j.Status != from {
				t.Errorf("%s → %s refused but the status is now %s", from, to, j.Status)
			}
		}
	}
	for _, final := range []string{Rejected, Failed, Canceled, Dev} {
		if len(next[final]) > 0 {
			t.Errorf("%s is final but moves on to %v", final, next[final])
		}
	}
	// A release moves only back to review (its approvals no longer count), never elsewhere.
	if got := next[Released]; len(got) != 1 || got[0] != Review {
		t.Errorf("released moves on to %v, want only review", got)
	}
	// Exactly one of two racing moves out of review into a final status wins when each
	// checks under the lock its caller holds (the store serializes writers the same way).
	var mu sync.Mutex
	j := &Job{Job: store.Job{ID: "j-2", Status: Review}}
	wins := 0
	var wg sync.WaitGroup
	for _, to := range []string{Released, Rejected, Canceled, Released, Rejected} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if j.Move(to) == nil {
				wins++
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d moves out of review won, want 1", wins)
	}
}

// TestRefuseOnlyRefusals: what Refuse marks for a job.refuse audit entry is a request at
// fault; a cancelled request, a validator that timed out or failed is returned unmarked.
func TestRefuseOnlyRefusals(t *testing.T) {
	sub := &Submission{}
	g := &policy.Grant{ID: "g-1"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("%w: the SQL is longer than 64 KiB", policy.ErrInvalid), true},
		{fmt.Errorf("validate: %w", &engine.Refusal{Part: "WHERE", Reason: "the privacy unit"}), true},
		{fmt.Errorf("%w: blob b-1 not found", policy.ErrNotFound), true},
		{fmt.Errorf("validate: %w", context.Canceled), false},
		{fmt.Errorf("validate: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("%w: %w", policy.ErrInvalid, context.Canceled), false},
		{errors.New("duckdb: internal error"), false},
	} {
		err := sub.Refuse(g, tc.err)
		var r *refusal
		if got := errors.As(err, &r); got != tc.want {
			t.Errorf("Refuse(%v) is a refusal: %v, want %v", tc.err, got, tc.want)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("Refuse(%v) lost the error: %v", tc.err, err)
		}
	}
}
