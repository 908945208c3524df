package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// box is one container from its creation to its destruction. Run creates, starts,
// supervises and destroys one at once; a Pool creates and starts boxes ahead and hands
// each one job.
type box struct {
	r       *Runtime
	cid     string
	rootfs  string
	uid     int64    // the host uid and gid of the container's root
	owner   *hostUID // holds uid for this container until it is destroyed
	l       Limits
	skel    *skeleton
	spill   *spillFS
	c       *libcontainer.Container
	cpuDir  string // the CPU cgroup made ahead of the start (lowCPUCgroup), if any
	cpuIdle bool   // cpuDir is an idle cgroup (cpu.idle 1) until the hand-over

	// Set by start.
	p              *libcontainer.Process
	rpipe          *os.File // read end of the result pipe (fd 3 of the job)
	stdout, stderr *boundedBuffer
	paths          map[string]string // cgroup paths
	pid            int               // the container's init (the job), in the host's pid namespace
	waitDone       chan *os.ProcessState

	// Prepared ahead (Pool) only.
	stdin  *os.File // write end of the job's stdin, until the hand-over
	marked bool     // its job is recorded (jobMarker)

	destroyOnce sync.Once
	destroyErr  error
}

// create makes a container for spec: its root skeleton with mount points for mounts (the
// job's mounts when they are known now, none for a sandbox prepared ahead), its spill area
// and its libcontainer state and cgroups. On error everything made is removed.
func (r *Runtime) create(ctx context.Context, cid string, spec *Spec, l Limits, mounts []Mount, ahead bool) (_ *box, err error) {
	b := &box{r: r, cid: cid, rootfs: filepath.Join(r.rootfsDir, cid), l: l}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.destroy())
		}
	}()
	if b.owner, err = r.allocUID(); err != nil {
		return b, err
	}
	b.uid = b.owner.id
	onImage := *spec
	onImage.Mounts = mounts
	if ahead {
		// First, so that formatting the spill area runs in it too.
		b.lowCPUCgroup()
	}
	if b.skel, err = r.makeRootfs(b.rootfs, &onImage); err != nil {
		return b, fmt.Errorf("create root filesystem of %s: %w", cid, err)
	}
	if l.SpillBytes > 0 {
		if b.spill, err = r.makeSpill(ctx, cid, l.SpillBytes, b.uid, b.cpuDir); err != nil {
			return b, fmt.Errorf("create spill area of %s: %w", cid, err)
		}
		if err := b.skel.mountPoint(b.rootfs, SpillPath, true); err != nil {
			return b, err
		}
	}
	if b.c, err = libcontainer.Create(r.containersDir, cid, r.config(cid, b.rootfs, &onImage, l, b.skel, boxOptions{uid: b.uid, spill: b.spill, lowCPU: ahead, idleCPU: b.cpuIdle})); err != nil {
		return b, fmt.Errorf("create container %s: %w", cid, err)
	}
	return b, nil
}

