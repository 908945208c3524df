package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

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

// TestSpillReserveSkipsTheDead: a spill area whose container's processes are gone can
// grow no more, so the room the disk keeps for live areas no longer counts it: jobs'
// sandboxes destroyed in the background (as many as the jobs that ended just now) took the
// room of areas at their full size until they were removed, and a new sandbox was refused
// for room no one would ever use.
func TestSpillReserveSkipsTheDead(t *testing.T) {
	r := newRuntime(t)
	var st unix.Statfs_t
	if err := unix.Statfs(r.spillDir(), &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	// An area of a container being destroyed, as large as the disk's free space.
	dead := &spillFS{image: filepath.Join(r.spillDir(), "none.img"), size: free}
	if err := r.reserve(dead); err != nil {
		t.Fatal(err)
	}
	defer dead.remove()
	small := &spillFS{image: filepath.Join(r.spillDir(), "small.img"), size: 1 << 20}
	if err := r.reserve(small); err == nil {
		t.Fatal("the disk's room was not reserved for a live area")
	}
	dead.freeze()
	if err := r.reserve(small); err != nil {
		t.Errorf("a new area beside one whose container is gone: %v", err)
	}
	small.remove()
}

// TestSpillStillMountedStaysReserved: a spill area that could not be unmounted (a process
// of its container still holds it: destroying the container failed) is still on the disk
// and may still grow; removing it must not drop it from the room the disk keeps for live
// areas, or the next area could be given the disk the daemon's store needs. It stays
// reserved, and a later removal, once nothing holds it, frees it.
func TestSpillStillMountedStaysReserved(t *testing.T) {
	r := newRuntime(t)
	if r.spillErr != nil {
		t.Skipf("skipping: %v", r.spillErr)
	}
	s, err := r.makeSpill(context.Background(), containerPrefix+"held", 16<<20, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	held, err := os.Create(filepath.Join(s.dir, "held"))
	if err != nil {
		s.remove()
		t.Fatal(err)
	}
	if err := s.remove(); err == nil {
		t.Error("removing a spill area a process holds open: no error")
	}
	r.spills.mu.Lock()
	live := r.spills.live[s]
	r.spills.mu.Unlock()
	if !mounted(s.dir) {
		t.Fatal("the held spill area was unmounted")
	}
	if !live {
		t.Error("a spill area still mounted (and writable by whoever holds it) no longer counts against the disk")
	}
	held.Close()
	if err := s.remove(); err != nil {
		t.Fatalf("removing it once nothing holds it: %v", err)
	}
	r.spills.mu.Lock()
	n := len(r.spills.live)
	r.spills.mu.Unlock()
	if n != 0 || mounted(s.dir) {
		t.Errorf("after the second removal: %d live areas, mounted %v", n, mounted(s.dir))
	}
	assertClean(t, r)
}
