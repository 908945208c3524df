package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Template is what every sandbox of a Pool runs: the program, its environment and its
// limits. Only a job's id, stdin and mounts differ from one job to the next.
//
// The program starts when its sandbox is prepared, long before its job is known, so it
// must read its stdin to the end before it touches anything of the job: the job's mounts
// are attached, and its stdin written, when the sandbox is handed the job. The Veil
// runner does exactly that (and opens DuckDB while it waits).
type Template struct {
	Args   []string // Args[0] is where the job binary is mounted; runtime images are not pooled
	Env    []string
	Limits Limits
}

// Pool keeps sandboxes of one Template prepared ahead: root skeleton, spill area,
// cgroups, namespaces, seccomp and the program itself started and waiting for its stdin,
// at the least CPU share so that preparing never slows a running job. Run hands a job to
// one of them: its mounts are attached (read-only unless Writable, nosuid, nodev, noexec
// unless Exec), its stdin written, its CPU share raised. Every sandbox runs exactly one
// job and is destroyed after it; a sandbox is never reused, so nothing of one job can be
// seen by another. When no sandbox is ready, Run prepares one itself.
//
// Run is safe for concurrent use. Close destroys the sandboxes not yet used and waits for
// those being destroyed.
type Pool struct {
	r    *Runtime
	t    Template
	l    Limits
	size int
	tag  string // names this pool's containers: veil-pool-<tag>-<n>
	seq  atomic.Int64

	ready chan *box
	wake  chan struct{}

	// What Stats reports.
	startedAhead, startedOnDemand, failed atomic.Int64

	// dying counts the sandboxes being destroyed in the background (discard).
	dying atomic.Int64
	// Tests only: destroys wait for destroyGate to be closed; onCheck sees each decision
	// of the filler.
	destroyGate chan struct{}
	onCheck     func(ready, dying int, prepares bool)
	// Tests only: onQuiet sees each time the filler waits for the pool's jobs to end
	// before it prepares, with the number ready and running then.
	onQuiet func(ready, running int)

	// quietMax bounds how long the filler, and the destroy of a used sandbox, wait for
	// no job of the pool to be running (see waitQuiet); settle is how long none must have
	// run (quietMax, settle: tests may change them before the first job).
	quietMax, settle time.Duration
	// deferred counts the destroys waiting in waitQuiet (at most maxDeferred).
	deferred atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	filler sync.WaitGroup
	reaper sync.WaitGroup

	runs sync.WaitGroup

	mu     sync.Mutex
	closed bool
	// running counts the jobs holding a sandbox of the pool; idleSince is when it last
	// fell to 0; changed is closed, and replaced, each time running changes.
	running   int
	idleSince time.Time
	changed   chan struct{}
	errs      []error // teardown failures, reported by Close
	// lastPrepare is the last error of preparing a sandbox ahead (nil after a success);
	// Run then prepares its own and reports the error if it fails again.
	lastPrepare error
}

// poolPrefix names the containers of pools (after containerPrefix); their job is recorded
// at hand-over (see jobMarker).
const poolPrefix = "pool-"

// NewPool starts keeping size sandboxes of t prepared ahead (size 0: none; Run then
// prepares each sandbox when its job comes, as Runtime.Run does).
func (r *Runtime) NewPool(t Template, size int) (*Pool, error) {
	if size < 0 || size > 64 {
		return nil, fmt.Errorf("%w: pool size %d must be between 0 and 64", ErrInvalid, size)
	}
	t.Args, t.Env = slices.Clone(t.Args), slices.Clone(t.Env)
	check := Spec{ID: "pool", Args: t.Args, Env: t.Env, Limits: t.Limits}
	if err := r.checkSpec(&check); err != nil {
		return nil, err
	}
	if t.Limits.SpillBytes > 0 && r.spillErr != nil {
		return nil, r.spillErr
	}
	var tag [4]byte
	if _, err := rand.Read(tag[:]); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{r: r, t: t, l: t.Limits.withDefaults(), size: size, tag: hex.EncodeToString(tag[:]),
		ready: make(chan *box, size), wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		quietMax: quietMax, settle: settle, changed: make(chan struct{})}
	if size > 0 {
		p.filler.Add(1)
		go p.fill()
	}
	return p, nil
}

