package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/veil-dp/veil/backup"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
)

// TestBackupUnderLoadRestores: a backup taken while jobs run, restored into a new data
// directory, serves every grant, job, output, export and certificate, runtime and budget the
// original served; a backup older than a kept checkpoint is refused (unless forced); a backup
// changed after it was taken is refused; a refused restore leaves nothing behind.
func TestBackupUnderLoadRestores(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	ap, err := e.op.CreatePrincipal(ctx, api.CreatePrincipal{Name: "acme analyst", Role: "vendor", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	acme := e.client(ap.Token)
	opTok := e.opToken(t)
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gid, err := e.dpGrant(acme, auth, prov, "district statistics", 2, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	img := t.TempDir()
	os.MkdirAll(filepath.Join(img, "etc"), 0o755)
	os.WriteFile(filepath.Join(img, "etc", "os-release"), []byte("NAME=veil-test-runtime\n"), 0o644)
	if _, err := e.op.RegisterRuntime(ctx, api.RegisterRuntime{Name: "static", Path: img}); err != nil {
		t.Fatal(err)
	}
	// A released job: its export and certificate must be served alike after the restore.
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n FROM residents GROUP BY district", DP: &api.DPOptions{Epsilon: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		t.Fatalf("job %+v: %v", j, err)
	}
	if _, err := rev.Decide(ctx, j.ID, "approve", reviewedDigest(t, rev, j.ID), ""); err != nil {
		t.Fatal(err)
	}
	released, err := acme.Export(ctx, j.ID, "csv")
	if err != nil {
		t.Fatal(err)
	}
	before := latestCheckpoint(t, e, opTok)
	grantBefore, _ := acme.GetGrant(ctx, gid)
	runtimesBefore, _ := e.op.Runtimes(ctx)
	budgetBefore, _ := e.op.Budgets(ctx)

	// Load: jobs queued and running while the backup is taken.
	var load []string
	for range 3 {
		lj, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT COUNT(*) FROM residents", DP: &api.DPOptions{Epsilon: 0.1}})
		if err != nil {
			t.Fatal(err)
		}
		load = append(load, lj.ID)
	}
	bdir := filepath.Join(t.TempDir(), "backup")
	m, err := backup.Create(ctx, e.cfg.DataDir, bdir)
	if err != nil {
		t.Fatalf("backup under load: %v", err)
	}
	inFlight := 0
	for _, id := range load {
		if lj, err := acme.Job(ctx, id); err == nil && (lj.Status == "queued" || lj.Status == "running") {
			inFlight++
		}
	}
	t.Logf("backup of %d entries, audit log of %d; %d of %d load jobs still in flight after it", len(m.Entries), m.Audit.Entries, inFlight, len(load))
	kinds := map[string]bool{}
	for _, en := range m.Entries {
		kinds[strings.SplitN(en.Path, "/", 2)[0]] = true
		if strings.HasPrefix(en.Path, "sandbox") || strings.HasPrefix(en.Path, "work") || en.Path == "veil.sock" {
			t.Errorf("the backup holds %s", en.Path)
		}
	}
	for _, want := range []string{"veil.db", "keys", "platform.pub", "datasets", "runtimes"} {
		if !kinds[want] {
			t.Errorf("the backup has no %s: %v", want, kinds)
		}
	}
	for _, id := range load {
		if _, err := acme.Wait(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The log grows past the backup; its checkpoint is kept.
	e.principal("later", "auditor", "")
	after := latestCheckpoint(t, e, opTok)
	if after.Size <= m.Audit.Entries {
		t.Fatalf("checkpoint after the backup: %d entries (backup: %d entries)", after.Size, m.Audit.Entries)
	}
	e.stop()
	// The original is gone: the restored directory must not lean on it.
	if err := os.RemoveAll(e.cfg.DataDir); err != nil {
		t.Fatal(err)
	}

	tmp, err := os.MkdirTemp("", "veil-rst-") // short: the socket lives in it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o711); err != nil { // the sandbox's root traverses it
		t.Fatal(err)
	}
	target := filepath.Join(tmp, "d")

	_, err = backup.Restore(ctx, bdir, target, backup.RestoreOptions{Checkpoints: []backup.Kept{{Name: "after", Note: after.Note}}})
	if !errors.Is(err, backup.ErrStale) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore of a backup older than a kept checkpoint: %v", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore left %s: %v", target, err)
	}

	// A changed byte in a dataset file is found, whatever the store says.
	var dataFile string
	for _, en := range m.Entries {
		if strings.HasPrefix(en.Path, "datasets/") && en.Type == "file" {
			dataFile = filepath.Join(bdir, filepath.FromSlash(en.Path))
		}
	}
	orig, err := os.ReadFile(dataFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := append([]byte(nil), orig...)
	changed[len(changed)/2] ^= 1
	os.Chmod(dataFile, 0o644)
	os.WriteFile(dataFile, changed, 0o644)
	if _, err := backup.Restore(ctx, bdir, target, backup.RestoreOptions{}); !errors.Is(err, backup.ErrDamaged) {
		t.Fatalf("restore of a changed backup: %v", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore left %s: %v", target, err)
	}
	os.WriteFile(dataFile, orig, 0o644)

	r, err := backup.Restore(ctx, bdir, target, backup.RestoreOptions{Checkpoints: []backup.Kept{{Name: "before", Note: before.Note}}})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if r.Audit.Entries != m.Audit.Entries || len(r.Stale) != 0 {
		t.Fatalf("restored %+v, backed up %+v", r, m.Audit)
	}

	// A daemon on the restored directory, the same tokens.
	e2 := &env{t: t, cfg: e.cfg, host: "unix://" + filepath.Join(target, "veil.sock")}
	e2.cfg.DataDir, e2.cfg.Socket = target, filepath.Join(target, "veil.sock")
	e2.boot()
	e2.op = e2.client(opTok)
	acme2 := e2.client(ap.Token)

	if g, err := acme2.GetGrant(ctx, gid); err != nil || !reflect.DeepEqual(g, grantBefore) {
		t.Errorf("grant after the restore:\n%v\nbefore:\n%v (%v)", g, grantBefore, err)
	}
	if rts, err := e2.op.Runtimes(ctx); err != nil || !reflect.DeepEqual(rts, runtimesBefore) {
		t.Errorf("runtimes after the restore: %+v, before %+v (%v)", rts, runtimesBefore, err)
	}
	b, err := os.ReadFile(filepath.Join(target, "runtimes", "static.json"))
	if err != nil || !strings.Contains(string(b), target) || strings.Contains(string(b), e.cfg.DataDir) {
		t.Errorf("the runtime record still names the old data directory: %s %v", b, err)
	}
	ex, err := acme2.Export(ctx, j.ID, "csv")
	if err != nil {
		t.Fatal(err)
	}
	vkey := strings.TrimSpace(readFile(t, filepath.Join(target, "platform.pub")))
	if string(ex.Data) != string(released.Data) {
		t.Errorf("export after the restore:\n%s\nbefore:\n%s", ex.Data, released.Data)
	}
	for _, cert := range [][]byte{released.Certificate, ex.Certificate} {
		if _, err := client.VerifyExport(vkey, ex.Data, cert); err != nil {
			t.Errorf("certificate after the restore: %v", err)
		}
	}
	// Every load job the backup saw is there and ends; the budget is the one before the
	// load plus at most what the load could spend, never above the grant's slice.
	for _, id := range load {
		lj, err := acme2.Wait(ctx, id, nil)
		if err != nil {
			t.Fatalf("load job %s after the restore: %v", id, err)
		}
		// Queued in the snapshot: it runs. Running in it: the restart fails it (refunded).
		if lj.Status != "review" && (lj.Status != "failed" || !strings.Contains(lj.Message, "restarted")) {
			t.Errorf("load job %s after the restore: %s %q", id, lj.Status, lj.Message)
		}
	}
	// A new job reads the dataset's files where the restore put them (the original is gone).
	nj, err := acme2.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: "SELECT district, COUNT(*) AS n FROM residents GROUP BY district", DP: &api.DPOptions{Epsilon: 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	if nj, err = acme2.Wait(ctx, nj.ID, nil); err != nil || nj.Status != "review" {
		t.Fatalf("a job on the restored daemon: %+v %v", nj, err)
	}
	budgetAfter, err := e2.op.Budgets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(budgetAfter.Datasets) != 1 || budgetAfter.Datasets[0].Total != budgetBefore.Datasets[0].Total ||
		budgetAfter.Datasets[0].Allocated != budgetBefore.Datasets[0].Allocated {
		t.Errorf("dataset budget after the restore %+v, before %+v", budgetAfter.Datasets, budgetBefore.Datasets)
	}
	spent0, spent1 := budgetBefore.Datasets[0].Spent.EpsilonUnits, budgetAfter.Datasets[0].Spent.EpsilonUnits
	if spent1 < spent0 || spent1 > spent0+4*100000 {
		t.Errorf("epsilon spent after the restore %d, before the load %d", spent1, spent0)
	}
	if _, err := e2.op.VerifyAudit(ctx, vkey); err != nil {
		t.Errorf("audit log of the restored daemon: %v", err)
	}

	// Forced, the older backup restores, and says what it overrode.
	forced := filepath.Join(tmp, "f")
	r, err = backup.Restore(ctx, bdir, forced, backup.RestoreOptions{Checkpoints: []backup.Kept{{Name: "after", Note: after.Note}}, Force: true})
	if err != nil || len(r.Stale) != 1 {
		t.Fatalf("forced restore: %+v %v", r, err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// latestCheckpoint is the daemon's latest signed checkpoint, as an auditor keeps it.
func latestCheckpoint(t *testing.T, e *env, token string) api.AuditCheckpoint {
	t.Helper()
	code, body := e.raw("/v1/audit/checkpoint", token)
	var cp api.AuditCheckpoint
	if err := json.Unmarshal(body, &cp); code != 200 || err != nil || len(cp.Note) == 0 {
		t.Fatalf("checkpoint: %d %s %v", code, body, err)
	}
	return cp
}
