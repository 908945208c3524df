package doctor

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon"
)

// initDir makes a data directory with veil init's own code, under a parent the sandbox's
// root can traverse.
func initDir(t *testing.T) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "veil-doctor-") // t.TempDir's parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "data")
	if _, err := daemon.Init(context.Background(), daemon.Defaults(dir)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func find(t *testing.T, r Report, name string) Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return Check{}
}

// dataChecks are the checks of the data directory, which do not depend on the host.
var dataChecks = []string{"data-dir", "disk", "store", "audit-log", "platform-key", "daemon"}

// startChecks are the daemon's own start-up checks, which any change to the store file made
// while Veil was stopped trips as well.
var startChecks = []string{"shutdown-marker", "audit-signer"}

// TestDoctorOnFreshDataDir checks that what veil init makes passes every check of the data
// directory: the modes doctor wants are the modes Veil gives.
func TestDoctorOnFreshDataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the data directory is the daemon's (root's) and its key is owner-only")
	}
	dir := initDir(t)
	r := Run(context.Background(), Options{DataDir: dir, MinFreeBytes: 1})
	for _, name := range dataChecks {
		if c := find(t, r, name); c.Status != OK {
			t.Errorf("%s: %s: %s (fix: %s)", name, c.Status, c.Detail, c.Fix)
		}
	}
	for _, c := range r.Checks {
		if c.Status == Fail {
			t.Errorf("%s failed on this host: %s (fix: %s)", c.Name, c.Detail, c.Fix)
		}
	}
	if !r.OK {
		t.Errorf("report not OK: %+v", r.Failed())
	}
	// Nothing in the data directory was changed by looking.
	if fi, err := os.Stat(filepath.Join(dir, "veil.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("store after doctor: %v %v", fi.Mode(), err)
	}
}