// fill keeps the pool full, one sandbox at a time. After a failure it waits before trying
// again, so a host that cannot make sandboxes is not hammered.
func (p *Pool) fill() {
	defer p.filler.Done()
	backoff := 100 * time.Millisecond
	for {
		for p.wants() {
			p.waitQuiet(p.low)
			if p.ctx.Err() != nil {
				return
			}
			if !p.wants() { // a destroy deferred beside it may have counted, or Close came
				break
			}
			b, err := p.prepare(p.ctx, true)
			p.mu.Lock()
			p.lastPrepare = err
			p.mu.Unlock()
			if err != nil {
				if p.ctx.Err() != nil {
					return
				}
				select {
				case <-time.After(backoff):
					backoff = min(2*backoff, 10*time.Second)
					continue
				case <-p.ctx.Done():
					return
				}
			}
			backoff = 100 * time.Millisecond
			select {
			case p.ready <- b:
			case <-p.ctx.Done():
				p.discard(b)
				return
			}
		}
		select {
		case <-p.wake:
		case <-p.ctx.Done():
			return
		}
	}
}

// wants says whether the filler prepares another sandbox now: while fewer than size are
// ready, and no more than one besides them and the one it would prepare is being destroyed.
// A job's sandbox is destroyed after its Run returns, in the background; without the second
// bound, sandboxes (and their spill areas) being destroyed added to a full pool without
// limit while destroys lagged, beyond what the disk was sized for (launch's fitSpill counts
// the workers, the pool and one).
func (p *Pool) wants() bool {
	ready, dying := len(p.ready), int(p.dying.Load())
	ok := ready < p.size && ready+dying <= p.size
	if p.onCheck != nil {
		p.onCheck(ready, dying, ok)
	}
	return ok
}

// quietMax and settle are the defaults of Pool.quietMax and Pool.settle. Preparing a
// sandbox (about 40 ms of CPU, part of it in the daemon's process) and destroying a used
// one (its spill area's removal waits on the disk) beside a running job slowed that job:
// back to back one-row DP jobs took 1.5 times as long in their sandbox as settled ones,
// and as long as settled with both moved past the next job (bench/RESULTS.md, onerow4).
// A pool that merely waited for no job to run would start in the gap between two jobs sent
// back to back and run beside the second: none must have run for settle. That gap is the
// daemon's part of a job (the first's output and review queue, the vendor's next
// submission, its validation and queue: 8-40 ms, more on a loaded host), so settle is a few
// times that. quietMax keeps a host that is never idle refilling.
const (
	quietMax = time.Second
	settle   = 250 * time.Millisecond
)

// maxDeferred bounds the used sandboxes whose destroy waits for the pool to be quiet; the
// others are destroyed at once. Their processes are gone, so they hold no CPU or memory;
// their spill areas stay on the disk until they go, and launch sizes the disk for one
// besides the workers and the pool.
const maxDeferred = 1

// low says whether the pool is running low: fewer than half its size ready. The filler
// then prepares at once, beside the running jobs, rather than have the next job wait for
// a sandbox prepared on demand.
func (p *Pool) low() bool { return 2*len(p.ready) < p.size }

// waitQuiet returns once no job of the pool has run for p.settle, once p.quietMax has
// passed, once urgent (if not nil) says so, or once the pool is closing.
func (p *Pool) waitQuiet(urgent func() bool) {
	deadline := time.Now().Add(p.quietMax)
	told := false
	for {
		if urgent != nil && urgent() {
			return
		}
		p.mu.Lock()
		running, since, changed := p.running, p.idleSince, p.changed
		p.mu.Unlock()
		now := time.Now()
		wait := deadline.Sub(now)
		if running == 0 {
			wait = min(wait, p.settle-now.Sub(since))
		}
		if wait <= 0 {
			return
		}
		if urgent != nil && !told && p.onQuiet != nil {
			told = true
			p.onQuiet(len(p.ready), running)
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-p.ctx.Done():
		}
		t.Stop()
		if p.ctx.Err() != nil {
			return
		}
	}
}

