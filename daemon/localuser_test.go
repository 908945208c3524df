package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
)

// TestLocalUserCannotReadData: the data directory is traversable by every local user (the
// sandboxes' unprivileged roots reach their files through it) and the registered files and
// their projections are readable by others, so their paths must be the daemon's secret. A
// vendor knows a dataset's version (its grant names it), the granted columns and the
// fixture's file name: from those alone it computed where the registered file and the
// grant's projection (every row of the granted columns, the privacy unit among them) lay,
// and read them as any local user.
func TestLocalUserCannotReadData(t *testing.T) {
	needRoot(t)
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	e.registerResidents(prov)
	gid := e.grantWith(acme, auth, prov)
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n FROM residents GROUP BY district"})
	if err != nil {
		t.Fatal(err)
	}
	if j = waitEnd(t, acme, j.ID); j.Status != "review" {
		t.Fatalf("the job ended %s: %s", j.Status, j.Message)
	}
	// What the vendor reads of its grant: the version and the columns.
	g, err := acme.GetGrant(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	version := g["versions"].(map[string]any)["residents"].(string)
	var cols []string
	for _, d := range g["datasets"].([]any) {
		for _, c := range d.(map[string]any)["columns"].([]any) {
			cols = append(cols, c.(string))
		}
	}
	tag := sha256.Sum256([]byte("veil projection version\x00" + version))
	guesses := []string{
		filepath.Join(e.cfg.DataDir, "datasets", "residents", version[:16], "residents.parquet"),
		filepath.Join(e.cfg.DataDir, "projections", "residents", hex.EncodeToString(tag[:8])+"-"+engine.ProjectionKey(version, cols), "0000.parquet"),
	}
	for _, p := range guesses {
		cat := exec.Command("cat", p)
		cat.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := cat.Output(); err == nil {
			t.Errorf("a local user (nobody) read %s, %d bytes, at a path computed from what the vendor knows", p, len(out))
		}
	}
	// The files are there, where only the daemon knows.
	ents, _ := os.ReadDir(filepath.Join(e.cfg.DataDir, "projections", "residents"))
	if len(ents) == 0 {
		t.Error("no projection was made: the test no longer looks where jobs read")
	}
}
