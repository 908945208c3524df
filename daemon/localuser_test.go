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
	"time"

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

// TestLocalUserCannotReadCustomWork: a custom job's inputs (every row of the granted
// columns) and its /out (the program's output before the gate, a tmpfs every uid may write:
// the container's root is an unprivileged one) lie under work/ on the host while it runs,
// through directories every local user may traverse. Under work/<job id>, a name its vendor
// knows, any local user read the inputs and could read or change the output before the gate.
func TestLocalUserCannotReadCustomWork(t *testing.T) {
	needRoot(t)
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	e.registerResidents(prov)
	gid := e.mustGrant(acme, auth, prov, api.ApplyGrant{Scenario: "own analysis", Purpose: "district profile", Modes: []string{"model"}, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "residents", Columns: []string{"district", "age"}}}})
	img := t.TempDir()
	os.MkdirAll(filepath.Join(img, "etc"), 0o755)
	os.WriteFile(filepath.Join(img, "etc", "os-release"), []byte("NAME=veil-test-runtime\n"), 0o644)
	if _, err := e.op.RegisterRuntime(ctx, api.RegisterRuntime{Name: "static", Path: img}); err != nil {
		t.Fatal(err)
	}
	prog, err := acme.UploadProgram(ctx, buildProgram(t, "wait"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, Custom: &api.CustomJob{Runtime: "static", Program: prog.Digest, Datasets: []string{"residents"}}})
	if err != nil {
		t.Fatal(err)
	}
	// Wait (as root, who may list work/) for the job's inputs, then look where the vendor
	// would, as nobody.
	var out string
	for try := 0; out == "" && try < 3000; try++ {
		_ = filepath.WalkDir(filepath.Join(e.cfg.DataDir, "work"), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Name() == "residents.parquet" {
				out = filepath.Join(filepath.Dir(filepath.Dir(p)), "out")
			}
			return nil
		})
		if out == "" {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if out == "" {
		t.Fatal("the custom job's inputs never appeared under work/")
	}
	defer func() {
		os.WriteFile(filepath.Join(out, "release"), nil, 0o644)
		waitEnd(t, acme, j.ID)
	}()
	for _, p := range []string{filepath.Join(e.cfg.DataDir, "work", j.ID, "in", "residents.parquet"), filepath.Join(e.cfg.DataDir, "work", j.ID, "out")} {
		ls := exec.Command("ls", "-l", p)
		ls.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if b, err := ls.CombinedOutput(); err == nil {
			t.Errorf("a local user (nobody) reached %s, named by the job's id:\n%s", p, b)
		}
	}
}