// jobs adds d to the number of running jobs and tells those in waitQuiet.
func (p *Pool) jobs(d int) {
	p.mu.Lock()
	p.running += d
	if p.running == 0 {
		p.idleSince = time.Now()
	}
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// prepareTimeout bounds the start of a sandbox prepared ahead (normally tens of ms).
const prepareTimeout = 2 * time.Minute

// prepare creates and starts one sandbox whose program waits for its stdin.
func (p *Pool) prepare(ctx context.Context, ahead bool) (_ *box, err error) {
	defer func() {
		if err != nil && ctx.Err() == nil { // not the pool's Close, or the job's caller, ending it
			p.failed.Add(1)
		}
	}()
	cid := fmt.Sprintf("%s%s%s-%d", containerPrefix, poolPrefix, p.tag, p.seq.Add(1))
	spec := Spec{ID: cid, Args: p.t.Args, Env: p.t.Env, Limits: p.l}
	b, err := p.r.create(ctx, cid, &spec, p.l, nil, ahead)
	if err != nil {
		return nil, err
	}
	stdin, w, err := os.Pipe()
	if err != nil {
		return nil, errors.Join(err, b.destroy())
	}
	sctx := ctx
	if ahead {
		// A start that has not finished in this long is not going to: kill it and try
		// again (fill backs off) rather than hold a slot of the pool and its Close.
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeout(ctx, prepareTimeout)
		defer cancel()
	}
	err = b.start(sctx, p.t.Args, p.t.Env, stdin)
	stdin.Close() // the container holds it now
	if err != nil {
		w.Close()
		return nil, errors.Join(err, b.destroy())
	}
	if ahead {
		p.startedAhead.Add(1)
	} else {
		p.startedOnDemand.Add(1)
	}
	b.stdin = w
	return b, nil
}

// take returns a sandbox for a job: a ready one whose program is still waiting, or one
// prepared now.
func (p *Pool) take(ctx context.Context) (*box, bool, error) {
	for {
		select {
		case b := <-p.ready:
			select {
			case <-b.waitDone: // its program died while it waited: never hand it a job
				p.discard(b)
				continue
			default:
				return b, true, nil
			}
		default:
		}
		b, err := p.prepare(ctx, false)
		if err != nil {
			p.mu.Lock()
			if p.lastPrepare != nil {
				err = fmt.Errorf("%w (preparing ahead failed too: %v)", err, p.lastPrepare)
			}
			p.mu.Unlock()
		}
		return b, false, err
	}
}

// Run runs one job in a sandbox of the pool and has that sandbox destroyed after it. spec
// gives the job's ID, Stdin and Mounts; its Args, Env and Limits must be empty or those of
// the pool's Template, and it has no Image. Results are as Runtime.Run's; Timing says
// whether the sandbox was prepared ahead. When Run returns, the job's processes are gone;
// the rest of its sandbox (cgroups, state, spill area, skeleton) is removed right after,
// in the background (Close waits for it).
func (p *Pool) Run(ctx context.Context, spec Spec, result io.Writer) (*Result, error) {
	if err := p.checkSpec(&spec); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: the sandbox pool is closed", ErrUnavailable)
	}
	p.runs.Add(1)
	p.mu.Unlock()
	defer p.runs.Done()
	t0 := time.Now()
	b, ahead, err := p.take(ctx)
	if err != nil {
		if ctx.Err() != nil { // the caller ended it while its sandbox started
			return killedAtStart(p.l), nil
		}
		return nil, err
	}
	// The pool is refilled after the job rather than while it runs: on a busy host,
	// preparing the next sandbox would take CPU from this job (and the filler waits for
	// the pool to be quiet, see waitQuiet). The job's sandbox is discarded first, so that
	// the filler counts it among those being destroyed.
	p.jobs(1)
	defer func() {
		p.jobs(-1)
		p.discard(b)
		p.refill()
	}()
	t1 := time.Now()
	base, err := p.handoff(b, &spec)
	if err != nil {
		return nil, fmt.Errorf("hand job %s to sandbox %s: %w", spec.ID, b.cid, err)
	}
	defer func() {
		if base.peak != nil {
			base.peak.Close()
		}
	}()
	t2 := time.Now()
	res, err := b.supervise(ctx, result, base)
	if err != nil {
		return nil, err
	}
	res.Timing.Ahead = ahead
	if !ahead {
		res.Timing.Prepare = t1.Sub(t0) // create and start, waited for
	}
	res.Timing.Handoff = t2.Sub(t1)
	return res, nil
}