// lowCPUCgroup makes the CPU cgroup of a box prepared ahead now, at the least share, so
// that its init joins it at that share: libcontainer applies the configured share only
// once the init has set up the container's root (the veil binary's start, namespaces,
// mounts: tens of milliseconds of CPU), which at the default share would take CPU from a
// job running beside it. Best effort: without it the sandbox is the same, only its
// preparation competes with running jobs for a while. The directory is libcontainer's
// own path, which it joins and later removes; destroy removes it if the box never started.
//
// Where the kernel has cpu.idle (5.15), the cgroup is also made an idle one: its tasks are
// scheduled as SCHED_IDLE against everything outside it, so a running job's thread that
// wakes takes the CPU from the preparing init, runner or mkfs at once, where at the least
// share alone a preparing task that has the CPU may keep it until its time slice ends (a
// millisecond or more). Measured beside a query, the two were alike (bench/RESULTS.md,
// onerow4's section): the preparation's part inside its cgroup costs a job 1-2 % either
// way. libcontainer then leaves the share alone (it cannot be written while the cgroup is
// idle) and sets cpu.idle again; setCPUWeight clears it at the hand-over.
func (b *box) lowCPUCgroup() {
	var dir, file, low string
	if b.r.cgroup2 {
		// A child has the cpu controller only when every ancestor delegates it.
		cur := "/sys/fs/cgroup"
		for _, e := range strings.Split(strings.Trim(b.r.cgroupParent, "/"), "/") {
			cur = filepath.Join(cur, e)
			if err := os.Mkdir(cur, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return
			}
			if err := os.WriteFile(filepath.Join(cur, "cgroup.subtree_control"), []byte("+cpu"), 0); err != nil {
				return
			}
		}
		dir, file, low = filepath.Join(cur, b.cid), "cpu.weight", "1"
	} else {
		mnt, err := cgroups.FindCgroupMountpoint("", "cpu")
		if err != nil {
			return
		}
		dir, file, low = filepath.Join(mnt, b.r.cgroupParent, b.cid), "cpu.shares", "2"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	b.cpuDir = dir
	_ = os.WriteFile(filepath.Join(dir, file), []byte(low), 0)
	b.cpuIdle = os.WriteFile(filepath.Join(dir, "cpu.idle"), []byte("1"), 0) == nil
}

// start starts the job's process with stdin on fd 0. It returns once the process runs.
func (b *box) start(ctx context.Context, args, env []string, stdin io.Reader) error {
	rpipe, wpipe, err := os.Pipe()
	if err != nil {
		return err
	}
	b.rpipe = rpipe
	b.stdout = &boundedBuffer{max: b.l.OutputBytes}
	b.stderr = &boundedBuffer{max: b.l.OutputBytes, tail: true}
	b.p = &libcontainer.Process{
		Args:       args,
		Env:        append(append([]string(nil), env...), pdeathsigEnv+"=1"),
		Cwd:        scratchPath,
		Stdin:      stdin,
		Stdout:     b.stdout,
		Stderr:     b.stderr,
		ExtraFiles: []*os.File{wpipe},
		Init:       true,
	}
	// Neither libcontainer's Start nor the wait for the exec fifo below watches ctx: a
	// start that does not finish is killed through its cgroup when ctx ends (defence in
	// depth: no such start is known since awaitExec). context.AfterFunc, not a goroutine
	// selecting on ctx and the start's end: that select, run late on a busy host, can find
	// both ready once a Pool's prepare has returned and cancelled its context, and then
	// kills a healthy sandbox half the time (its job fails: "open the container's root").
	stopWatch := context.AfterFunc(ctx, b.killCgroup)
	// Start, not Run: Run's wait for the exec fifo hangs for good when anything else on
	// the host reads the fifo first (see awaitExec).
	err = onSpawnThread(ctx, func() error { return b.c.Start(b.p) })
	if err == nil {
		err = b.awaitExec(ctx)
	}
	if !stopWatch() && err == nil {
		err = fmt.Errorf("killed as it started: %w", ctx.Err()) // the kill has run or runs now
	}
	if err != nil {
		b.killCgroup() // the init, if it is still there
	}
	wpipe.Close()
	if err != nil {
		return fmt.Errorf("start container %s: %w (stderr: %q)", b.cid, err, b.stderr.Bytes())
	}
	st, err := b.c.State()
	if err != nil {
		return fmt.Errorf("state of container %s: %w", b.cid, err)
	}
	b.paths, b.pid = st.CgroupPaths, st.InitProcessPid
	// A job's memory and CPU use as it runs depend on the data: its cgroups, and the
	// parent they are reached through, are root's alone (libcontainer makes them 0755).
	for _, p := range b.paths {
		_ = os.Chmod(filepath.Dir(p), 0o700)
		_ = os.Chmod(p, 0o700)
	}
	b.waitDone = make(chan *os.ProcessState, 1)
	go func() {
		ps, _ := b.p.Wait()
		b.waitDone <- ps
	}()
	return nil
}

// execFifo is the file in a container's libcontainer state directory that its init opens
// for writing, writes one byte to and closes right before it runs the job's program.
const execFifo = "exec.fifo"

// initComm is the name the container's init has (nsexec sets it) until it runs the job's
// program, which renames it.
const initComm = "runc:[2:INIT]"

// awaitExec lets the started container's init run the job's program and returns once it
// runs it (or has already exited), or with an error if the init died before. It replaces
// libcontainer's Run, which opens the exec fifo for reading, blocking, and waits for the
// init's byte, polling only whether the init is dead: when another process has the fifo
// open for reading (anything that reads every file under the daemon's data directory: a
// test that scans it for leaked values, an operator's grep -r, a backup), the init's open
// and write succeed with that reader, the init runs its program, and Run's open waits for
// a writer that never comes while the init stays alive: its Pool's filler and Close wait
// for good. Run also returned as soon as it had the byte, while the init's execve was still
// going on: a job handed over in that window found no /proc/PID/root ("open the
// container's root: no such file or directory"), the thread-group leader being replaced.
//
// Here the fifo is opened without blocking, and the init is watched through a pidfd: the
// program runs once the init no longer bears initComm (execve names it after its
// program, once the old threads are gone). The init's byte, or its closing the fifo (the
// byte went to another reader), says it is on its way there; exiting still named
// initComm without either means it failed before.
func (b *box) awaitExec(ctx context.Context) error {
	path := filepath.Join(b.r.containersDir, b.cid, execFifo)
	fifo, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("exec fifo: %w", err)
	}
	defer unix.Close(fifo)
	pid, err := b.p.Pid()
	if err != nil {
		return err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("watch the container's init: %w", err)
	}
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(fifo), Events: unix.POLLIN}, {Fd: int32(pidfd), Events: unix.POLLIN}}
	passed := false // the init wrote its byte or closed the fifo
	for {
		timeout := 50
		if passed {
			timeout = 1 // its execve is under way
		}
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, timeout); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait for the container's init: %w", err)
		}
		if fds[0].Revents != 0 {
			// A byte, or end of file: a writer came and went since the open (the
			// kernel reports no hang-up on a fifo whose reader has seen no writer).
			var one [1]byte
			if _, err := unix.Read(fifo, one[:]); !errors.Is(err, unix.EAGAIN) {
				passed = true
				fds[0].Fd = -1 // poll ignores it from now on
			}
		}
		if comm := procComm(pid); comm != initComm && comm != "" {
			break // it runs the job's program (or ran it and exited)
		}
		if fds[1].Revents != 0 { // the init exited, named initComm
			if passed {
				break // after its byte: it failed to execve; its exit status tells
			}
			return errors.New("the container's init exited before it ran the job's program")
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("the container's init did not run the job's program: %w", err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err // libcontainer reads the fifo's absence as "running"
	}
	return nil
}

