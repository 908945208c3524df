package launch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/veil-dp/veil/sandbox"
)

type kindKey struct{}

// ForKind marks ctx as the run of a job of kind, so that its sandboxes are counted under it
// (Launcher.OnStart).
func ForKind(ctx context.Context, kind string) context.Context {
	return context.WithValue(ctx, kindKey{}, kind)
}

type storedKey struct{}

// AfterStored marks ctx as the run of a job whose start is being written to disk: the
// launcher calls wait, and goes on only if it returns nil, before it hands the job to a
// sandbox. The job then never runs before its start is durable, so that a job that takes
// the machine down with it is failed after the restart (jobs recover), not queued and run
// again. wait must be safe to call more than once and from several goroutines.
func AfterStored(ctx context.Context, wait func() error) context.Context {
	return context.WithValue(ctx, storedKey{}, wait)
}

// stored waits for ctx's AfterStored, if any.
func stored(ctx context.Context) error {
	wait, ok := ctx.Value(storedKey{}).(func() error)
	if !ok {
		return nil
	}
	if err := wait(); err != nil {
		return fmt.Errorf("the job's start could not be written to disk, so it does not run: %w", err)
	}
	return nil
}

// started tells OnStart that a sandbox of ctx's run started.
func (l *Launcher) started(ctx context.Context, res *sandbox.Result) {
	if l.OnStart == nil || res == nil {
		return
	}
	kind, _ := ctx.Value(kindKey{}).(string)
	l.OnStart(kind, res.Setup())
}

// probeEvery bounds how often Probe starts a sandbox: readiness checks may come every
// second, a sandbox costs tens of milliseconds and a cgroup.
const probeEvery = 10 * time.Second

// prober remembers the last probe.
type prober struct {
	mu   sync.Mutex
	at   time.Time
	last error
}

// Probe reports whether a sandbox can be created and started now, for the readiness check:
// with container isolation it starts one (the runner, given no job, exits at once), at most
// once per probeEvery, and answers the last result in between. Process isolation has
// nothing to create.
func (l *Launcher) Probe(ctx context.Context) error {
	if l.rt == nil {
		return nil
	}
	l.probe.mu.Lock()
	defer l.probe.mu.Unlock()
	if !l.probe.at.IsZero() && time.Since(l.probe.at) < probeEvery {
		return l.probe.last
	}
	var b [6]byte
	rand.Read(b[:])
	spec := sandbox.Spec{ID: "probe-" + hex.EncodeToString(b[:]), Limits: limits(l.cfg)}
	// No spill area: it runs no job, and making one is a file system made and removed.
	spec.Limits.Wall, spec.Limits.SpillBytes = 10*time.Second, 0
	spec.Args = l.runnerArgs("/veil", spec.Limits)
	// A caller that goes away must not leave a failure cached for the next one.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*spec.Limits.Wall)
	defer cancel()
	// The runner fails on its empty input: what is probed is that the sandbox starts.
	_, err := l.rt.Run(ctx, spec, io.Discard)
	if err != nil {
		err = fmt.Errorf("%w: cannot start a sandbox: %v", ErrUnavailable, err)
	}
	l.probe.at, l.probe.last = time.Now(), err
	return err
}