// handoff gives a prepared sandbox its job: records the job's id for Cleanup, attaches its
// mounts, resets the usage it is metered for, raises its CPU share and writes its stdin.
func (p *Pool) handoff(b *box, spec *Spec) (usageMark, error) {
	if err := os.WriteFile(p.r.jobMarker(b.cid), []byte(spec.ID), 0o600); err != nil {
		return usageMark{}, err
	}
	b.marked = true
	for _, m := range spec.Mounts {
		fi, err := os.Stat(m.Source)
		if err != nil {
			return usageMark{}, fmt.Errorf("mount source: %w", err)
		}
		if err := b.skel.mountPoint(b.rootfs, m.Destination, fi.IsDir()); err != nil {
			return usageMark{}, err
		}
	}
	if err := attach(b.pid, spec.Mounts); err != nil {
		return usageMark{}, err
	}
	base := b.mark()
	b.setCPUWeight(false)
	in, w := spec.Stdin, b.stdin
	b.stdin = nil
	go func() {
		// Fails with EPIPE, and ends, if the job exits without reading it all.
		_, _ = w.Write(in)
		w.Close()
	}()
	return base, nil
}

// refill wakes the filler.
func (p *Pool) refill() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// discard has b destroyed in the background: a used sandbox, once the pool is quiet (see
// waitQuiet; at most maxDeferred of them wait).
func (p *Pool) discard(b *box) {
	if b.stdin != nil {
		b.stdin.Close()
		b.stdin = nil
	}
	p.reaper.Add(1)
	p.dying.Add(1)
	go func() {
		defer p.reaper.Done()
		if p.destroyGate != nil {
			<-p.destroyGate
		}
		if b.marked && p.size > 0 && ended(b) { // a pool of none defers nothing, as Runtime.Run
			if p.deferred.Add(1) <= maxDeferred {
				if b.spill != nil {
					b.spill.freeze() // its job's processes are gone: it grows no more
				}
				p.waitQuiet(nil)
			}
			p.deferred.Add(-1)
		}
		err := b.destroy()
		p.dying.Add(-1)
		p.refill() // the filler may have waited for this one to go
		if b.marked {
			if rerr := os.Remove(p.r.jobMarker(b.cid)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		if err != nil {
			p.mu.Lock()
			p.errs = append(p.errs, err)
			p.mu.Unlock()
		}
	}()
}

// ended says whether b's program has exited (and with it, its pid namespace's processes).
func ended(b *box) bool {
	select {
	case <-b.waitDone:
		return true
	default:
		return false
	}
}

func (p *Pool) checkSpec(spec *Spec) error {
	if spec.Image != "" {
		return fmt.Errorf("%w: runtime images are not pooled; use Runtime.Run", ErrInvalid)
	}
	if spec.Args != nil && !slices.Equal(spec.Args, p.t.Args) {
		return fmt.Errorf("%w: Args differ from the pool's template", ErrInvalid)
	}
	if spec.Env != nil && !slices.Equal(spec.Env, p.t.Env) {
		return fmt.Errorf("%w: Env differs from the pool's template", ErrInvalid)
	}
	if spec.Limits != (Limits{}) && !reflect.DeepEqual(spec.Limits.withDefaults(), p.l) {
		return fmt.Errorf("%w: Limits differ from the pool's template", ErrInvalid)
	}
	spec.Args, spec.Env, spec.Limits = p.t.Args, p.t.Env, p.l
	return p.r.checkSpec(spec)
}

// Close stops preparing sandboxes, destroys the ready ones and waits until every sandbox
// the pool handed out has been destroyed. It returns the errors of those destructions.
// Runs still going on finish first.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.runs.Wait()
	p.cancel()
	p.filler.Wait()
	for {
		select {
		case b := <-p.ready:
			p.discard(b)
			continue
		default:
		}
		break
	}
	p.reaper.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

// Ready is how many sandboxes are prepared and waiting for a job.
func (p *Pool) Ready() int { return len(p.ready) }

// PoolStats is what a Pool has done since it was made.
type PoolStats struct {
	Ready           int   // sandboxes prepared and waiting for a job now
	StartedAhead    int64 // sandboxes started ahead of their job
	StartedOnDemand int64 // started when their job came and none was ready
	Failed          int64 // starts that failed (not counting those the pool's Close ended)
}

// Stats returns what the pool has done so far.
func (p *Pool) Stats() PoolStats {
	return PoolStats{Ready: len(p.ready), StartedAhead: p.startedAhead.Load(), StartedOnDemand: p.startedOnDemand.Load(), Failed: p.failed.Load()}
}
