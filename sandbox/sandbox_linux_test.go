package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
)

func TestMain(m *testing.M) {
	Init()
	if len(os.Args) > 2 && os.Args[1] == "payload" {
		runPayload(os.Args[2:])
	}
	os.Exit(m.Run())
}

var jobSeq atomic.Int64

func jobID(t testing.TB) string {
	return fmt.Sprintf("t%d-%d", os.Getpid(), jobSeq.Add(1))
}

// newRuntime returns a Runtime on a fresh state dir, or skips the test
// saying why containers cannot be created here.
func newRuntime(t testing.TB) *Runtime {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: container tests need root")
	}
	dir, err := os.MkdirTemp("", "veil-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r, err := New(dir, WithCgroupParent("/veil-test"))
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("skipping: cannot create containers here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func payload(name string, args ...string) []string {
	return append([]string{"/veil", "payload", name}, args...)
}

func run(t *testing.T, r *Runtime, spec Spec) (*Result, string) {
	t.Helper()
	if spec.ID == "" {
		spec.ID = jobID(t)
	}
	var out bytes.Buffer
	res, err := r.Run(context.Background(), spec, &out)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Status != StatusOK {
		t.Logf("status %s exit %d message %q stderr %q", res.Status, res.ExitCode, res.Message, res.Stderr)
	}
	return res, out.String()
}

func TestRunEcho(t *testing.T) {
	r := newRuntime(t)
	res, out := run(t, r, Spec{Args: payload("echo"), Stdin: []byte("hello job")})
	if res.Status != StatusOK || res.ExitCode != 0 {
		t.Fatalf("status %s exit %d, want ok 0", res.Status, res.ExitCode)
	}
	if out != "hello job" {
		t.Errorf("result %q, want stdin echoed", out)
	}
	if string(res.Stdout) != "to stdout" || string(res.Stderr) != "to stderr" {
		t.Errorf("stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	if res.Usage.CPU <= 0 || res.Usage.PeakMemoryBytes <= 0 || res.Usage.Wall <= 0 {
		t.Errorf("usage not measured: %+v", res.Usage)
	}
}

func TestRunFailed(t *testing.T) {
	r := newRuntime(t)
	res, _ := run(t, r, Spec{Args: payload("false")})
	if res.Status != StatusFailed || res.ExitCode != 3 {
		t.Fatalf("status %s exit %d, want failed 3", res.Status, res.ExitCode)
	}
}

func TestIsolation(t *testing.T) {
	r := newRuntime(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	data := t.TempDir()
	dataFile := filepath.Join(data, "granted.csv")
	if err := os.WriteFile(dataFile, []byte("a,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A second dataset on the host, not mounted into this job, and the runtime's own state.
	other := filepath.Join(data, "other.csv")
	if err := os.WriteFile(other, []byte("c,d\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"other data and daemon state absent", payload("open", other, dataFile, data, r.stateDir), func(t *testing.T, out string) {
			for _, p := range []string{other, dataFile, data, r.stateDir} {
				if !strings.Contains(out, p+": no such file or directory\n") {
					t.Errorf("%s is visible inside the job:\n%s", p, out)
				}
			}
		}},
		{"status", payload("status"), func(t *testing.T, out string) {
			for key, want := range map[string]string{
				"CapEff": "0000000000000000", "CapPrm": "0000000000000000",
				"CapBnd": "0000000000000000", "CapAmb": "0000000000000000",
				"NoNewPrivs": "1", "Seccomp": "2",
			} {
				if got := field(out, key); got != want {
					t.Errorf("%s = %q, want %q", key, got, want)
				}
			}
			if r.UserNamespace() && field(out, "Uid") != "0\t0\t0\t0" {
				t.Errorf("Uid = %q inside the user namespace, want root", field(out, "Uid"))
			}
		}},
		{"host files absent", payload("open", "/etc/shadow", "/etc/passwd", "/root", "/home", "/sys/kernel", "/data/granted.csv", "/veil", "/dev/null", "/dev/urandom", "/dev/sda", "/dev/kmsg"), func(t *testing.T, out string) {
			for _, want := range []string{
				"/etc/shadow: no such file or directory", "/etc/passwd: no such file or directory",
				"/root: no such file or directory", "/home: no such file or directory",
				"/sys/kernel: no such file or directory",
				"/data/granted.csv: ok", "/veil: ok", "/dev/null: ok", "/dev/urandom: ok",
				"/dev/sda: no such file or directory", "/dev/kmsg: no such file or directory",
			} {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("missing %q in\n%s", want, out)
				}
			}
		}},
		{"no network", payload("connect", ln.Addr().String(), "192.0.2.1:80"), func(t *testing.T, out string) {
			if strings.Contains(out, "connected") {
				t.Errorf("a connection went through:\n%s", out)
			}
			if !strings.Contains(out, ln.Addr().String()+": dial tcp "+ln.Addr().String()+": connect: connection refused") {
				t.Errorf("host loopback listener: want connection refused (own loopback), got\n%s", out)
			}
			if !strings.Contains(out, "network is unreachable") {
				t.Errorf("outside address: want network is unreachable, got\n%s", out)
			}
		}},
		{"writes only in scratch", payload("write", "/x", "/veil", "/data/granted.csv", "/data/new", "/dev/x", "/proc/x", "/scratch/ok", "/tmp/ok"), func(t *testing.T, out string) {
			for _, want := range []string{
				"/x: open /x: read-only file system",
				"/veil: open /veil: read-only file system",
				"/data/granted.csv: open /data/granted.csv: read-only file system",
				"/data/new: open /data/new: read-only file system",
				"/scratch/ok: ok", "/tmp/ok: ok",
			} {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("missing %q in\n%s", want, out)
				}
			}
			for _, p := range []string{"/dev/x", "/proc/x"} {
				if strings.Contains(out, p+": ok") {
					t.Errorf("write to %s succeeded", p)
				}
			}
		}},
		{"fds", payload("fds"), func(t *testing.T, out string) {
			if strings.TrimSpace(out) != "0 1 2 3" {
				t.Errorf("open fds %q, want 0 1 2 3", out)
			}
		}},
		{"syscalls", payload("syscalls"), func(t *testing.T, out string) {
			for _, want := range []string{
				"unshare: operation not permitted", "mount: operation not permitted",
				"ptrace: operation not permitted", "bpf: operation not permitted",
				"io_uring_setup: operation not permitted", "clone-newnet: operation not permitted",
				"socket-netlink: operation not permitted", "socket-packet: operation not permitted",
				"socket-inet: <nil>",
			} {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("missing %q in\n%s", want, out)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, out := run(t, r, Spec{
				Args:   tt.args,
				Mounts: []Mount{{Source: dataFile, Destination: "/data/granted.csv"}},
			})
			if res.Status != StatusOK {
				t.Fatalf("status %s, want ok", res.Status)
			}
			tt.check(t, out)
		})
	}
}

// TestLimits checks that each breach ends with its own status, within the
// limit plus a generous margin (asserted on the status, not on timings).
func TestLimits(t *testing.T) {
	r := newRuntime(t)
	small := Limits{MemoryBytes: 128 << 20, Pids: 32, CPUs: 1, Wall: 3 * time.Second, ResultBytes: 1 << 20}
	tests := []struct {
		name string
		args []string
		want Status
	}{
		// The fork bomb must hit the pids limit before the memory one, also
		// under -race, whose runtime is much larger per process.
		{"fork bomb", payload("forkbomb"), StatusPids},
		{"memory bomb", payload("membomb"), StatusOOM},
		{"endless loop", payload("spin"), StatusTimeout},
		{"result too large", payload("result", fmt.Sprint(4<<20)), StatusResultTooLarge},
		{"result at the limit", payload("result", fmt.Sprint(1<<20)), StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), small.Wall+30*time.Second)
			defer cancel()
			var out bytes.Buffer
			l := small
			if tt.want == StatusPids {
				l.MemoryBytes = 2 << 30
			}
			res, err := r.Run(ctx, Spec{ID: jobID(t), Args: tt.args, Limits: l}, &out)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.want {
				t.Fatalf("status %s (exit %d, %v), want %s; stderr %q", res.Status, res.ExitCode, res.Usage, tt.want, res.Stderr)
			}
			if int64(out.Len()) > small.ResultBytes {
				t.Errorf("%d result bytes passed, limit %d", out.Len(), small.ResultBytes)
			}
			if res.Message == "" || strings.Contains(res.Message, "/") {
				t.Errorf("message %q: want a sanitized, non-empty text", res.Message)
			}
			t.Logf("%s: %s in %v: %s", tt.name, res.Status, res.Usage.Wall, res.Message)
		})
	}
}

