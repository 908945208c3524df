package jobs

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// heldFlush is the real store whose UpdateAsync flushes wait until the test releases them:
// the time between a commit and its fsync, which is short on a quiet disk, held open.
type heldFlush struct {
	*sqlite.DB
	committed chan struct{} // one send per UpdateAsync that committed
	release   chan struct{} // closed: flushes go on
}

func (h *heldFlush) UpdateAsync(ctx context.Context, fn func(store.Tx) error) (func() error, error) {
	flush, err := h.DB.UpdateAsync(ctx, fn)
	if err != nil {
		return nil, err
	}
	h.committed <- struct{}{}
	return func() error {
		<-h.release
		return flush()
	}, nil
}

// waitKind is a kind whose run waits until the test lets it end, then fails.
type waitKind struct{ end chan struct{} }

func (waitKind) Name() string                                     { return "wait" }
func (waitKind) Accepts(*api.SubmitJob) bool                      { return false }
func (waitKind) Plan(context.Context, *Submission) (*Plan, error) { return nil, nil }
func (k waitKind) Run(ctx context.Context, _ *Run) (*Output, error) {
	<-k.end
	return nil, launch.Fail("the test ended the run", nil)
}

// TestRunningOnlyOnceStored holds the flush of a job's start: until the start is on disk,
// the job is shown queued (what a crash of the machine would bring back), in a read and in
// a long poll, which answers "running" only once the flush is done.
func TestRunningOnlyOnceStored(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "veil.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := &heldFlush{DB: db, committed: make(chan struct{}, 1), release: make(chan struct{})}
	key, err := audit.NewKey("veil.test", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(tlog{t}, nil))
	cfg := platform.Config{Isolation: "process", DataDir: dir, ExactReleaseTimingForTests: true}
	box, err := launch.New(ctx, cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	s := New(platform.Env{DB: h, Config: cfg, Rec: platform.NewRecorder(audit.NewLog("veil.test", key), nil), Log: logger}, nil, nil, box)
	k := waitKind{end: make(chan struct{})}
	s.Register(k)

	now := time.Now().UTC()
	g := &policy.Grant{ID: "g1", Tenant: "acme", Modes: []policy.Mode{policy.ModeThreshold}, Status: policy.StatusActive, Created: now, ValidUntil: now.Add(time.Hour)}
	j := &Job{Job: store.Job{ID: "j1", GrantID: "g1", Tenant: "acme", Submitter: "v1", Status: Queued, Created: now}, Body: Body{Mode: policy.ModeThreshold, Kind: "wait", Spec: json.RawMessage(`{}`)}}
	if err := db.Update(ctx, func(tx store.Tx) error {
		body, err := json.Marshal(g)
		if err != nil {
			return err
		}
		if err := tx.PutGrant(ctx, store.Grant{ID: g.ID, Tenant: g.Tenant, Status: string(g.Status), Body: body, Updated: now}); err != nil {
			return err
		}
		return j.Put(ctx, tx, now)
	}); err != nil {
		t.Fatal(err)
	}
	vendor := policy.Principal{ID: "v1", Role: policy.Vendor, Tenant: "acme"}

	type answer struct {
		status string
		stored bool // the flush had been released when the answer came
		err    error
	}
	var released atomic.Bool
	polled := make(chan answer, 1)
	go func() {
		v, err := s.Wait(ctx, vendor, "j1", Queued, time.Minute)
		polled <- answer{v.Status, released.Load(), err}
	}()
	ran := make(chan struct{})
	go func() { s.runJob(ctx, "j1"); close(ran) }()

	<-h.committed // the job is running in the store; its start is not on disk
	if v, err := s.Wait(ctx, vendor, "j1", "", 0); err != nil || v.Status != Queued {
		t.Errorf("the job before its start is on disk: %q (%v), want queued: a machine crash now would queue it again", v.Status, err)
	}
	select {
	case a := <-polled:
		t.Errorf("the long poll answered %q (%v) before the start was on disk", a.status, a.err)
		close(h.release)
		close(k.end)
		<-ran
		return
	default:
	}
	released.Store(true)
	close(h.release)
	if a := <-polled; a.err != nil || a.status != Running || !a.stored {
		t.Errorf("the long poll answered %q (%v, flushed %v), want running once the start is on disk", a.status, a.err, a.stored)
	}
	if v, err := s.Wait(ctx, vendor, "j1", "", 0); err != nil || v.Status != Running {
		t.Errorf("the job once its start is on disk: %q %q (%v), want running", v.Status, v.Message, err)
	}
	close(k.end)
	<-ran
	if v, err := s.Wait(ctx, vendor, "j1", "", 0); err != nil || v.Status != Failed {
		t.Errorf("the job after its run: %q (%v), want failed", v.Status, err)
	}
}

// tlog writes the service's log to the test's.
type tlog struct{ t *testing.T }

func (l tlog) Write(p []byte) (int, error) { l.t.Log(string(p)); return len(p), nil }