// TestDoctorFindsFaults breaks a fresh data directory one way at a time and checks that the
// right check fails and says what to do.
func TestDoctorFindsFaults(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the data directory is the daemon's (root's) and its key is owner-only")
	}
	exec := func(t *testing.T, dir, query string, args ...any) {
		t.Helper()
		db, err := sql.Open("sqlite3", filepath.Join(dir, "veil.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(query, args...); err != nil {
			t.Fatal(err)
		}
	}
	otherKey := func(t *testing.T) string {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		k, err := audit.NewKey("veil-platform", priv)
		if err != nil {
			t.Fatal(err)
		}
		return k.VerifierKey()
	}
	for _, c := range []struct {
		name    string
		breakIt func(t *testing.T, dir string)
		check   string
		status  Status
		detail  string // in the check's detail
		fix     string // in its fix; "<dir>" is the data directory
		minFree uint64
		also    string // another check the fault fails too
	}{
		{name: "platform key readable by others", check: "data-dir", status: Fail, detail: "others can reach a secret", fix: "chmod 600 <dir>/keys/platform.key",
			breakIt: func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "keys", "platform.key"), 0o644) }},
		{name: "keys directory open", check: "data-dir", status: Fail, detail: "keys has mode 0755", fix: "chmod 700 <dir>/keys",
			breakIt: func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "keys"), 0o755) }},
		{name: "store readable by others", check: "data-dir", status: Fail, detail: "veil.db has mode 0644", fix: "chmod 600 <dir>/veil.db",
			breakIt: func(t *testing.T, dir string) { os.Chmod(filepath.Join(dir, "veil.db"), 0o644) }},
		{name: "data dir not traversable", check: "data-dir", status: Fail, detail: "cannot traverse", fix: "chmod o+x <dir>",
			breakIt: func(t *testing.T, dir string) { os.Chmod(dir, 0o700) }},
		{name: "data dir listable", check: "data-dir", status: Warn, detail: "others can list it", fix: "chmod 711 <dir>",
			breakIt: func(t *testing.T, dir string) { os.Chmod(dir, 0o755) }},
		{name: "parent not traversable", check: "data-dir", status: Fail, detail: "above the data directory", fix: "chmod o+x",
			breakIt: func(t *testing.T, dir string) { os.Chmod(filepath.Dir(dir), 0o700) }},
		{name: "dataset file unreadable by jobs", check: "data-dir", status: Fail, detail: "jobs cannot read it", fix: "chmod o+r <dir>/datasets/d/v/part.parquet",
			breakIt: func(t *testing.T, dir string) {
				os.MkdirAll(filepath.Join(dir, "datasets", "d", "v"), 0o711)
				os.WriteFile(filepath.Join(dir, "datasets", "d", "v", "part.parquet"), []byte("x"), 0o400)
			}},
		{name: "dataset file writable by its group", check: "data-dir", status: Fail, detail: "writable by others", fix: "chmod go-w <dir>/datasets/d/v/part.parquet",
			breakIt: func(t *testing.T, dir string) {
				os.MkdirAll(filepath.Join(dir, "datasets", "d", "v"), 0o711)
				p := filepath.Join(dir, "datasets", "d", "v", "part.parquet")
				os.WriteFile(p, []byte("x"), 0o644)
				os.Chmod(p, 0o664)
			}},
		{name: "dataset directory not traversable", check: "data-dir", status: Fail, detail: "cannot traverse", fix: "chmod o+x <dir>/datasets/d",
			breakIt: func(t *testing.T, dir string) { os.MkdirAll(filepath.Join(dir, "datasets", "d"), 0o700) }},
		{name: "owned by another user", check: "data-dir", status: Fail, detail: "owned by uid 4242", fix: "chown 0 <dir>/platform.pub",
			breakIt: func(t *testing.T, dir string) { os.Chown(filepath.Join(dir, "platform.pub"), 4242, 4242) }},
		{name: "store missing", check: "store", also: "audit-log", status: Fail, detail: "no store", fix: "restore veil.db",
			breakIt: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "veil.db")) }},
		{name: "store damaged", check: "store", also: "audit-log", status: Fail, fix: "restore veil.db from the latest backup",
			breakIt: func(t *testing.T, dir string) {
				f, err := os.OpenFile(filepath.Join(dir, "veil.db"), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				// Page 2 onwards: the tables' b-trees; the header stays, so SQLite opens the file.
				junk := make([]byte, 8192)
				for i := range junk {
					junk[i] = byte(i*7 + 3)
				}
				f.WriteAt(junk, 4096)
			}},
		{name: "audit record changed", check: "audit-log", status: Fail, detail: "record 0", fix: "do not serve from this store",
			breakIt: func(t *testing.T, dir string) {
				exec(t, dir, `UPDATE audit_records SET data = CAST(REPLACE(CAST(data AS TEXT), 'operator', 'vendor') AS BLOB) WHERE idx = 0`)
			}},
		{name: "audit checkpoint removed", check: "audit-log", status: Fail, detail: "not covered by any signed checkpoint", fix: "do not serve from this store",
			breakIt: func(t *testing.T, dir string) { exec(t, dir, `DELETE FROM audit_checkpoints`) }},
		{name: "platform.pub replaced", check: "platform-key", also: "audit-log", status: Fail, detail: "is not the public half", fix: "restore platform.pub",
			breakIt: func(t *testing.T, dir string) {
				os.WriteFile(filepath.Join(dir, "platform.pub"), []byte(otherKey(t)+"\n"), 0o644)
			}},
		{name: "platform.pub replaced, so checkpoints do not verify", check: "audit-log", also: "platform-key", status: Fail, detail: "does NOT verify",
			breakIt: func(t *testing.T, dir string) {
				os.WriteFile(filepath.Join(dir, "platform.pub"), []byte(otherKey(t)+"\n"), 0o644)
			}},
		{name: "store file changed while stopped", check: "shutdown-marker", status: Fail, detail: "is not the file Veil shut down", fix: "restore the store",
			breakIt: func(t *testing.T, dir string) {
				exec(t, dir, `UPDATE principals SET name = 'someone else'`)
			}},
		{name: "audit log truncated", check: "audit-signer", also: "shutdown-marker", status: Fail, detail: "entries were removed", fix: "do not serve from this store",
			breakIt: func(t *testing.T, dir string) {
				exec(t, dir, `DELETE FROM audit_records`)
				exec(t, dir, `DELETE FROM audit_hashes`)
				exec(t, dir, `DELETE FROM audit_checkpoints`)
			}},
		{name: "signer state removed", check: "audit-signer", status: Fail, detail: "no audit signer state", fix: "put the signer's state file back",
			breakIt: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "keys", "audit.state")) }},
		{name: "disk below the floor", check: "disk", status: Fail, detail: "below the floor", fix: "--min-free-mb", minFree: 1 << 62,
			breakIt: func(t *testing.T, dir string) {}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := initDir(t)
			c.breakIt(t, dir)
			minFree := c.minFree
			if minFree == 0 {
				minFree = 1
			}
			r := Run(context.Background(), Options{DataDir: dir, MinFreeBytes: minFree})
			got := find(t, r, c.check)
			fix := strings.ReplaceAll(c.fix, "<dir>", dir)
			if got.Status != c.status || !strings.Contains(got.Detail, c.detail) || !strings.Contains(got.Fix, fix) {
				t.Errorf("%s: %s %q (fix %q); want %s with %q and fix %q", c.check, got.Status, got.Detail, got.Fix, c.status, c.detail, fix)
			}
			if (c.status == Fail) == r.OK {
				t.Errorf("report OK=%v with a %s check", r.OK, c.status)
			}
			// Everything else is still fine: one fault, one finding.
			others := dataChecks
			if slices.Contains(startChecks, c.check) {
				others = append(slices.Clone(dataChecks), startChecks...)
			}
			for _, name := range others {
				if other := find(t, r, name); name != c.check && name != c.also && other.Status == Fail {
					t.Errorf("%s also failed: %s", name, other.Detail)
				}
			}
		})
	}
}

func TestKernelRelease(t *testing.T) {
	for _, c := range []struct {
		in           string
		major, minor int
		bad          bool
	}{
		{"6.1.0-18-amd64", 6, 1, false},
		{"5.19.17", 5, 19, false},
		{"4.15.0-213-generic", 4, 15, false},
		{"6.18.44-fc-v1045", 6, 18, false},
		{"3", 0, 0, true},
		{"", 0, 0, true},
	} {
		major, minor, err := kernelRelease(c.in)
		if (err != nil) != c.bad || major != c.major || minor != c.minor {
			t.Errorf("kernelRelease(%q) = %d, %d, %v", c.in, major, minor, err)
		}
	}
	if !older(4, 14, minKernel) || older(4, 15, minKernel) || !older(5, 18, peakKernel) || older(6, 0, peakKernel) {
		t.Error("older: wrong order of versions")
	}
}

func TestMissingControllers(t *testing.T) {
	if m := missing("cpuset cpu io memory hugetlb pids rdma misc\n", v2Controllers); len(m) != 0 {
		t.Errorf("missing = %v, want none", m)
	}
	if m := missing("cpuset io memory\n", v2Controllers); strings.Join(m, ",") != "cpu,pids" {
		t.Errorf("missing = %v, want cpu, pids", m)
	}
	// "cpuset" is not "cpu".
	if m := missing("cpuset memory pids", v2Controllers); strings.Join(m, ",") != "cpu" {
		t.Errorf("missing = %v, want cpu", m)
	}
}