func TestCancel(t *testing.T) {
	r := newRuntime(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	res, err := r.Run(ctx, Spec{ID: jobID(t), Args: payload("sleep")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusKilled {
		t.Fatalf("status %s, want killed", res.Status)
	}
	assertClean(t, r)
}

func TestInvalidSpec(t *testing.T) {
	r := newRuntime(t)
	for _, spec := range []Spec{
		{ID: "../x", Args: payload("true")},
		{ID: "ok", Args: []string{"relative"}},
		{ID: "ok", Args: []string{"/proc/x"}},
		{ID: "ok", Args: payload("true"), Mounts: []Mount{{Source: "/etc/hostname", Destination: "/scratch/x"}}},
		{ID: "ok", Args: payload("true"), Mounts: []Mount{{Source: "/etc/hostname", Destination: "data"}}},
	} {
		if _, err := r.Run(context.Background(), spec, io.Discard); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", spec, err)
		}
	}
}

// assertClean checks that no container, cgroup or root filesystem is left.
func assertClean(t *testing.T, r *Runtime) {
	t.Helper()
	assertCleanPrefix(t, r, containerPrefix)
}

// assertCleanPrefix checks that nothing of the containers named prefix* is left.
func assertCleanPrefix(t *testing.T, r *Runtime, prefix string) {
	t.Helper()
	for _, dir := range append(r.cgroupParentDirs(), r.containersDir, r.rootfsDir, r.spillDir(), filepath.Dir(r.jobMarker("x"))) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				t.Errorf("leftover %s", filepath.Join(dir, e.Name()))
			}
		}
	}
}

