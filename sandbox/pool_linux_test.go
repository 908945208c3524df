package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
)

// newPool starts a pool of size sandboxes running the "job" payload (which reads its job
// from stdin, as the runner does) and closes it when the test ends, checking that every
// sandbox it made was destroyed.
func newPool(t *testing.T, r *Runtime, size int, l Limits) *Pool {
	t.Helper()
	p, err := r.NewPool(Template{Args: payload("job"), Limits: l}, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertCleanPrefix(t, r, containerPrefix+poolPrefix+p.tag+"-")
	})
	return p
}

// waitReady waits until the pool has n sandboxes prepared.
func waitReady(t *testing.T, p *Pool, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); len(p.ready) < n; {
		if time.Now().After(deadline) {
			t.Fatalf("the pool prepared %d of %d sandboxes (last error: %v)", len(p.ready), n, p.lastPrepare)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// poolRun hands one job (a payload's argv) to the pool.
func poolRun(t *testing.T, p *Pool, mounts []Mount, job ...string) (*Result, string) {
	t.Helper()
	var out bytes.Buffer
	res, err := p.Run(context.Background(), Spec{ID: jobID(t), Stdin: []byte(strings.Join(job, "\n")), Mounts: mounts}, &out)
	if err != nil {
		t.Fatalf("pool Run: %v", err)
	}
	if res.Status != StatusOK {
		t.Logf("status %s exit %d message %q stderr %q", res.Status, res.ExitCode, res.Message, res.Stderr)
	}
	return res, out.String()
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPoolRunsJobs(t *testing.T) {
	r := newRuntime(t)
	p := newPool(t, r, 2, Limits{})
	waitReady(t, p, 2)
	res, out := poolRun(t, p, nil, "echo")
	if res.Status != StatusOK || !res.Timing.Ahead {
		t.Fatalf("status %s ahead %v, want ok from a sandbox prepared ahead", res.Status, res.Timing.Ahead)
	}
	if string(res.Stdout) != "to stdout" || string(res.Stderr) != "to stderr" {
		t.Errorf("stdout %q stderr %q", res.Stdout, res.Stderr)
	}
	if out != "" {
		t.Errorf("result %q: the job's stdin was read by the runner stand-in, nothing is left to echo", out)
	}
	if res.Usage.CPU <= 0 || res.Usage.PeakMemoryBytes <= 0 || res.Usage.Wall <= 0 {
		t.Errorf("usage not measured: %+v", res.Usage)
	}
	if res, _ := poolRun(t, p, nil, "false"); res.Status != StatusFailed || res.ExitCode != 3 {
		t.Errorf("status %s exit %d, want failed 3", res.Status, res.ExitCode)
	}
	if st := p.Stats(); st.StartedAhead < 2 || st.StartedOnDemand != 0 || st.Failed != 0 {
		t.Errorf("stats %+v, want at least 2 started ahead, none on demand, none failed", st)
	}
	// A pool of size 0 prepares each sandbox when its job comes.
	p0 := newPool(t, r, 0, Limits{})
	if res, _ := poolRun(t, p0, nil, "true"); res.Status != StatusOK || res.Timing.Ahead {
		t.Errorf("status %s ahead %v, want ok from a sandbox prepared on demand", res.Status, res.Timing.Ahead)
	}
	if st := p0.Stats(); st != (PoolStats{StartedOnDemand: 1}) {
		t.Errorf("stats %+v, want one started on demand", st)
	}
}

// The mounts of a job in a pooled sandbox are exactly those of the same job in a fresh
// sandbox: same mount points, same flags, nothing more.
func TestPoolMountsExactlyTheJobs(t *testing.T) {
	r := newRuntime(t)
	data := t.TempDir()
	a, b := filepath.Join(data, "a.parquet"), filepath.Join(data, "b.parquet")
	writeTestFile(t, a, "A")
	writeTestFile(t, b, "B")
	if err := os.Mkdir(filepath.Join(data, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	mounts := []Mount{
		{Source: a, Destination: "/data/t/a.parquet"},
		{Source: filepath.Join(data, "dir"), Destination: "/in/dir"},
	}
	_, fresh := run(t, r, Spec{Args: payload("mounts"), Mounts: mounts})
	p := newPool(t, r, 1, Limits{})
	waitReady(t, p, 1)
	res, pooled := poolRun(t, p, mounts, "mounts")
	if res.Status != StatusOK {
		t.Fatalf("status %s", res.Status)
	}
	lines := func(s string) []string {
		l := strings.Split(strings.TrimSpace(s), "\n")
		slices.Sort(l)
		return l
	}
	if !slices.Equal(lines(fresh), lines(pooled)) {
		t.Errorf("mounts differ\nfresh sandbox:\n%s\npooled sandbox:\n%s", fresh, pooled)
	}
	for _, want := range []string{"/data/t/a.parquet ro,nosuid,nodev,noexec", "/in/dir ro,nosuid,nodev,noexec"} {
		if !strings.Contains(pooled, want) {
			t.Errorf("pooled sandbox lacks %q:\n%s", want, pooled)
		}
	}
	// What the job sees of them: its own file, read-only, and not the other one.
	_, out := poolRun(t, p, mounts, "open", "/data/t/a.parquet", "/data/t/b.parquet", b, data)
	for _, want := range []string{"/data/t/a.parquet: ok", "/data/t/b.parquet: no such file", b + ": no such file", data + ": no such file"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	_, out = poolRun(t, p, mounts, "write", "/data/t/a.parquet", "/data/t/new", "/in/dir/x")
	for _, want := range []string{"/data/t/a.parquet: open /data/t/a.parquet: read-only file system", "/data/t/new: open /data/t/new: read-only file system", "/in/dir/x: open /in/dir/x: read-only file system"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
	if b, _ := os.ReadFile(a); string(b) != "A" {
		t.Errorf("the mounted file was changed: %q", b)
	}
}

// Nothing of one job is visible to the next: each sandbox runs one job and is destroyed.
func TestPoolNothingOfAJobReachesTheNext(t *testing.T) {
	r := newRuntime(t)
	if r.spillErr != nil {
		t.Skipf("skipping: %v", r.spillErr)
	}
	data := t.TempDir()
	secret := filepath.Join(data, "a.csv")
	writeTestFile(t, secret, "job A's data")
	p := newPool(t, r, 2, Limits{SpillBytes: 32 << 20})
	waitReady(t, p, 2)
	res, out := poolRun(t, p, []Mount{{Source: secret, Destination: "/data/a/a.csv"}}, "write", "/scratch/left", "/spill/left")
	if res.Status != StatusOK || !strings.Contains(out, "/scratch/left: ok") || !strings.Contains(out, "/spill/left: ok") {
		t.Fatalf("job A: status %s:\n%s", res.Status, out)
	}
	for i := 0; i < 3; i++ { // the sandbox prepared with A's, the next and one prepared after A
		_, out = poolRun(t, p, nil, "open", "/scratch/left", "/spill/left", "/data/a/a.csv")
		for _, want := range []string{"/scratch/left: no such file", "/spill/left: no such file", "/data/a/a.csv: no such file"} {
			if !strings.Contains(out, want) {
				t.Errorf("job %d after A: missing %q in\n%s", i+1, want, out)
			}
		}
		if _, out := poolRun(t, p, nil, "pids"); strings.TrimSpace(out) != "1" {
			t.Errorf("job %d after A sees processes %q, want only its own (1)", i+1, out)
		}
	}
}

// A job's spill area is on disk, its own (its root's, mode 0700), limited in size by its
// own file system, and gone after the job.
func TestPoolSpill(t *testing.T) {
	r := newRuntime(t)
	if r.spillErr != nil {
		t.Skipf("skipping: %v", r.spillErr)
	}
	p := newPool(t, r, 1, Limits{SpillBytes: 64 << 20})
	waitReady(t, p, 1)
	_, out := poolRun(t, p, nil, "stat", SpillPath)
	if !strings.Contains(out, SpillPath+": uid 0 mode 700 <nil>") {
		t.Errorf("spill area: %s", out)
	}
	_, out = poolRun(t, p, nil, "fill", "/spill/ok", "32")
	if !strings.Contains(out, "/spill/ok: <nil>") {
		t.Errorf("writing 32 MiB to a 64 MiB spill area: %s", out)
	}
	_, out = poolRun(t, p, nil, "fill", "/spill/big", "200")
	if !strings.Contains(out, "no space left on device") {
		t.Errorf("writing 200 MiB to a 64 MiB spill area: %s, want no space left", out)
	}
	// Without SpillBytes there is no spill area, and /spill cannot be written.
	p0 := newPool(t, r, 0, Limits{})
	if _, out := poolRun(t, p0, nil, "write", "/spill/x"); !strings.Contains(out, "/spill/x: open /spill/x: ") || strings.Contains(out, "ok") {
		t.Errorf("without a spill area: %s", out)
	}
	// Its image is on the state directory's disk while it exists, and removed after.
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(r.spillDir())
	if len(ents) != 0 {
		t.Errorf("spill areas left after Close: %v", ents)
	}
	if out, _ := exec.Command("losetup", "-a").CombinedOutput(); strings.Contains(string(out), r.stateDir) {
		t.Errorf("loop devices left attached:\n%s", out)
	}
}

func TestPoolInvalidSpec(t *testing.T) {
	r := newRuntime(t)
	p := newPool(t, r, 0, Limits{})
	for _, spec := range []Spec{
		{ID: "../x"},
		{ID: "ok", Args: payload("true")},
		{ID: "ok", Env: []string{"A=1"}},
		{ID: "ok", Limits: Limits{MemoryBytes: 1 << 20}},
		{ID: "ok", Image: "/x"},
		{ID: "ok", Mounts: []Mount{{Source: "/etc/hostname", Destination: "/scratch/x"}}},
		{ID: "ok", Mounts: []Mount{{Source: "/etc/hostname", Destination: SpillPath}}},
		{ID: "ok", Mounts: []Mount{{Source: "/etc/hostname", Destination: "/veil"}}},
	} {
		if _, err := p.Run(context.Background(), spec, io.Discard); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", spec, err)
		}
	}
	// A mount whose source is missing fails the job's hand-over, and its sandbox is
	// destroyed all the same (checked when the pool is closed).
	if _, err := p.Run(context.Background(), Spec{ID: jobID(t), Mounts: []Mount{{Source: "/nonexistent-veil-test", Destination: "/data/x"}}}, io.Discard); err == nil {
		t.Error("a missing mount source was accepted")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(context.Background(), Spec{ID: jobID(t)}, io.Discard); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Run on a closed pool: %v, want ErrUnavailable", err)
	}
}

// TestPoolDaemonKilled kills a daemon that has sandboxes prepared ahead and one running a
// job: the job dies with it, and Cleanup reports that job only and removes everything.
func TestPoolDaemonKilled(t *testing.T) {
	r := newRuntime(t)
	if r.spillErr != nil {
		t.Skipf("skipping: %v", r.spillErr)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	id := jobID(t)
	daemon := exec.Command(exe, "payload", "pooldaemon", r.stateDir, id)
	daemon.Stderr = os.Stderr
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Cleanup(context.Background()) })
	// Wait until the job runs (past its Init, as in TestDaemonKilled) next to the
	// sandbox still prepared ahead (the pool refills after a job, not during it).
	started := func() bool {
		ents, _ := os.ReadDir(filepath.Dir(r.jobMarker("x")))
		for _, e := range ents {
			if b, _ := os.ReadFile(filepath.Join(filepath.Dir(r.jobMarker("x")), e.Name())); string(b) != id {
				continue
			}
			c, err := libcontainer.Load(r.containersDir, e.Name())
			if err != nil {
				return false
			}
			st, err := c.State()
			if err != nil {
				return false
			}
			_, err = os.Stat(fmt.Sprintf("/proc/%d/root/scratch/ready", st.InitProcessPid))
			return err == nil
		}
		return false
	}
	for deadline := time.Now().Add(30 * time.Second); !started() || len(spills(r)) < 4; {
		if time.Now().After(deadline) {
			daemon.Process.Kill()
			t.Fatalf("the pooled job did not start (spill areas %v)", spills(r))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := daemon.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	daemon.Wait()
	r2, err := New(r.stateDir, WithCgroupParent("/veil-test"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := r2.Cleanup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{id}) {
		t.Errorf("Cleanup found %v, want only the job that was running, %s", ids, id)
	}
	assertClean(t, r)
	if s := spills(r); len(s) != 0 {
		t.Errorf("spill areas left: %v", s)
	}
	if out, _ := exec.Command("losetup", "-a").CombinedOutput(); strings.Contains(string(out), r.stateDir) {
		t.Errorf("loop devices left attached:\n%s", out)
	}
}

func spills(r *Runtime) []string {
	ents, _ := os.ReadDir(r.spillDir())
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func BenchmarkPoolRun(b *testing.B) {
	r := newRuntime(b)
	p, err := r.NewPool(Template{Args: payload("job")}, 2)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := p.Run(context.Background(), Spec{ID: fmt.Sprintf("b%d-%d", os.Getpid(), i), Stdin: []byte("true")}, io.Discard)
		if err != nil || res.Status != StatusOK {
			b.Fatal(err, res)
		}
	}
}

// A sandbox prepared ahead has the least CPU share until its job is handed over, then the
// default: preparing never takes CPU from a running job, and a job never runs at the
// preparing share. Where the kernel has cpu.idle (5.15), the preparing cgroup is also an
// idle one: a job's thread that wakes takes the CPU from it at once, instead of waiting for
// the preparing task's time slice to end.
func TestPoolCPUShare(t *testing.T) {
	r := newRuntime(t)
	p := newPool(t, r, 2, Limits{})
	waitReady(t, p, 2)
	share := func(cid string) string {
		file := filepath.Join("/sys/fs/cgroup/cpu", r.cgroupParent, cid, "cpu.shares")
		if r.cgroup2 {
			file = filepath.Join("/sys/fs/cgroup", r.cgroupParent, cid, "cpu.weight")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	low, normal := "2", "1024"
	if r.cgroup2 {
		low, normal = "1", "100"
	}
	// idle is the cgroup's cpu.idle, "" where the kernel has none.
	idle := func(cid string) string {
		file := filepath.Join("/sys/fs/cgroup/cpu", r.cgroupParent, cid, "cpu.idle")
		if r.cgroup2 {
			file = filepath.Join("/sys/fs/cgroup", r.cgroupParent, cid, "cpu.idle")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	ents, _ := os.ReadDir(r.containersDir)
	for _, e := range ents {
		switch got := idle(e.Name()); got {
		case "": // no cpu.idle on this kernel: the least share
			if got := share(e.Name()); got != low {
				t.Errorf("sandbox %s prepared ahead has CPU share %s, want %s", e.Name(), got, low)
			}
		case "1": // the kernel reports the idle weight as the share
		default:
			t.Errorf("sandbox %s prepared ahead has cpu.idle %s, want 1", e.Name(), got)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id := jobID(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx, Spec{ID: id, Stdin: []byte("sleep")}, io.Discard)
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		// Once the job runs (the sleep payload has written /scratch/ready), it has been
		// handed over.
		ents, _ := os.ReadDir(filepath.Dir(r.jobMarker("x")))
		if len(ents) == 1 && jobRunning(r, ents[0].Name()) {
			if got := share(ents[0].Name()); got != normal {
				t.Errorf("the sandbox running the job has CPU share %s, want %s", got, normal)
			}
			if got := idle(ents[0].Name()); got != "" && got != "0" {
				t.Errorf("the sandbox running the job has cpu.idle %s, want 0", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job was not handed over")
		}
	}
	cancel()
	<-done
}

// A sandbox prepared ahead is in its cgroup at the least CPU share before its init runs:
// libcontainer applies the container's resources only once the init has set up its root
// (tens of milliseconds of CPU: the veil binary's start, namespaces, mounts), and an init
// that ran those at the default share would take CPU from the job running beside it. A box
// that never starts leaves no cgroup behind.
func TestPoolLowShareBeforeStart(t *testing.T) {
	r := newRuntime(t)
	file := func(cid string) string {
		if r.cgroup2 {
			return filepath.Join("/sys/fs/cgroup", r.cgroupParent, cid, "cpu.weight")
		}
		return filepath.Join("/sys/fs/cgroup/cpu", r.cgroupParent, cid, "cpu.shares")
	}
	low := "2"
	if r.cgroup2 {
		low = "1"
	}
	for _, ahead := range []bool{true, false} {
		cid := containerPrefix + poolPrefix + "lowshare-" + jobID(t)
		spec := Spec{ID: cid, Args: payload("job"), Limits: Limits{}.withDefaults()}
		b, err := r.create(context.Background(), cid, &spec, spec.Limits, nil, ahead)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(file(cid))
		if idle, ierr := os.ReadFile(filepath.Join(filepath.Dir(file(cid)), "cpu.idle")); ierr == nil && ahead && strings.TrimSpace(string(idle)) == "1" {
			got = []byte(low) // an idle cgroup: less than the least share (see TestPoolCPUShare)
		}
		switch {
		case ahead && err != nil:
			t.Errorf("a sandbox prepared ahead has no cgroup before its start: %v", err)
		case ahead && strings.TrimSpace(string(got)) != low:
			t.Errorf("a sandbox prepared ahead has CPU share %s before its start, want %s", strings.TrimSpace(string(got)), low)
		case !ahead && err == nil && strings.TrimSpace(string(got)) == low:
			t.Errorf("a sandbox made for its job has the preparing CPU share %s", low)
		}
		if err := b.destroy(); err != nil {
			t.Fatal(err)
		}
		assertCleanPrefix(t, r, cid)
	}
}

// jobRunning reports whether the job in container cid has passed Init (the sleep payload).
func jobRunning(r *Runtime, cid string) bool {
	c, err := libcontainer.Load(r.containersDir, cid)
	if err != nil {
		return false
	}
	st, err := c.State()
	if err != nil {
		return false
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d/root/scratch/ready", st.InitProcessPid))
	return err == nil
}

// A fresh sandbox gets a spill area too, removed when Run returns; one the disk could not
// hold is refused before anything runs.
func TestRunSpill(t *testing.T) {
	r := newRuntime(t)
	if r.spillErr != nil {
		t.Skipf("skipping: %v", r.spillErr)
	}
	res, out := run(t, r, Spec{Args: payload("fill", "/spill/x", "8"), Limits: Limits{SpillBytes: 32 << 20}})
	if res.Status != StatusOK || !strings.Contains(out, "/spill/x: <nil>") {
		t.Errorf("status %s: %s", res.Status, out)
	}
	if s := spills(r); len(s) != 0 {
		t.Errorf("spill areas left after Run: %v", s)
	}
	_, err := r.Run(context.Background(), Spec{ID: jobID(t), Args: payload("true"), Limits: Limits{SpillBytes: 1 << 60}}, io.Discard)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "free") {
		t.Errorf("a spill area larger than the disk: %v, want ErrUnavailable", err)
	}
	assertClean(t, r)
}

// TestPoolLimits: a job in a sandbox prepared ahead ends exactly as in a fresh one when it
// breaches a limit or is cancelled (the daemon's jobs run in pooled sandboxes), and its
// sandbox is destroyed after it.
func TestPoolLimits(t *testing.T) {
	r := newRuntime(t)
	small := Limits{MemoryBytes: 128 << 20, Pids: 32, CPUs: 1, Wall: 3 * time.Second, ResultBytes: 1 << 20}
	big := small
	big.MemoryBytes = 2 << 30 // the fork bomb must hit the pids limit before the memory one
	pools := map[Limits]*Pool{small: newPool(t, r, 1, small), big: newPool(t, r, 1, big)}
	tests := []struct {
		name string
		job  []string
		l    Limits
		want Status
	}{
		{"fork bomb", []string{"forkbomb"}, big, StatusPids},
		{"memory bomb", []string{"membomb"}, small, StatusOOM},
		{"endless loop", []string{"spin"}, small, StatusTimeout},
		{"result too large", []string{"result", fmt.Sprint(4 << 20)}, small, StatusResultTooLarge},
		{"result at the limit", []string{"result", fmt.Sprint(1 << 20)}, small, StatusOK},
		{"cancelled", []string{"sleep"}, small, StatusKilled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pools[tt.l]
			waitReady(t, p, 1)
			ctx, cancel := context.WithTimeout(context.Background(), small.Wall+30*time.Second)
			defer cancel()
			if tt.want == StatusKilled {
				time.AfterFunc(500*time.Millisecond, cancel)
			}
			var out bytes.Buffer
			res, err := p.Run(ctx, Spec{ID: jobID(t), Stdin: []byte(strings.Join(tt.job, "\n"))}, &out)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Timing.Ahead {
				t.Errorf("the job's sandbox was not prepared ahead")
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
		})
	}
}

// A job's spill area has the same size limit whether its sandbox was prepared ahead or
// made for it: the same file system, of the same size, for the same Limits.SpillBytes.
func TestSpillSameLimitPooledAndFresh(t *testing.T) {
	r := newRuntime(t)
	if r.spillErr != nil {
		t.Skipf("skipping: %v", r.spillErr)
	}
	l := Limits{SpillBytes: 48 << 20}
	_, fresh := run(t, r, Spec{Args: payload("statfs", SpillPath), Limits: l})
	p := newPool(t, r, 1, l)
	waitReady(t, p, 1)
	res, pooled := poolRun(t, p, nil, "statfs", SpillPath)
	if !res.Timing.Ahead {
		t.Error("the pooled job did not get the sandbox prepared ahead")
	}
	if fresh != pooled || !strings.Contains(fresh, "<nil>") || strings.Contains(fresh, "blocks 0 ") {
		t.Errorf("spill area of a fresh sandbox: %q; of a pooled one: %q; want the same, non-empty", fresh, pooled)
	}
	// And the same limit when written: 64 MiB do not fit in either.
	_, fresh = run(t, r, Spec{Args: payload("fill", "/spill/big", "64"), Limits: l})
	_, pooled = poolRun(t, p, nil, "fill", "/spill/big", "64")
	if !strings.Contains(fresh, "no space left on device") || !strings.Contains(pooled, "no space left on device") {
		t.Errorf("writing 64 MiB to a 48 MiB spill area: fresh %q, pooled %q; want no space left in both", fresh, pooled)
	}
}