// procComm returns the name of process pid (empty if it cannot be read), also of a zombie.
func procComm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, so the last ')' ends it.
	s := string(b)
	lo, hi := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if lo < 0 || hi < lo {
		return ""
	}
	return s[lo+1 : hi]
}

// supervise copies the job's result to result (at most ResultBytes) and waits for the job
// to end, killing it on a limit breach or when ctx ends. base is the usage the container
// had before the job was handed to it (zero for a fresh container).
func (b *box) supervise(ctx context.Context, result io.Writer, base usageMark) (*Result, error) {
	start := time.Now()
	var o outcome
	var kill sync.Once
	stop := func(why *bool) {
		kill.Do(func() {
			*why = true
			_ = b.c.Signal(unix.SIGKILL)
		})
	}
	copyDone := make(chan error, 1)
	go func() {
		_, err := copyResult(result, b.rpipe, b.l.ResultBytes)
		if errors.Is(err, errResultTooLarge) {
			stop(&o.tooLarge)
		}
		copyDone <- err
	}()
	timer := time.NewTimer(b.l.Wall)
	defer timer.Stop()
	sample := time.NewTicker(residentEvery)
	defer sample.Stop()
	resident := b.r.resident(b.paths)
	var ps *os.ProcessState
wait:
	for {
		select {
		case ps = <-b.waitDone:
			break wait
		case <-timer.C:
			stop(&o.timedOut)
		case <-ctx.Done():
			stop(&o.cancelled)
		case <-sample.C:
			resident = max(resident, b.r.resident(b.paths))
		}
	}
	wall := time.Since(start)
	// The process tree is gone with its pid namespace; the pipe's last writer has exited,
	// so the copy finishes at once unless the reader is blocked on the caller's writer.
	select {
	case err := <-copyDone:
		if err != nil && !errors.Is(err, errResultTooLarge) {
			o.resultFailed = true
		}
	case <-time.After(wallGraceMax):
		b.rpipe.Close()
		o.resultFailed = true
	}
	o.exitCode = exitCode(ps)
	u := b.r.usage(b.paths, base)
	u.Wall, u.PeakResidentBytes = wall, resident
	o.oom, o.pidsHit = b.r.limitsHit(b.paths, base)
	status := o.decide()
	return &Result{
		Status:   status,
		ExitCode: o.exitCode,
		Usage:    u,
		Timing:   Timing{Run: wall},
		Stdout:   b.stdout.Bytes(),
		Stderr:   b.stderr.Bytes(),
		Message:  message(status, b.l, o.exitCode),
	}, nil
}