func TestEverythingDestroyed(t *testing.T) {
	r := newRuntime(t)
	for _, args := range [][]string{payload("true"), payload("false"), payload("result", "99999999")} {
		if _, err := r.Run(context.Background(), Spec{ID: jobID(t), Args: args, Limits: Limits{ResultBytes: 1000}}, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	// A set-up failure (missing mount source) must be cleaned up too.
	spec := Spec{ID: jobID(t), Args: payload("true"), Mounts: []Mount{{Source: "/nonexistent-veil-test", Destination: "/data/x"}}}
	if _, err := r.Run(context.Background(), spec, io.Discard); err == nil {
		t.Fatal("Run with a missing mount source succeeded")
	}
	assertClean(t, r)
}

// TestCleanup simulates a daemon crash: a container is created and started
// with libcontainer directly and never destroyed.
func TestCleanup(t *testing.T) {
	r := newRuntime(t)
	id := jobID(t)
	cid := containerPrefix + id
	spec := Spec{ID: id, Args: payload("sleep")}
	l := spec.Limits.withDefaults()
	rootfs := filepath.Join(r.rootfsDir, cid)
	skel, err := r.makeRootfs(rootfs, &spec)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := r.allocUID()
	if err != nil {
		t.Fatal(err)
	}
	defer owner.release()
	c, err := libcontainer.Create(r.containersDir, cid, r.config(cid, rootfs, &spec, l, skel, boxOptions{uid: owner.id}))
	if err != nil {
		t.Fatal(err)
	}
	p := &libcontainer.Process{Args: spec.Args, Init: true, Cwd: "/scratch"}
	if err := c.Run(p); err != nil {
		t.Fatal(err)
	}
	go p.Wait() // reap, as the dead daemon's init would
	st, err := c.State()
	if err != nil {
		t.Fatal(err)
	}
	// A second leftover: a bare cgroup whose container never got a state.
	bare := filepath.Join(filepath.Dir(st.CgroupPaths["pids"]), containerPrefix+"bare")
	if !r.cgroup2 {
		if err := os.Mkdir(bare, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	r2, err := New(r.stateDir, WithCgroupParent("/veil-test"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := r2.Cleanup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !contains(ids, id) {
		t.Errorf("Cleanup found %v, want %s among them", ids, id)
	}
	if !r.cgroup2 && !contains(ids, "bare") {
		t.Errorf("Cleanup found %v, want the bare cgroup too", ids)
	}
	if err := p.Signal(os.Kill); err == nil {
		// signalling a reaped process fails; a live one means Cleanup missed it
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", st.InitProcessPid)); err == nil {
			t.Errorf("container init %d still alive", st.InitProcessPid)
		}
	}
	for _, path := range st.CgroupPaths {
		if _, err := os.Stat(path); err == nil {
			t.Errorf("cgroup %s still exists", path)
		}
	}
	assertClean(t, r)
}

// TestDaemonKilled kills a process that is running a job with -9 and checks
// that the job dies with it, and that Cleanup then removes what is left.
func TestDaemonKilled(t *testing.T) {
	r := newRuntime(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id := jobID(t)
	cid := containerPrefix + id
	daemon := exec.Command(exe, "payload", "daemon", r.stateDir, id)
	daemon.Stderr = os.Stderr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Cleanup(context.Background()) })
	var st *libcontainer.State
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := libcontainer.Load(r.containersDir, cid); err == nil {
			if s, err := c.State(); err == nil && s.InitProcessPid != 0 {
				// Wait until the job has called Init.
				if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/scratch/ready", s.InitProcessPid)); err == nil {
					st = s
					break
				}
			}
		}
		if time.Now().After(deadline) {
			daemon.Process.Kill()
			t.Fatal("the job did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := daemon.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	daemon.Wait()
	procs := filepath.Join(st.CgroupPaths["pids"], "cgroup.procs")
	if r.cgroup2 {
		procs = filepath.Join(st.CgroupPaths[""], "cgroup.procs")
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		b, err := os.ReadFile(procs)
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job processes %q outlived the killed daemon", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ids, err := r.Cleanup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !contains(ids, id) {
		t.Errorf("Cleanup found %v, want %s", ids, id)
	}
	assertClean(t, r)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func TestConcurrent(t *testing.T) {
	r := newRuntime(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var out bytes.Buffer
			want := fmt.Sprintf("job %d", i)
			res, err := r.Run(context.Background(), Spec{ID: jobID(t), Args: payload("echo"), Stdin: []byte(want)}, &out)
			switch {
			case err != nil:
				errs <- err
			case res.Status != StatusOK:
				errs <- fmt.Errorf("job %d: status %s: %s", i, res.Status, res.Stderr)
			case out.String() != want:
				errs <- fmt.Errorf("job %d: result %q", i, out.String())
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assertClean(t, r)
}

func TestRunLocal(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want Status
		out  string
	}{
		{"echo", []string{exe, "payload", "echo"}, StatusOK, "in"},
		{"fds", []string{exe, "payload", "fds"}, StatusOK, "0 1 2 3 "},
		{"false", []string{exe, "payload", "false"}, StatusFailed, ""},
		{"timeout", []string{exe, "payload", "spin"}, StatusTimeout, ""},
		{"result too large", []string{exe, "payload", "result", "5000"}, StatusResultTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			wall := time.Minute // generous: the machine may be busy
			if tt.want == StatusTimeout {
				wall = time.Second
			}
			res, err := RunLocal(context.Background(), Spec{Args: tt.args, Stdin: []byte("in"),
				Limits: Limits{Wall: wall, ResultBytes: 4096}}, &out)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.want {
				t.Fatalf("status %s, want %s", res.Status, tt.want)
			}
			if tt.out != "" && out.String() != tt.out {
				t.Errorf("result %q, want %q", out.String(), tt.out)
			}
		})
	}
}

func TestSeccompLists(t *testing.T) {
	allowed := map[string]bool{}
	for _, s := range allowedSyscalls {
		allowed[s] = true
	}
	for _, s := range deniedSyscalls {
		if allowed[s] {
			t.Errorf("%s is both allowed and denied", s)
		}
	}
	for _, s := range []string{"clone3", "socket", "clone"} {
		if allowed[s] {
			t.Errorf("%s must only be allowed with its argument rule", s)
		}
	}
}

func BenchmarkRun(b *testing.B) {
	r := newRuntime(b)
	for i := 0; i < b.N; i++ {
		res, err := r.Run(context.Background(), Spec{ID: jobID(b), Args: payload("true")}, io.Discard)
		if err != nil || res.Status != StatusOK {
			b.Fatal(err, res)
		}
	}
}

// TestStderrKeepsTheEnd: a failing program's stderr beyond the limit keeps its last bytes,
// where the reason it failed is, and says how much of the start was dropped; in a process and
// in a container.
func TestStderrKeepsTheEnd(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const want = "panic: the line that says what went wrong\n"
	check := func(t *testing.T, res *Result) {
		t.Helper()
		if res.Status != StatusFailed {
			t.Errorf("status %s, want failed", res.Status)
		}
		if !bytes.HasSuffix(res.Stderr, []byte(want)) {
			t.Errorf("stderr ends %q, want the program's last line", res.Stderr[max(0, len(res.Stderr)-80):])
		}
		if !bytes.Contains(res.Stderr, []byte("bytes dropped")) || len(res.Stderr) > 64<<10+100 {
			t.Errorf("stderr of %d bytes starts %q, want 64 KiB saying what was dropped", len(res.Stderr), res.Stderr[:min(80, len(res.Stderr))])
		}
	}
	t.Run("process", func(t *testing.T) {
		res, err := RunLocal(context.Background(), Spec{Args: []string{exe, "payload", "stderr", "300000"}, Limits: Limits{Wall: time.Minute}}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		check(t, res)
	})
	t.Run("container", func(t *testing.T) {
		r := newRuntime(t)
		res, err := r.Run(context.Background(), Spec{ID: jobID(t), Args: payload("stderr", "300000")}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		check(t, res)
	})
}
