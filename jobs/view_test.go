package jobs

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// ranFor is a production job submitted at created that started after wait and whose run
// took took, ending in status with the metering its run measured.
func ranFor(created time.Time, wait, took time.Duration, status string, m *api.Metering) *Job {
	started := created.Add(wait)
	return &Job{Job: store.Job{ID: "j-1", GrantID: "g-1", Tenant: "acme", Submitter: "p-1", Status: status, Created: created},
		Body: Body{Mode: policy.ModeThreshold, SQL: "SELECT 1", Message: "waiting for export review: 3 groups released", Started: started,
			Finished: started.Add(took), Metering: m}}
}

func viewJSON(t *testing.T, j *Job, role policy.Role, now time.Time, q time.Duration) string {
	t.Helper()
	b, err := json.Marshal(view(j, role, now, q))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVendorViewDoesNotTellRunTime: two jobs whose runs took very different times (as a
// person with many rows makes a job slower) and measured different metering look the same
// to their vendor at every moment, byte for byte; the operator sees each exactly.
func TestVendorViewDoesNotTellRunTime(t *testing.T) {
	created := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	const q = 5 * time.Second
	fast := ranFor(created, 40*time.Millisecond, 300*time.Millisecond, Review, &api.Metering{WallMS: 300, CPUMS: 250, PeakMemoryMB: 40, Groups: 3})
	slow := ranFor(created, 900*time.Millisecond, 3700*time.Millisecond, Review, &api.Metering{WallMS: 3700, CPUMS: 7000, PeakMemoryMB: 900, Groups: 3})
	for _, at := range []time.Duration{0, 100 * time.Millisecond, time.Second, 2 * time.Second, 4999 * time.Millisecond, 5 * time.Second, 7 * time.Second, time.Minute} {
		now := created.Add(at)
		a, b := viewJSON(t, fast, policy.Vendor, now, q), viewJSON(t, slow, policy.Vendor, now, q)
		if a != b {
			t.Errorf("at +%v the vendor tells the runs apart:\n%s\n%s", at, a, b)
		}
		v := view(fast, policy.Vendor, now, q)
		if v.Metering != nil {
			t.Errorf("at +%v the vendor sees metering %+v", at, v.Metering)
		}
		// Both started and ended within the first quantum: queued until it, then review.
		want := Queued
		if at >= q {
			want = Review
		}
		if v.Status != want {
			t.Errorf("at +%v the vendor sees %s, want %s", at, v.Status, want)
		}
		if want == Queued && (v.Message != "" || !v.Finished.IsZero() || !v.Started.IsZero()) {
			t.Errorf("at +%v a queued view tells the run: %+v", at, v)
		}
		if !v.Started.IsZero() && v.Started != created.Add(q) {
			t.Errorf("at +%v started %v, want the first quantum", at, v.Started)
		}
	}
	// The operator sees what happened, when.
	op := view(slow, policy.Operator, created.Add(time.Second), q)
	if op.Status != Review || op.Metering == nil || op.Metering.WallMS != 3700 || !op.Finished.Equal(slow.Body.Finished) {
		t.Errorf("operator view %+v", op)
	}
	// A reviewer reads the job in review, without its metering.
	if rv := view(slow, policy.Reviewer, created.Add(time.Second), q); rv.Status != Review || rv.Metering != nil {
		t.Errorf("reviewer view %+v", rv)
	}
	// A run that took longer than a quantum ends, for the vendor, at the next one.
	long := ranFor(created, 0, 6*time.Second, Failed, nil)
	if v := view(long, policy.Vendor, created.Add(9*time.Second), q); v.Status != Running {
		t.Errorf("at +9s a run that ended at +6s shows %s", v.Status)
	}
	if v := view(long, policy.Vendor, created.Add(10*time.Second), q); v.Status != Failed || v.Finished != created.Add(10*time.Second) {
		t.Errorf("at +10s: %+v", v)
	}
}

// TestVendorViewQueued: a job still queued, or one that started within the quantum, shows
// queued until the quantum; what others' jobs took (its wait) is seen only in quanta.
func TestVendorViewQueued(t *testing.T) {
	created := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	const q = 5 * time.Second
	j := ranFor(created, 1200*time.Millisecond, 0, Running, nil)
	j.Body.Finished = time.Time{}
	if v := view(j, policy.Vendor, created.Add(2*time.Second), q); v.Status != Queued || !v.Started.IsZero() {
		t.Errorf("started at +1.2s, seen at +2s: %+v", v)
	}
	if at := nextReveal(j, created.Add(2*time.Second), q); at != created.Add(q) {
		t.Errorf("next reveal %v, want +5s", at.Sub(created))
	}
	if v := view(j, policy.Vendor, created.Add(q), q); v.Status != Running || v.Started != created.Add(q) {
		t.Errorf("at +5s: %+v", v)
	}
	if at := nextReveal(j, created.Add(q), q); !at.IsZero() {
		t.Errorf("nothing left to reveal, got %v", at)
	}
	// Canceled within the quantum it started in: the vendor never saw it start, and does not
	// afterwards either; canceled later, it sees the quantum it started in.
	c := ranFor(created, 1200*time.Millisecond, 0, Canceled, nil)
	c.Body.Finished = created.Add(2 * time.Second)
	if v := view(c, policy.Vendor, created.Add(time.Minute), q); v.Status != Canceled || !v.Started.IsZero() {
		t.Errorf("canceled at +2s: %+v", v)
	}
	c.Body.Finished = created.Add(7 * time.Second)
	if v := view(c, policy.Vendor, created.Add(time.Minute), q); v.Started != created.Add(q) {
		t.Errorf("canceled at +7s: started %v", v.Started)
	}
	// A job that failed before it started (its grant was suspended) is queued until then.
	never := ranFor(created, 0, 0, Failed, nil)
	never.Body.Started, never.Body.Finished = time.Time{}, created.Add(10*time.Millisecond)
	if v := view(never, policy.Vendor, created.Add(time.Second), q); v.Status != Queued || v.Message != "" {
		t.Errorf("failed at start, seen at +1s: %+v", v)
	}
}

// TestDevViewExact: a dev run on the twins holds no real person: its vendor sees it
// exactly, metering included; so does everyone with no quantum (tests that ask for it).
func TestDevViewExact(t *testing.T) {
	created := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	j := ranFor(created, 0, 300*time.Millisecond, Dev, &api.Metering{WallMS: 300})
	j.Body.Dev = true
	if v := view(j, policy.Vendor, created.Add(time.Second), 5*time.Second); v.Status != Dev || v.Metering == nil || v.Metering.WallMS != 300 {
		t.Errorf("dev view %+v", v)
	}
	p := ranFor(created, 0, 300*time.Millisecond, Review, &api.Metering{WallMS: 300})
	if v := view(p, policy.Vendor, created.Add(time.Second), 0); v.Status != Review || v.Metering != nil {
		t.Errorf("no quantum: %+v (the metering stays the operator's)", v)
	}
}

func TestReveal(t *testing.T) {
	c := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ at, want time.Duration }{
		{0, 5 * time.Second}, {time.Millisecond, 5 * time.Second}, {5 * time.Second, 5 * time.Second},
		{5*time.Second + time.Nanosecond, 10 * time.Second}, {12 * time.Second, 15 * time.Second},
	} {
		if got := reveal(c, c.Add(tc.at), 5*time.Second); got != c.Add(tc.want) {
			t.Errorf("reveal(+%v) = +%v, want +%v", tc.at, got.Sub(c), tc.want)
		}
	}
	if got := reveal(c, time.Time{}, 5*time.Second); !got.IsZero() {
		t.Errorf("reveal(zero) = %v", got)
	}
}
