package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// TestPriorsRefuseWhatCannotBeRead: a prior job of the grant whose stored body or plan
// cannot be read cannot be ruled out as a differencing partner, so Priors fails, naming it,
// rather than leaving it out (a damaged row would otherwise free the next query from the
// check against it). Jobs that can be read and are not threshold SQL plans are left out.
func TestPriorsRefuseWhatCannotBeRead(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "veil.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := &Service{Env: platform.Env{DB: db}}
	now := time.Now()
	put := func(id string, body []byte, at time.Duration) {
		t.Helper()
		err := db.Update(ctx, func(tx store.Tx) error {
			return tx.PutJob(ctx, store.Job{ID: id, GrantID: "g1", Tenant: "acme", Submitter: "v", Status: Released, Body: body, Created: now.Add(at), Updated: now.Add(at)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	plan := func(mode policy.Mode, kind string, spec string) []byte {
		b, err := json.Marshal(Body{Mode: mode, Kind: kind, Spec: json.RawMessage(spec)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	put("j-good", plan(policy.ModeThreshold, "plan", `{"query":"SELECT district, COUNT(*) FROM residents GROUP BY district"}`), 1*time.Second)
	put("j-dp", plan(policy.ModeDP, "plan", `{"query":"SELECT 1","dp":{}}`), 2*time.Second)
	run := &Run{ID: "j-new", Grant: &policy.Grant{ID: "g1"}, s: s}

	priors, err := run.Priors(ctx, 20)
	if err != nil || len(priors) != 1 || priors[0].Job != "j-good" {
		t.Fatalf("readable jobs: %+v %v, want j-good alone", priors, err)
	}

	for name, body := range map[string][]byte{
		"body":  []byte(`{"mode":`),
		"spec":  plan(policy.ModeThreshold, "plan", `"not an object"`),
		"query": plan(policy.ModeThreshold, "plan", `{"query":""}`),
	} {
		put("j-damaged-"+name, body, 3*time.Second)
		priors, err := run.Priors(ctx, 20)
		if err == nil || !strings.Contains(err.Error(), "j-damaged-"+name) {
			t.Errorf("a prior with a damaged %s: %+v %v, want an error naming it", name, priors, err)
		}
		var pe *PriorUnreadable
		if !errors.As(err, &pe) || pe.Job != "j-damaged-"+name {
			t.Errorf("a prior with a damaged %s: %v, want *PriorUnreadable", name, err)
		}
		if err := db.Update(ctx, func(tx store.Tx) error {
			return tx.PutJob(ctx, store.Job{ID: "j-damaged-" + name, GrantID: "g1", Tenant: "acme", Submitter: "v", Status: Rejected, Body: body, Created: now.Add(3 * time.Second), Updated: now})
		}); err != nil {
			t.Fatal(err)
		}
	}
}
