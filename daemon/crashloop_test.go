package daemon_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// crashCycles is how many kill -9 cycles TestCrashLoop runs: a few in the suite, more with
// VEIL_CRASH_CYCLES (the long run does 1000; see bench/RESULTS.md).
func crashCycles(t *testing.T) int {
	if v := os.Getenv("VEIL_CRASH_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("VEIL_CRASH_CYCLES=%q: want a number of cycles", v)
		}
		return n
	}
	return 10
}

// crashState is what the workload was told was done: acknowledged writes.
type crashState struct {
	mu         sync.Mutex
	principals map[string]bool // names
	jobs       map[string]bool // ids
	approved   map[string]bool // job ids whose approval was acknowledged

	// What the checks after the crashes verified of the log so far: each check reads and
	// verifies only the entries added since (the last check verifies all of it again).
	head                *client.VerifiedHead
	approvals, releases map[string]int // by object, from the verified entries
}

// TestCrashLoop kills a real daemon process (the test binary playing veil serve) with
// SIGKILL at random moments under a mixed workload: principals created, dp jobs submitted
// and run (in sandboxes when root), outputs approved and released. After each restart it
// checks that every acknowledged write is there, that the ledger sums exactly, that nothing
// was released twice or without an approval, that the log verifies and extends the
// checkpoint kept before the crash; at the end, that no sandbox remains.
func TestCrashLoop(t *testing.T) {
	cycles := crashCycles(t)
	outside := t.TempDir()
	e := start(t, func(c *daemon.Config) {
		c.AuditKey = filepath.Join(outside, "keys", "platform.key")
		c.AuditArchives = []string{filepath.Join(outside, "archive")}
		os.Mkdir(c.AuditArchives[0], 0o700)
	})
	ctx := context.Background()
	vendor := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	aud := e.principal("inspector", "auditor", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gid, err := e.dpGrant(vendor, auth, prov, "crash loop", 8, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	e.stop()
	st := &crashState{principals: map[string]bool{}, jobs: map[string]bool{}, approved: map[string]bool{},
		approvals: map[string]int{}, releases: map[string]int{}}
	vkey := vkeyOf(t, e)
	var kept []client.Kept
	began := time.Now()
	for cycle := range cycles {
		child := serveChildProcess(t, e)
		if cycle > 0 || len(kept) > 0 {
			checkCrash(t, e, st, gid, vendor, aud, vkey, kept, false)
		}
		if cp, err := aud.AuditCheckpoint(ctx); err == nil {
			kept = []client.Kept{{Name: fmt.Sprintf("before crash %d", cycle), Note: cp.Note}}
		}
		wctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { // principals
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				name := fmt.Sprintf("c%d-%d", cycle, i)
				if _, err := e.op.CreatePrincipal(wctx, api.CreatePrincipal{Name: name, Role: "reviewer"}); err == nil {
					st.mu.Lock()
					st.principals[name] = true
					st.mu.Unlock()
				}
			}
		}()
		go func() { // dp jobs
			defer wg.Done()
			for wctx.Err() == nil {
				j, err := vendor.SubmitJob(wctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) FROM residents GROUP BY district", DP: &api.DPOptions{Epsilon: 0.001}})
				if err == nil {
					st.mu.Lock()
					st.jobs[j.ID] = true
					st.mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		go func() { // approvals
			defer wg.Done()
			for wctx.Err() == nil {
				rs, err := rev.Reviews(wctx)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				for _, j := range rs {
					rv, err := rev.Review(wctx, j.ID)
					if err != nil {
						continue
					}
					if _, err := rev.Decide(wctx, j.ID, "approve", rv.Digest, ""); err == nil {
						st.mu.Lock()
						st.approved[j.ID] = true
						st.mu.Unlock()
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		time.Sleep(time.Duration(100+rand.IntN(2400)) * time.Millisecond)
		child.Process.Signal(os.Kill)
		child.Wait()
		cancel()
		wg.Wait()
		if (cycle+1)%50 == 0 {
			t.Logf("%d cycles in %v, invariants held after each", cycle+1, time.Since(began).Round(time.Second))
		}
	}
	elapsed := time.Since(began)
	e.boot()
	checkCrash(t, e, st, gid, vendor, aud, vkey, kept, true)
	st.mu.Lock()
	t.Logf("%d kill -9 cycles in %v (%.1f cycles/min): %d principals, %d jobs, %d approvals acknowledged, all present",
		cycles, elapsed.Round(time.Second), float64(cycles)/elapsed.Minutes(), len(st.principals), len(st.jobs), len(st.approved))
	ids := make([]string, 0, len(st.jobs))
	for id := range st.jobs {
		ids = append(ids, id)
	}
	st.mu.Unlock()
	e.stop()
	if left := leftovers(t, filepath.Join(e.cfg.DataDir, "sandbox")); len(left) != 0 {
		t.Errorf("sandbox state left behind: %v", left)
	}
	for _, id := range ids {
		if cg := cgroupsLeft(t, id); len(cg) != 0 {
			t.Errorf("cgroups left behind: %v", cg)
		}
	}
	// Nor any other cgroup under the daemon's parent: those of sandboxes prepared ahead
	// (veil-pool-…, named after no job), also of the pools of the killed daemons.
	if cg := sandboxCgroupsLeft(t, filepath.Join(e.cfg.DataDir, "sandbox")); len(cg) != 0 {
		t.Errorf("sandbox cgroups left behind: %v", cg)
	}
}

// sandboxCgroupsLeft lists the container cgroups (veil-…) under the cgroup parent of the
// sandbox state directory dir (/veil-<hash of dir>, as sandbox.New names it), in every
// hierarchy.
func sandboxCgroupsLeft(t *testing.T, dir string) []string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(abs))
	parent := "veil-" + hex.EncodeToString(sum[:6])
	var found []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/" + parent + "/veil-*", "/sys/fs/cgroup/" + parent + "/veil-*"} {
		m, _ := filepath.Glob(pattern)
		found = append(found, m...)
	}
	return found
}

// checkCrash checks the invariants on a running daemon after a crash. The log is verified
// incrementally, from where the previous check ended (st.head), so that a check costs what
// the cycle added, not the whole log; full verifies the whole log as well, as the last
// check does.
func checkCrash(t *testing.T, e *env, st *crashState, gid string, vendor, aud *client.Client, vkey string, kept []client.Kept, full bool) {
	t.Helper()
	ctx := context.Background()
	st.mu.Lock()
	defer st.mu.Unlock()
	ps, err := e.op.Principals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range ps {
		have[p.Name] = true
	}
	for name := range st.principals {
		if !have[name] {
			t.Fatalf("acknowledged principal %s is gone after the crash", name)
		}
	}
	js, err := vendor.Jobs(ctx, gid, "")
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, j := range js {
		status[j.ID] = j.Status
	}
	for id := range st.jobs {
		if status[id] == "" {
			t.Fatalf("acknowledged job %s is gone after the crash", id)
		}
	}
	for id := range st.approved {
		if status[id] != "released" {
			t.Fatalf("job %s: its approval was acknowledged, but it is %s", id, status[id])
		}
	}
	// The ledger: what the API reports spent is the exact sum of the spends that count, no
	// job spent twice, and the grant's slice holds.
	db, err := sql.Open("sqlite3", "file:"+e.cfg.StorePath()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sum, most int64
	if err := db.QueryRow(`SELECT COALESCE(SUM(eps), 0) FROM budget_spends WHERE grant_id = ? AND NOT refunded`, gid).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM budget_spends WHERE grant_id = ? AND NOT refunded GROUP BY job_id, dataset)`, gid).Scan(&most); err != nil {
		t.Fatal(err)
	}
	if spent := spentUnits(t, vendor, gid); spent != sum || sum > 8_000_000 {
		t.Fatalf("ledger: the API reports %d units spent, the spends sum to %d (slice 8000000)", spent, sum)
	}
	if most > 1 {
		t.Fatalf("ledger: a job spent %d times", most)
	}
	// The log: what was added since the last check verifies and extends the tree verified
	// then; the latest tree extends the checkpoint kept before the crash. Entries committed
	// before the jobs were read (a release among them) are signed right after their commit:
	// wait for the checkpoint that covers them, since only signed entries are verified.
	tail, err := aud.AuditRecords(ctx, 0, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	for wait := 0; ; wait++ {
		cp, err := aud.AuditCheckpoint(ctx)
		if err == nil && cp.Size >= tail.Size {
			break
		}
		if wait == 3000 {
			t.Fatalf("the log has %d entries, but no checkpoint covers them after a minute (%v)", tail.Size, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	head, added, err := aud.VerifyAuditIncrement(ctx, vkey, st.head)
	if err != nil {
		t.Fatalf("after the crash the entries added since the last check do not verify: %v", err)
	}
	st.head = head
	v, _, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kept {
		if err := aud.CheckKept(ctx, v, k, audit.Checkpoint{Size: head.Size, Note: head.Note}); err != nil {
			t.Fatalf("after the crash the log does not extend the checkpoint kept before it: %v", err)
		}
	}
	if full {
		if _, err := aud.VerifyAuditSince(ctx, vkey, kept); err != nil {
			t.Fatalf("the whole log does not verify, or does not extend the checkpoint kept before the last crash: %v", err)
		}
	}
	// Releases: once each, and only after an approval, in the log's order.
	for _, rec := range added {
		x, err := audit.DecodeEntry(rec)
		if err != nil {
			t.Fatal(err)
		}
		switch x.Action {
		case "review.approve":
			st.approvals[x.Object]++
		case "job.release":
			if st.approvals[x.Object] == 0 {
				t.Fatalf("%s released without an approval before it in the log", x.Object)
			}
			st.releases[x.Object]++
		}
	}
	for id, s := range status {
		if n := st.releases["job/"+id]; n > 1 || (s == "released") != (n == 1) {
			t.Fatalf("job %s is %s with %d release entries", id, s, n)
		}
	}
}
