package jobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/veil-dp/veil/policy"
)

// TestAdmissionRate: a tenant's bucket holds its burst and refills at its rate; an empty
// bucket says when the next submission will pass; tenants do not share buckets.
func TestAdmissionRate(t *testing.T) {
	a := newAdmission(2, 3, 0)
	now := time.Unix(1000, 0)
	a.now = func() time.Time { return now }
	for i := range 3 {
		if err := a.allow("a"); err != nil {
			t.Fatalf("submission %d of the burst: %v", i, err)
		}
	}
	err := a.allow("a")
	var th *policy.Throttled
	if !errors.As(err, &th) || !errors.Is(err, policy.ErrThrottled) || th.Retry != 500*time.Millisecond {
		t.Fatalf("beyond the burst: %v (%+v), want throttled for 0.5 s", err, th)
	}
	if err := a.allow("b"); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	now = now.Add(500 * time.Millisecond)
	if err := a.allow("a"); err != nil {
		t.Fatalf("after the refill of one: %v", err)
	}
	if err := a.allow("a"); err == nil {
		t.Fatal("the refill gave more than one")
	}
	// A long pause refills to the burst, not beyond.
	now = now.Add(time.Hour)
	for range 3 {
		if err := a.allow("a"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.allow("a"); err == nil {
		t.Fatal("the bucket grew beyond its burst")
	}
	if err := newAdmission(0, 0, 0).allow("a"); err != nil {
		t.Fatalf("no rate limit: %v", err)
	}
}

// TestAdmissionValidations: a tenant has at most its number of validations at once; the next
// waits (and gives up with its context) while another tenant's go on.
func TestAdmissionValidations(t *testing.T) {
	a := newAdmission(0, 0, 2)
	ctx := context.Background()
	d1, err := a.validating(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.validating(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.validating(gone, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a third validation of a full tenant: %v, want it to wait until its context ends", err)
	}
	db, err := a.validating(ctx, "b")
	if err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	db()
	got := make(chan error, 1)
	go func() {
		_, err := a.validating(ctx, "a")
		got <- err
	}()
	d1()
	if err := <-got; err != nil {
		t.Fatalf("after a place was given back: %v", err)
	}
}