// destroy kills the container's processes and removes its cgroups, state, spill area and
// root skeleton. It is safe to call more than once.
func (b *box) destroy() error {
	b.destroyOnce.Do(func() {
		var errs []error
		if b.c != nil {
			if err := destroy(b.c); err != nil {
				errs = append(errs, fmt.Errorf("destroy container %s: %w", b.cid, err))
			}
		}
		if b.spill != nil && len(errs) == 0 {
			b.spill.freeze() // no process of the job is left to write to it
		}
		if b.rpipe != nil {
			b.rpipe.Close()
		}
		if b.spill != nil {
			if err := b.spill.remove(); err != nil {
				errs = append(errs, fmt.Errorf("remove spill area of %s: %w", b.cid, err))
			}
		}
		if b.skel != nil {
			b.skel.remove()
		}
		if b.cpuDir != "" {
			// Gone already when the container ran (libcontainer removes its cgroups).
			if err := os.Remove(b.cpuDir); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup of %s: %w", b.cid, err))
			}
		}
		if len(errs) == 0 {
			b.owner.release() // nothing of the container's is left that its uid owns
		}
		b.destroyErr = errors.Join(errs...)
	})
	return b.destroyErr
}

// usageMark is what a container had used when its job was handed to it.
type usageMark struct {
	cpu  time.Duration
	oom  int64
	pids int64
	// peak, when non-nil, is a cgroup v2 memory.peak descriptor reset at the hand-over:
	// reading it gives the peak since then.
	peak *os.File
}

// mark records the container's usage now and resets its peak memory, so that what the
// job is metered for starts at its hand-over.
func (b *box) mark() usageMark {
	var m usageMark
	u := b.r.usage(b.paths, usageMark{})
	m.cpu = u.CPU
	m.oom, m.pids = b.r.limitCounts(b.paths)
	if b.r.cgroup2 {
		if f, err := os.OpenFile(filepath.Join(b.paths[""], "memory.peak"), os.O_RDWR|unix.O_CLOEXEC, 0); err == nil {
			if _, err := f.WriteString("reset\n"); err == nil {
				m.peak = f
			} else {
				f.Close() // kernels before 6.12: the peak since creation
			}
		}
	} else {
		_ = os.WriteFile(filepath.Join(b.paths["memory"], "memory.max_usage_in_bytes"), []byte("0"), 0)
	}
	return m
}

// setCPUWeight sets the container's share of the CPU against its siblings: low while it
// is prepared ahead, so that preparing the next sandbox never slows a running job, and the
// default once its job is handed to it.
func (b *box) setCPUWeight(low bool) {
	if b.cpuIdle && !low {
		// First: while the cgroup is idle its share cannot be written.
		dir := b.paths["cpu"]
		if b.r.cgroup2 {
			dir = b.paths[""]
		}
		_ = os.WriteFile(filepath.Join(dir, "cpu.idle"), []byte("0"), 0)
	}
	if b.r.cgroup2 {
		w := "100"
		if low {
			w = "1"
		}
		_ = os.WriteFile(filepath.Join(b.paths[""], "cpu.weight"), []byte(w), 0)
		return
	}
	s := "1024"
	if low {
		s = "2"
	}
	_ = os.WriteFile(filepath.Join(b.paths["cpu"], "cpu.shares"), []byte(s), 0)
}

// hostUID is the host uid (and gid) of a container's root while the container lives.
type hostUID struct {
	id   int64
	lock *os.File // flock'ed: no other container on the host gets id meanwhile (nil: none)
	path string
}

// uidSeq is where the search for a container's uid starts: one sequence for every Runtime
// of the process.
var uidSeq atomic.Int64

