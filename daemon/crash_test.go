package daemon_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/launch"
)

// serveChild runs a daemon on an initialised data directory until it is killed: the test
// binary plays `veil serve` so that a test can kill -9 it.
func serveChild(dir string) {
	cfg := daemon.Defaults(dir)
	cfg.Binary, _ = os.Executable()
	cfg.Isolation = os.Getenv("VEIL_TEST_ISOLATION")
	cfg.ExactReleaseTimingForTests = true // the test follows jobs at once
	cfg.AuditKey = os.Getenv("VEIL_TEST_AUDIT_KEY")
	if a := os.Getenv("VEIL_TEST_AUDIT_ARCHIVES"); a != "" {
		cfg.AuditArchives = strings.Split(a, ",")
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv, err := daemon.New(context.Background(), cfg, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "serve-child:", err)
		os.Exit(1)
	}
	if err := srv.Serve(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "serve-child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// endless is a granted, valid query that does not finish in any reasonable time: a six-way
// self-join on district over 100 residents (60^6 rows for one district).
const endless = `SELECT a.district, COUNT(*) AS n FROM residents a
	JOIN residents b ON a.district = b.district JOIN residents c ON b.district = c.district
	JOIN residents d ON c.district = d.district JOIN residents e ON d.district = e.district
	JOIN residents f ON e.district = f.district GROUP BY a.district`

// grantFor registers the residents fixture and returns an active grant of vendor for it.
func waitStatus(t *testing.T, c *client.Client, id, status string) api.Job {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		j, err := c.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status == status {
			return j
		}
		if terminal(j.Status) && j.Status != status {
			t.Fatalf("job %s ended %s (%s), want %s", id, j.Status, j.Message, status)
		}
	}
	t.Fatalf("job %s never reached %s", id, status)
	return api.Job{}
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create sandboxes (CI runs as root); skipped")
	}
}

// TestJobLimitWhileOthersRun runs a job that breaches its wall-clock limit next to another
// tenant's job: the first ends with a status the vendor can act on, the second finishes, and
// the daemon answers throughout.
func TestJobLimitWhileOthersRun(t *testing.T) {
	needRoot(t)
	e := start(t, func(c *daemon.Config) { c.JobWall = 2 * time.Second; c.Workers = 2 })
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	rival := e.principal("rival analyst", "vendor", "rival")
	gAcme := e.grantFor(acme)
	prov2 := e.principal("civil affairs 2", "provider", "civil-affairs")
	auth2 := e.principal("data bureau 2", "authority", "")
	gRival := e.grantWith(rival, auth2, prov2)

	slow, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gAcme, SQL: endless})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, acme, slow.ID, "running")
	quick, err := rival.SubmitJob(ctx, api.SubmitJob{Grant: gRival, SQL: "SELECT district, COUNT(*) FROM residents GROUP BY district"})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitStatus(t, rival, quick.ID, "review"); j.Status != "review" {
		t.Fatalf("the other tenant's job: %+v", j)
	}
	if _, err := e.op.Whoami(ctx); err != nil {
		t.Fatalf("daemon stopped answering: %v", err)
	}
	// The vendor reads the class of failure; which limit is the operator's.
	j := waitStatus(t, acme, slow.ID, "failed")
	if j.Message != launch.ClassMessage(launch.ClassLimit) || strings.Contains(j.Message, "time limit") {
		t.Fatalf("message %q: want the resource limit class, not which limit", j.Message)
	}
	if !strings.Contains(e.log.String(), "time limit") {
		t.Fatalf("the operator's log does not name the time limit:\n%s", e.log.String())
	}
}

// TestKill9DuringJob kills the daemon with SIGKILL while a job runs in its sandbox, restarts
// it, and checks that nothing is left behind and the job ends in a clear state.
func TestKill9DuringJob(t *testing.T) {
	needRoot(t)
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	gid := e.grantFor(acme)
	e.stop()

	exe, _ := os.Executable()
	child := exec.Command(exe, "serve-child", e.cfg.DataDir)
	child.Env = append(os.Environ(), "VEIL_TEST_ISOLATION="+e.cfg.Isolation)
	child.Stderr = os.Stderr
	os.Remove(e.cfg.Socket)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	for i := 0; ; i++ {
		if _, err := acme.Whoami(ctx); err == nil {
			break
		}
		if i > 500 {
			t.Fatal("child daemon did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: endless})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, acme, j.ID, "running")
	containers := filepath.Join(e.cfg.DataDir, "sandbox")
	// The job runs in a sandbox of the pool (named veil-pool-…, its job recorded beside it)
	// or in one named after it: wait until it has one.
	var before, names, cgroups []string
	for deadline := time.Now().Add(30 * time.Second); len(cgroups) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		names = jobSandboxes(containers, j.ID)
		for _, n := range names {
			cgroups = append(cgroups, cgroupsLeft(t, n)...)
		}
	}
	time.Sleep(300 * time.Millisecond) // let the runner start on the job
	before = leftovers(t, containers)
	if len(before) == 0 || len(cgroups) == 0 {
		t.Fatalf("no container state (%v) or cgroup (%v of %v) found for the running job: the leftover checks below would prove nothing", before, cgroups, names)
	}
	if err := child.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	t.Logf("state left by the killed daemon: %v", before)

	e.boot()
	got := waitStatus(t, acme, j.ID, "failed")
	if !strings.Contains(got.Message, "restarted") {
		t.Errorf("message %q", got.Message)
	}
	// The restarted daemon prepares sandboxes of its own; none of the killed one's is left.
	left := map[string]bool{}
	for _, p := range leftovers(t, containers) {
		left[p] = true
	}
	for _, p := range before {
		if left[p] {
			t.Errorf("after restart, left behind: %s", p)
		}
	}
	for _, p := range before {
		if cg := cgroupsLeft(t, filepath.Base(p)); len(cg) != 0 {
			t.Errorf("cgroups left behind: %v", cg)
		}
	}
	if cg := cgroupsLeft(t, j.ID); len(cg) != 0 {
		t.Errorf("cgroups left behind: %v", cg)
	}
	// The daemon works: a new job on the same grant runs to review.
	j2, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) FROM residents GROUP BY district"})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, acme, j2.ID, "review")
}

// leftovers lists container state directories under the sandbox state dir.
func leftovers(t *testing.T, dir string) []string {
	var found []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "veil-") {
			found = append(found, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	return found
}

// jobSandboxes names the containers of job id under the sandbox state dir: the one named
// after it, and a pooled one whose hand-over to the job is recorded under assigned/.
func jobSandboxes(dir, id string) []string {
	names := []string{"veil-" + id}
	marks, _ := os.ReadDir(filepath.Join(dir, "assigned"))
	for _, m := range marks {
		if b, err := os.ReadFile(filepath.Join(dir, "assigned", m.Name())); err == nil && string(b) == id {
			names = append(names, m.Name())
		}
	}
	return names
}

// cgroupsLeft lists cgroup directories named after the job, in every hierarchy.
func cgroupsLeft(t *testing.T, id string) []string {
	var found []string
	// Each daemon's jobs live under its own parent, /veil-<hash of its state dir>.
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/veil*")
	more, _ := filepath.Glob("/sys/fs/cgroup/veil*")
	roots = append(roots, more...)
	for _, r := range roots {
		m, _ := filepath.Glob(filepath.Join(r, "*"+id+"*"))
		found = append(found, m...)
	}
	return found
}

func terminal(s string) bool {
	return s == "review" || s == "released" || s == "rejected" || s == "failed" || s == "canceled"
}
