package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// TestJobsRunInPooledSandboxes: with container isolation a job runs in a sandbox prepared
// ahead (Config.SandboxPool), one sandbox per job: a cancelled job's sandbox is destroyed,
// cgroups and all, and the next job runs to review in another; with a pool of 0 each job's
// sandbox is made for it.
func TestJobsRunInPooledSandboxes(t *testing.T) {
	needRoot(t)
	if isolation(t) != "container" {
		t.Skip("sandbox pools need container isolation")
	}
	for _, size := range []int{daemon.Defaults("").SandboxPool, 0} {
		e := start(t, func(c *daemon.Config) { c.SandboxPool = size })
		ctx := context.Background()
		acme := e.principal("acme analyst", "vendor", "acme")
		gid := e.grantFor(acme)
		containers := filepath.Join(e.cfg.DataDir, "sandbox")
		slow, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: endless})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, acme, slow.ID, "running")
		var box string
		for deadline := time.Now().Add(30 * time.Second); box == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, n := range jobSandboxes(containers, slow.ID) {
				if _, err := os.Stat(filepath.Join(containers, "containers", n)); err == nil {
					box = n
				}
			}
		}
		if pooled := strings.HasPrefix(box, "veil-pool-"); box == "" || pooled != (size > 0) {
			t.Fatalf("pool of %d: the running job's sandbox is %q, want one %s", size, box, map[bool]string{true: "prepared ahead (veil-pool-…)", false: "named after the job"}[size > 0])
		}
		if _, err := acme.CancelJob(ctx, slow.ID); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, acme, slow.ID, "canceled")
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(containers, "containers", box)); os.IsNotExist(err) && len(cgroupsLeft(t, box)) == 0 {
				break
			}
		}
		if _, err := os.Stat(filepath.Join(containers, "containers", box)); !os.IsNotExist(err) {
			t.Errorf("pool of %d: the cancelled job's sandbox %s is still there (%v)", size, box, err)
		}
		if cg := cgroupsLeft(t, box); len(cg) != 0 {
			t.Errorf("pool of %d: cgroups of the cancelled job left: %v", size, cg)
		}
		quick, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) FROM residents GROUP BY district"})
		if err != nil {
			t.Fatal(err)
		}
		waitStatus(t, acme, quick.ID, "review")
		e.stop()
		if left := leftovers(t, containers); len(left) != 0 {
			t.Errorf("pool of %d: sandboxes left after the daemon stopped: %v", size, left)
		}
	}
}
