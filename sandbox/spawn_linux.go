package sandbox

import (
	"context"
	"runtime"
	"sync"
)

// Containers are started with PR_SET_PDEATHSIG=SIGKILL, so that a daemon
// killed with -9 takes its jobs with it instead of leaving them running
// unsupervised until the next Cleanup. The kernel sends that signal when the
// *thread* that forked the container's init exits, and libcontainer ends
// threads on purpose (a goroutine that setns(2)es into a container's mount
// namespace locks its thread and returns, see process_linux.go), so a plain
// goroutine could fork from a thread that is later torn down and kill a
// healthy job (seen as "can't copy bootstrap data to pipe: broken pipe").
// Starts therefore run on a few goroutines locked to their threads for the
// life of the process: no other goroutine can ever run on those threads, so
// they never exit.
const spawnThreads = 8

var (
	spawnOnce sync.Once
	spawnCh   chan func()
)

// onSpawnThread runs f on a dedicated, never-exiting OS thread.
func onSpawnThread(ctx context.Context, f func() error) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan func())
		for i := 0; i < spawnThreads; i++ {
			go func() {
				runtime.LockOSThread() // never unlocked: see above
				for g := range spawnCh {
					g()
				}
			}()
		}
	})
	done := make(chan error, 1)
	select {
	case spawnCh <- func() { done <- f() }:
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-done
}
