package sandbox

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fifoReader reads a container's exec fifo as anything that reads every file under the
// daemon's data directory does (TestFusion's and TestHE's scans for leaked values did, and
// hung the daemon's Close): a blocking open, then a read to the end. Close unblocks the
// reads still waiting for a writer, once the starts they raced are over.
type fifoReader struct {
	mu    sync.Mutex
	seen  map[string]bool
	fds   []int // O_PATH descriptors of the fifos being read
	wg    sync.WaitGroup
	stole int // how many reads got the init's byte
}

// read starts reading the fifo at path (once per path).
func (f *fifoReader) read(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	if f.seen[path] {
		return
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	f.seen[path] = true
	f.fds = append(f.fds, fd)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		b, err := os.ReadFile("/proc/self/fd/" + strconv.Itoa(fd))
		if err == nil && len(b) > 0 {
			f.mu.Lock()
			f.stole++
			f.mu.Unlock()
		}
	}()
}

// Stole is how many reads took an init's byte.
func (f *fifoReader) Stole() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stole
}

// Close ends the reads: a writer that comes and goes releases a blocked open.
func (f *fifoReader) Close() {
	f.mu.Lock()
	fds := f.fds
	f.mu.Unlock()
	for _, fd := range fds {
		if w, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
			unix.Close(w)
		}
	}
	f.wg.Wait()
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// watchFifo reads the exec fifo of container cid as soon as it exists, until stop.
func watchFifo(r *Runtime, cid string, f *fifoReader, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	path := filepath.Join(r.containersDir, cid, execFifo)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
				f.read(path)
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	return done
}

// A job starts when another process on the host reads its container's exec fifo first:
// libcontainer's Run then waited for good (or, for a job that had already exited, failed
// with "container process is already dead").
func TestExecFifoReadByAnother(t *testing.T) {
	r := newRuntime(t)
	var f fifoReader
	for attempt := 0; attempt < 10 && f.Stole() == 0; attempt++ {
		id := jobID(t)
		stop := make(chan struct{})
		watched := watchFifo(r, containerPrefix+id, &f, stop)
		res, err := r.Run(context.Background(), Spec{ID: id, Args: payload("true")}, io.Discard)
		close(stop)
		<-watched
		if err != nil {
			f.Close()
			t.Fatalf("Run with the exec fifo read by another process (that read got the init's byte: %v): %v", f.Stole() > 0, err)
		}
		if res.Status != StatusOK {
			t.Errorf("status %s exit %d stderr %q", res.Status, res.ExitCode, res.Stderr)
		}
	}
	f.Close()
	if f.Stole() == 0 {
		t.Fatal("in 10 starts the other reader never got the init's byte: this test did not test anything")
	}
	assertClean(t, r)
}

// The same for a sandbox prepared ahead, whose runner waits for its job: the start used to
// hang until the pool's Close, which then waited on it for good.
func TestPoolExecFifoReadByAnother(t *testing.T) {
	r := newRuntime(t)
	var f fifoReader
	defer f.Close()
	for attempt := 0; attempt < 10 && f.Stole() == 0; attempt++ {
		p, err := r.NewPool(Template{Args: payload("job")}, 1)
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		watched := watchFifo(r, containerPrefix+poolPrefix+p.tag+"-1", &f, stop)
		waitReady(t, p, 1)
		close(stop)
		<-watched
		if n := p.seq.Load(); n != 1 {
			t.Errorf("the pool made %d sandboxes to have one ready: the start of the first failed", n)
		}
		res, _ := poolRun(t, p, nil, "true")
		if res.Status != StatusOK || !res.Timing.Ahead {
			t.Errorf("status %s ahead %v, want ok from the sandbox prepared ahead", res.Status, res.Timing.Ahead)
		}
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertCleanPrefix(t, r, containerPrefix+poolPrefix+p.tag+"-")
	}
	if f.Stole() == 0 {
		t.Fatal("in 10 starts the other reader never got the init's byte: this test did not test anything")
	}
}

// TestPoolStress hammers pooled starts: pools opened and closed over and over with their
// fillers mid-start, jobs taken from them at once (so that starts of prepared and
// on-demand sandboxes overlap), two pools at a time, Close during prepare, the CPU kept
// busy, and the state directory scanned all along by a reader of every fifo in it. Every
// Close must return and every sandbox be destroyed. VEIL_POOL_STRESS sets the number of
// cycles (default 6).
func TestPoolStress(t *testing.T) {
	r := newRuntime(t)
	cycles := 6
	if s := os.Getenv("VEIL_POOL_STRESS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("VEIL_POOL_STRESS=%q: give a number of cycles", s)
		}
		cycles = n
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	for range runtime.NumCPU() {
		bg.Add(1)
		go func() {
			defer bg.Done()
			for x := 0; ; x++ {
				if x%(1<<20) == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
			}
		}()
	}
	var f fifoReader
	bg.Add(1)
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ents, _ := os.ReadDir(r.containersDir)
			for _, e := range ents {
				path := filepath.Join(r.containersDir, e.Name(), execFifo)
				if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
					f.read(path)
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	defer func() {
		close(stop)
		bg.Wait()
		f.Close()
		t.Logf("another reader got the init's byte in %d starts", f.Stole())
	}()

	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for c := 0; c < cycles; c++ {
				p, err := r.NewPool(Template{Args: payload("job")}, 2)
				if err != nil {
					t.Error(err)
					return
				}
				switch rnd.IntN(3) {
				case 0: // Close while the filler is preparing the first sandbox
				case 1: // Close while it may be preparing the second
					time.Sleep(time.Duration(rnd.IntN(200)) * time.Millisecond)
				case 2: // jobs at once: some from the pool, some prepared on demand
					var jobs sync.WaitGroup
					for range 3 {
						jobs.Add(1)
						go func() {
							defer jobs.Done()
							res, err := p.Run(context.Background(), Spec{ID: jobID(t), Stdin: []byte("true")}, io.Discard)
							if err != nil {
								t.Errorf("pool Run: %v", err)
							} else if res.Status != StatusOK {
								t.Errorf("pool Run: status %s exit %d stderr %q", res.Status, res.ExitCode, res.Stderr)
							}
						}()
					}
					jobs.Wait()
				}
				if err := p.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				assertCleanPrefix(t, r, containerPrefix+poolPrefix+p.tag+"-")
			}
		}()
	}
	wg.Wait()
}

// A start returns once the job's program runs, not while the init is still in its execve:
// a job handed over in that window found no /proc/PID/root ("open the container's root:
// no such file or directory", seen in TestKill9DuringJob and TestFusion).
func TestStartReturnsOnceTheProgramRuns(t *testing.T) {
	r := newRuntime(t)
	p, err := r.NewPool(Template{Args: payload("job")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < 20; i++ {
		b, err := p.prepare(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		comm := procComm(b.pid)
		root, rootErr := unix.Open("/proc/"+strconv.Itoa(b.pid)+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if rootErr == nil {
			unix.Close(root)
		}
		p.discard(b)
		if comm == initComm || rootErr != nil {
			t.Fatalf("start %d returned with its init named %q, its root: %v", i, comm, rootErr)
		}
	}
}
