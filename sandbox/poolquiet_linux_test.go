package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

// quietPool starts a pool of size sandboxes of the "job" payload whose filler waits at most
// quietMax for the pool to be quiet, and reports each of its waits on the returned channel.
// The hooks are set before the filler starts.
func quietPool(t *testing.T, r *Runtime, size int, quietMax time.Duration) (*Pool, <-chan [2]int) {
	t.Helper()
	p, err := r.NewPool(Template{Args: payload("job")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	waits := make(chan [2]int, 64)
	p.onQuiet = func(ready, running int) { waits <- [2]int{ready, running} }
	p.quietMax = quietMax
	p.size, p.ready = size, make(chan *box, size)
	p.filler.Add(1)
	go p.fill()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertCleanPrefix(t, r, containerPrefix+poolPrefix+p.tag+"-")
	})
	return p, waits
}

// startSleeper starts a job that runs until its context ends, and waits until it holds a
// sandbox of the pool. Calling the returned func ends it and waits for its Run (the
// test's end does too).
func startSleeper(t *testing.T, p *Pool) func() {
	t.Helper()
	p.mu.Lock()
	before := p.running
	p.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.Run(ctx, Spec{ID: jobID(t), Stdin: []byte("sleep")}, io.Discard)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		p.mu.Lock()
		n := p.running
		p.mu.Unlock()
		if n > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job did not get a sandbox")
		}
	}
	var once sync.Once
	end := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(end) // before the pool's Close, which waits for it, when the test fails
	return end
}

// nextWait returns the next wait of p's filler for the pool to be quiet. A filler that
// prepares without waiting (as the pool did before it waited) fails the test, once it has
// started more than allowed sandboxes ahead or after 30 s.
func nextWait(t *testing.T, p *Pool, waits <-chan [2]int, allowed int64) [2]int {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case w := <-waits:
			return w
		case <-deadline:
			t.Fatalf("the filler did not wait for the pool to be quiet (%d started ahead)", p.Stats().StartedAhead)
		case <-time.After(5 * time.Millisecond):
			if n := p.Stats().StartedAhead; n > allowed {
				t.Fatalf("the filler prepared a sandbox beside a running job without waiting for the pool to be quiet (%d started ahead, want at most %d)", n, allowed)
			}
		}
	}
}

// TestPoolQuietRefill: the filler does not prepare a sandbox beside a running job while
// the pool has at least half its size ready; it does once the pool runs low, and once no
// job runs. Preparing a sandbox beside a job (tens of milliseconds of CPU) slowed that job:
// back to back one-row DP jobs took 1.5 times a settled one's time in their sandbox.
func TestPoolQuietRefill(t *testing.T) {
	r := newRuntime(t)
	p, waits := quietPool(t, r, 4, time.Hour)
	waitReady(t, p, 4)
	endB := startSleeper(t, p)                                             // 3 ready
	if res, _ := poolRun(t, p, nil, "echo", "x"); res.Status != StatusOK { // 2 ready, woken
		t.Fatalf("job: %s", res.Status)
	}
	if got := nextWait(t, p, waits, 4); got != [2]int{2, 1} {
		t.Errorf("the filler waited with %d ready and %d jobs running, want 2 and 1", got[0], got[1])
	}
	// The filler is waiting for the pool to be quiet: nothing but a job's start or end
	// wakes it (the bound is an hour).
	if st := p.Stats(); st.StartedAhead != 4 || st.Ready != 2 {
		t.Errorf("beside a running job, with half the pool ready: %d started ahead, %d ready; want 4 and 2", st.StartedAhead, st.Ready)
	}
	// One more job: 1 of 4 ready, the pool runs low, and the filler prepares beside the
	// two running jobs, until half is ready again.
	endC := startSleeper(t, p)
	if got := nextWait(t, p, waits, 5); got != [2]int{2, 2} {
		t.Errorf("running low, the filler waited with %d ready and %d jobs running, want 2 and 2", got[0], got[1])
	}
	if st := p.Stats(); st.StartedAhead != 5 {
		t.Errorf("running low beside running jobs: %d started ahead, want 5", st.StartedAhead)
	}
	// No job running: the pool fills up.
	endB()
	endC()
	waitReady(t, p, 4)
}

// TestPoolQuietBound: a filler whose bound has passed prepares beside a running job (a host
// always busy still refills its pool).
func TestPoolQuietBound(t *testing.T) {
	r := newRuntime(t)
	p, _ := quietPool(t, r, 4, 0)
	waitReady(t, p, 4)
	endB := startSleeper(t, p)
	defer endB()
	if res, _ := poolRun(t, p, nil, "echo", "x"); res.Status != StatusOK {
		t.Fatalf("job: %s", res.Status)
	}
	waitReady(t, p, 4) // while the sleeper runs
}

// TestPoolQuietSustained: under a load that never lets the pool be quiet (a job always
// running, two more submitting one job after another, and a bound of an hour), the filler
// still refills once the pool runs low, every job gets a sandbox started for it alone, the pool never
// holds more than its size and one being destroyed beside what it prepares, and once the
// load ends it fills up again.
func TestPoolQuietSustained(t *testing.T) {
	r := newRuntime(t)
	const size = 4
	p, err := r.NewPool(Template{Args: payload("job")}, 0) // filled below, once the hooks are set
	if err != nil {
		t.Fatal(err)
	}
	var over sync.Once
	var overMsg string
	p.onCheck = func(ready, dying int, prepares bool) {
		if prepares && ready+dying > size {
			over.Do(func() {
				overMsg = fmt.Sprintf("the filler prepared with %d ready and %d being destroyed, in a pool of %d", ready, dying, size)
			})
		}
	}
	p.quietMax = time.Hour
	p.size, p.ready = size, make(chan *box, size)
	p.filler.Add(1)
	go p.fill()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertCleanPrefix(t, r, containerPrefix+poolPrefix+p.tag+"-")
	})
	waitReady(t, p, size)
	endSleeper := startSleeper(t, p)
	const perWorker = 12
	var wg sync.WaitGroup
	errs := make(chan error, 2*perWorker)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				var out bytes.Buffer
				id := fmt.Sprintf("%s-%d-%d", jobID(t), w, i)
				res, err := p.Run(context.Background(), Spec{ID: id, Stdin: []byte("echo\nx")}, &out)
				if err == nil && res.Status != StatusOK {
					err = fmt.Errorf("job %s: %s: %s", id, res.Status, res.Stderr)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := p.Stats()
	if st.StartedAhead <= size {
		t.Errorf("with a job always running, %d sandboxes started ahead for %d jobs: the filler did not refill a pool running low", st.StartedAhead, 2*perWorker+1)
	}
	if overMsg != "" {
		t.Error(overMsg)
	}
	endSleeper()
	waitReady(t, p, size)
	// One start for each job (never a sandbox for two) and for each sandbox ready now.
	if st := p.Stats(); st.StartedAhead+st.StartedOnDemand != 2*perWorker+1+size {
		t.Errorf("%d sandboxes started ahead and %d on demand for %d jobs and %d ready", st.StartedAhead, st.StartedOnDemand, 2*perWorker+1, size)
	}
}