// uidLocks holds one lock file per host uid of a live container, for every Runtime of
// every process on the host (a second daemon, or a restarted one whose old containers
// still live); a lock dies with its process, as the containers of that process do
// (ParentDeathSignal). Where /run cannot be written (systemd's ProtectSystem=strict
// without RuntimeDirectory=veil), the locks are the state directory's: they then keep
// apart the containers of the runtimes on that directory only.
const uidLocks = "/run/veil/uids"

// uidLockDir makes and returns the directory of the uid locks (uidLocks, or the state
// directory's).
func (r *Runtime) uidLockDir() (string, error) {
	var err error
	for _, d := range []string{uidLocks, filepath.Join(r.stateDir, "uids")} {
		if err = os.MkdirAll(d, 0o700); err == nil {
			if err = os.Chmod(d, 0o700); err == nil { // no one else may hold a uid's lock
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("host uid locks: %w", err)
}

// allocUID returns the host uid of a new container's root: each live container has its own
// (HostID and the following uids, cycling through hostIDRange), so that what one job owns
// on the host, such as its spill area, belongs to no other job. Without a user namespace
// every container's root is uid 0. release gives the uid back once the container and what
// it owned are gone.
func (r *Runtime) allocUID() (*hostUID, error) {
	if !r.userNS {
		return &hostUID{}, nil
	}
	dir, err := r.uidLockDir()
	if err != nil {
		return nil, err
	}
	for range hostIDRange {
		id := r.hostID + (uidSeq.Add(1)-1)%hostIDRange
		u := &hostUID{id: id, path: filepath.Join(dir, strconv.FormatInt(id, 10))}
		for {
			f, err := os.OpenFile(u.path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
			if err != nil {
				return nil, fmt.Errorf("host uid lock: %w", err)
			}
			if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
				f.Close()
				if errors.Is(err, unix.EWOULDBLOCK) {
					break // a live container has it: the next uid
				}
				return nil, fmt.Errorf("host uid lock: %w", err)
			}
			// Its holder may have removed the file between our open and our lock: then the
			// lock is of a file no one else will find; take the path again.
			var held, now unix.Stat_t
			if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(u.path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
				u.lock = f
				return u, nil
			}
			f.Close()
		}
	}
	return nil, fmt.Errorf("%w: all %d host uids from %d are taken by live containers", ErrUnavailable, hostIDRange, r.hostID)
}

// release gives the uid back: its lock file is removed while still locked, then unlocked.
func (u *hostUID) release() {
	if u == nil || u.lock == nil {
		return
	}
	os.Remove(u.path)
	u.lock.Close()
	u.lock = nil
}

// hostIDRange is how many host uids (and gids) containers' roots cycle through.
const hostIDRange = 65536

// mountPoint adds a mount point (a directory, or an empty file) at dst to the skeleton
// rooted at rootfs.
func (s *skeleton) mountPoint(rootfs, dst string, dir bool) error {
	p := rootfs
	parts := strings.Split(strings.Trim(dst, "/"), "/")
	for i, part := range parts {
		p = filepath.Join(p, part)
		if i == len(parts)-1 && !dir {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o644)
			if err != nil {
				return err
			}
			f.Close()
			s.created = append(s.created, p)
			return nil
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
					continue
				}
			}
			return err
		}
		s.created = append(s.created, p)
	}
	return nil
}

// jobMarker records which job a sandbox prepared ahead was handed, so that Cleanup can
// name the job after a crash.
func (r *Runtime) jobMarker(cid string) string { return filepath.Join(r.stateDir, "assigned", cid) }

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// killCgroup sends SIGKILL to every process in the box's cgroup, without the container's
// lock (start holds it while Run waits for the init process).
func (b *box) killCgroup() {
	dirs := []string{filepath.Join("/sys/fs/cgroup", b.r.cgroupParent, b.cid)}
	if !b.r.cgroup2 {
		dirs = []string{filepath.Join("/sys/fs/cgroup/pids", b.r.cgroupParent, b.cid), filepath.Join("/sys/fs/cgroup/memory", b.r.cgroupParent, b.cid)}
	}
	for _, d := range dirs {
		if b.r.cgroup2 && os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0) == nil {
			return
		}
		procs, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(procs)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
}
