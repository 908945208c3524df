package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer/utils"
)

// RunLocal runs spec as a plain child process with the same file descriptor
// layout as Run (stdin on 0, captured 1 and 2, result pipe on 3) and the same
// wall-clock, result and output limits, but no isolation: Args[0] is a host
// path, Mounts are ignored, memory, pids and CPU are not limited. It is for
// development, tests and as the benchmark baseline, never for prod jobs.
func RunLocal(ctx context.Context, spec Spec, result io.Writer) (*Result, error) {
	if len(spec.Args) == 0 {
		return nil, fmt.Errorf("%w: no Args", ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	called := time.Now()
	l := spec.Limits.withDefaults()
	rpipe, wpipe, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer rpipe.Close()
	stdout := &boundedBuffer{max: l.OutputBytes}
	stderr := &boundedBuffer{max: l.OutputBytes, tail: true}
	cmd := exec.Command(spec.Args[0], spec.Args[1:]...)
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdin = bytes.NewReader(spec.Stdin)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.ExtraFiles = []*os.File{wpipe}
	// Its own process group, so a timeout kills what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Descriptors this process inherited without O_CLOEXEC would otherwise
	// reach the job (libcontainer does the same before each container start).
	if err := utils.CloseExecFrom(3); err != nil {
		return nil, fmt.Errorf("mark descriptors close-on-exec: %w", err)
	}
	start := time.Now()
	err = cmd.Start()
	wpipe.Close()
	if err != nil {
		return nil, fmt.Errorf("start local job: %w", err)
	}
	setup := time.Since(called)
	var o outcome
	var kill sync.Once
	stop := func(why *bool) {
		kill.Do(func() {
			*why = true
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		})
	}
	copyDone := make(chan error, 1)
	go func() {
		_, err := copyResult(result, rpipe, l.ResultBytes)
		if errors.Is(err, errResultTooLarge) {
			stop(&o.tooLarge)
		}
		copyDone <- err
	}()
	waitDone := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(waitDone)
	}()
	timer := time.NewTimer(l.Wall)
	defer timer.Stop()
wait:
	for {
		select {
		case <-waitDone:
			break wait
		case <-timer.C:
			stop(&o.timedOut)
		case <-ctx.Done():
			stop(&o.cancelled)
		}
	}
	wall := time.Since(start)
	// Children that outlived the job and still hold fd 3 are killed with
	// the group; then the copy ends.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case err := <-copyDone:
		if err != nil && !errors.Is(err, errResultTooLarge) {
			o.resultFailed = true
		}
	case <-time.After(wallGraceMax):
		rpipe.Close()
		o.resultFailed = true
	}
	ps := cmd.ProcessState
	o.exitCode = exitCode(ps)
	u := Usage{Wall: wall, CPU: ps.UserTime() + ps.SystemTime()}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		u.PeakMemoryBytes = ru.Maxrss * 1024
	}
	status := o.decide()
	return &Result{
		Status:   status,
		ExitCode: o.exitCode,
		Usage:    u,
		Stdout:   stdout.Bytes(),
		Stderr:   stderr.Bytes(),
		Message:  message(status, l, o.exitCode),
		Timing:   Timing{Start: setup},
	}, nil
}
