package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestUIDsUniqueAcrossRuntimes: a container's root is a host uid no other live container
// has, also one of another Runtime: of this process (two runtimes on other state
// directories) or of another process (simulated by starting the sequence over, as a
// restarted or second daemon does while the first one's containers live). Two jobs sharing
// a host uid could reach each other's files on the host, such as their spill areas.
func TestUIDsUniqueAcrossRuntimes(t *testing.T) {
	r1, r2 := newRuntime(t), newRuntime(t)
	if !r1.UserNamespace() {
		t.Skip("containers share uid 0 without user namespaces")
	}
	seen := map[int64]string{}
	take := func(r *Runtime, who string) {
		t.Helper()
		u, err := r.allocUID()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(u.release)
		if o, ok := seen[u.id]; ok {
			t.Errorf("host uid %d given to a container of %s while one of %s lives", u.id, who, o)
		}
		seen[u.id] = who
	}
	for i := 0; i < 3; i++ {
		take(r1, "the first runtime")
		take(r2, "the second runtime")
	}
	uidSeq.Store(0) // another process: its sequence starts over
	for i := 0; i < 3; i++ {
		take(r2, "another process")
	}
}

// TestStateDirsPrivate: the libcontainer state of every container (its exec fifo, mode
// 0622, which any local user who can reach it may open for writing, and its state.json)
// and the job markers are reachable by root only, also when their directories were there
// before with a wider mode (made by hand, restored from an archive, another umask): New
// sets their mode, as it does for the directories the containers' roots must traverse.
func TestStateDirsPrivate(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: container tests need root")
	}
	dir, err := os.MkdirTemp("", "veil-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"containers", "assigned"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(dir, WithCgroupParent("/veil-test"))
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("skipping: cannot create containers here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{r.containersDir, filepath.Dir(r.jobMarker("x"))} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: other users reach what is inside", d, fi.Mode().Perm())
		}
	}
}

// TestCgroupsPrivate: a job's cgroup files (memory and CPU use as it runs, which depend on
// the data: how many groups, how many rows pass a filter) are root's alone; the operator
// reads them as metering, vendors never do. They were readable by every local user.
func TestCgroupsPrivate(t *testing.T) {
	r := newRuntime(t)
	p := newPool(t, r, 1, Limits{})
	waitReady(t, p, 1)
	b := <-p.ready
	defer p.discard(b)
	if len(b.paths) == 0 {
		t.Fatal("the sandbox has no cgroup paths")
	}
	for _, dir := range b.paths {
		ls := exec.Command("ls", dir)
		ls.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := ls.CombinedOutput(); err == nil {
			t.Errorf("a local user (nobody) lists the job's cgroup %s:\n%.200s", dir, out)
		}
	}
}
