package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/sandbox"
)

// TestFailureClasses: however a job on real data hit a limit, and how far, its vendor reads
// one sentence; runtime errors on the data read another; the operator's detail and a dev
// run's message keep what happened.
func TestFailureClasses(t *testing.T) {
	// As the sandbox words them: which limit, and its value.
	sandboxMessage := func(st sandbox.Status) string {
		return fmt.Sprintf("the job ended %s: it used more memory than its limit of 1 GiB, or ran longer than 1m0s, or started 64 processes", st)
	}
	result := func(st sandbox.Status) error {
		return statusError(&sandbox.Result{Status: st, ExitCode: 1, Message: sandboxMessage(st), Stderr: []byte("Conversion Error: 'Alice' to INT")}, false)
	}
	limits := []sandbox.Status{sandbox.StatusOOM, sandbox.StatusPids, sandbox.StatusTimeout, sandbox.StatusResultTooLarge}
	for _, st := range limits {
		err := result(st)
		vendor := ForVendor(err, false)
		if vendor != ClassMessage(ClassLimit) {
			t.Errorf("%s: the vendor reads %q", st, vendor)
		}
		for _, tell := range []string{"GiB", "MiB", "1m0s", "64", "memory than", "longer than"} {
			if strings.Contains(vendor, tell) {
				t.Errorf("%s: the vendor's message tells %q: %s", st, tell, vendor)
			}
		}
		if dev := ForVendor(err, true); dev == vendor || dev == "" {
			t.Errorf("%s: a dev run reads %q, want the exact message", st, dev)
		}
		if _, op := Explain(err); !strings.Contains(op, string(st)) {
			t.Errorf("%s: the operator's detail %q does not say which", st, op)
		}
	}
	data := []error{result(sandbox.StatusFailed), FailOnData(ClassData, "the output gate refused the result", errors.New("NaN in column x")),
		FailOnData(ClassData, "a group has fewer than 5 rows", nil)}
	for _, err := range data {
		if v := ForVendor(err, false); v != ClassMessage(ClassData) || strings.Contains(v, "Alice") {
			t.Errorf("%v: the vendor reads %q", err, v)
		}
	}
	if ClassMessage(ClassData) == ClassMessage(ClassLimit) {
		t.Error("the two classes read the same")
	}
	// Failures the request and the grant alone decide keep their message; so does a
	// cancellation.
	pre := Fail("grant g-1 is suspended", nil)
	if v := ForVendor(pre, false); v != "grant g-1 is suspended" {
		t.Errorf("a failure before the run reads %q", v)
	}
	if v := ForVendor(result(sandbox.StatusKilled), false); v != sandboxMessage(sandbox.StatusKilled) {
		t.Errorf("a cancelled run reads %q", v)
	}
	if v := ForVendor(fmt.Errorf("run: %w", context.Canceled), false); v != "the job was canceled" {
		t.Errorf("a cancellation reads %q", v)
	}
}

// Spill areas reserve their whole size, so a daemon on a disk that cannot hold one for
// every sandbox at once gives each a share of half the free space instead of failing every
// job, and none where the share would be too small to matter.
func TestFitSpill(t *testing.T) {
	const gib = int64(1) << 30
	for _, tc := range []struct {
		free       int64
		want, n    int
		wantResult int
	}{
		{100 * gib, 8192, 5, 8192}, // room for all: as configured
		{20 * gib, 8192, 5, 2048},  // half of 20 GiB over 5
		{10 * gib, 8192, 0, 5120},  // n < 1 counts as one
		{400 << 20, 8192, 5, 0},    // 40 MB each: not worth making
		{100 * gib, 100, 5, 100},   // never more than asked
	} {
		if got := fitSpill(tc.free, tc.want, tc.n); got != tc.wantResult {
			t.Errorf("fitSpill(%d MiB free, %d, %d) = %d, want %d", tc.free>>20, tc.want, tc.n, got, tc.wantResult)
		}
	}
}

// TestProbeMakesNoSpillArea: the readiness probe starts a sandbox without a spill area (a
// file system of its own, made and removed every probe for nothing: the probe runs no job),
// so it does not depend on the room spill areas take: one too large for the disk still
// leaves the probe ready (the disk check is readiness's own).
func TestProbeMakesNoSpillArea(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: sandboxes need root")
	}
	dir, err := os.MkdirTemp("", "veil-launch-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	cfg := platform.Defaults(dir)
	cfg.Isolation, cfg.SandboxPool, cfg.JobSpillMB = "container", 0, 64
	l, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.rt.SpillErr() != nil {
		t.Skipf("skipping: %v", l.rt.SpillErr())
	}
	l.cfg.JobSpillMB = 1 << 40 // more than any disk: a spill area cannot be made
	if err := l.Probe(context.Background()); err != nil {
		t.Errorf("the probe: %v", err)
	}
}

// TestJobSpillMBIsWhatJobsGet: a daemon on a disk too small for the configured spill areas
// gives each job less (fitSpill); JobSpillMB says how much, so that what reports the limits
// a job ran under (the scale benchmark's notes) states the area the job had, not the flag.
func TestJobSpillMBIsWhatJobsGet(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: sandboxes need root")
	}
	dir, err := os.MkdirTemp("", "veil-launch-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	cfg := platform.Defaults(dir)
	cfg.Isolation, cfg.SandboxPool, cfg.JobSpillMB = "container", 0, 1<<40 // more than any disk
	l, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.rt.SpillErr() != nil {
		if got := l.JobSpillMB(); got != 0 {
			t.Errorf("JobSpillMB on a host without spill areas: %d, want 0", got)
		}
		t.Skipf("skipping: %v", l.rt.SpillErr())
	}
	if got := l.JobSpillMB(); got <= 0 || got >= cfg.JobSpillMB || got != l.cfg.JobSpillMB {
		t.Errorf("JobSpillMB with %d MB configured on a smaller disk: %d, want the fitted size %d", cfg.JobSpillMB, got, l.cfg.JobSpillMB)
	}
	cfg.JobSpillMB = 64
	l2, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if got := l2.JobSpillMB(); got != 64 {
		t.Errorf("JobSpillMB with 64 MB configured: %d, want 64", got)
	}
	cfg.Isolation = "process"
	l3, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l3.Close()
	if got := l3.JobSpillMB(); got != 0 {
		t.Errorf("JobSpillMB without sandboxes: %d, want 0 (process isolation has no spill areas)", got)
	}
}
