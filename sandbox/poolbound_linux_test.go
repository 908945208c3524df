package sandbox

import "testing"

// TestPoolBoundWhileDestroying: the sandboxes a pool holds besides those running a job
// (prepared, being prepared, and being destroyed after their job, in the background) are at
// most its size and one: a job's sandbox is destroyed after Run returns, and a filler that
// refilled while the last jobs' sandboxes were still being destroyed held more sandboxes,
// spill areas and all, than the disk was sized for (launch's fitSpill counts the workers, the
// pool and one). Here the destroys are held back until two jobs have ended with a pool of
// one: the filler may prepare one beside one sandbox being destroyed, not beside two.
func TestPoolBoundWhileDestroying(t *testing.T) {
	r := newRuntime(t)
	gate := make(chan struct{})
	type check struct {
		ready, dying int
		prepares     bool
	}
	checks := make(chan check, 64)
	p, err := r.NewPool(Template{Args: payload("job")}, 0) // filled below, once the hooks are set
	if err != nil {
		t.Fatal(err)
	}
	p.destroyGate = gate
	p.onCheck = func(ready, dying int, prepares bool) {
		select {
		case checks <- check{ready, dying, prepares}:
		default:
		}
	}
	p.size, p.ready = 1, make(chan *box, 1)
	p.filler.Add(1)
	go p.fill()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertCleanPrefix(t, r, containerPrefix+poolPrefix+p.tag+"-")
	})
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	defer release()
	// drain reads the filler's checks up to the one where it stops preparing.
	drain := func(when string) {
		t.Helper()
		for c := range checks {
			if c.prepares && c.ready+c.dying > 1 {
				t.Errorf("%s: the filler prepared a sandbox with %d ready and %d being destroyed, in a pool of 1", when, c.ready, c.dying)
			}
			if !c.prepares {
				return
			}
		}
	}
	drain("at the start")
	for job := 1; job <= 2; job++ {
		if res, _ := poolRun(t, p, nil, "echo", "x"); res.Status != StatusOK {
			t.Fatalf("job %d: %s", job, res.Status)
		}
		drain(map[int]string{1: "after a job", 2: "after two jobs whose sandboxes are still being destroyed"}[job])
	}
	release()
	waitReady(t, p, 1)
}
