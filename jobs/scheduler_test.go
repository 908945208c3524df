package jobs

import (
	"context"
	"slices"
	"sync"
	"testing"
)

// TestSchedulerFair checks that a tenant's flood does not starve another tenant: with one
// worker, tenant b's single job runs second, not after all of a's.
func TestSchedulerFair(t *testing.T) {
	var mu sync.Mutex
	var order []string
	gate := make(chan struct{})
	started := make(chan struct{})
	done := make(chan struct{}, 32)
	s := newScheduler(1, func(ctx context.Context, id string) {
		if id == "a0" {
			close(started)
			<-gate // hold the worker until everything is queued
		}
		mu.Lock()
		order = append(order, id)
		mu.Unlock()
		done <- struct{}{}
	})
	defer s.stop()
	s.enqueue("a", "a0")
	<-started
	for _, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
		s.enqueue("a", id)
	}
	s.enqueue("b", "b0")
	s.enqueue("c", "c0")
	close(gate)
	for range 8 {
		<-done
	}
	want := []string{"a0", "a1", "b0", "c0", "a2", "a3", "a4", "a5"}
	if !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
}

// TestSchedulerConcurrent hammers enqueue from many goroutines and checks every job runs
// exactly once.
func TestSchedulerConcurrent(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	wg.Add(400)
	s := newScheduler(4, func(ctx context.Context, id string) {
		mu.Lock()
		seen[id]++
		mu.Unlock()
		wg.Done()
	})
	defer s.stop()
	var senders sync.WaitGroup
	for g := range 8 {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for i := range 50 {
				s.enqueue(string(rune('a'+g)), string(rune('a'+g))+"-"+string(rune('0'+i/10))+string(rune('0'+i%10)))
			}
		}()
	}
	senders.Wait()
	wg.Wait()
	if len(seen) != 400 {
		t.Fatalf("%d distinct jobs ran, want 400", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("job %s ran %d times", id, n)
		}
	}
}
