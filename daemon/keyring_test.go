package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/backup"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/doctor"
	"github.com/veil-dp/veil/platform"
)

// TestKeyRotation: after a rotation, an export certified before it still verifies (with the
// old key, and with the keyring the daemon publishes), one certified after verifies with the
// keyring and not with the old key alone; the audit log, signed by both keys, verifies with
// the keyring only, on the client and on the daemon.
func TestKeyRotation(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	auth := e.principal("data bureau", "authority", "")
	rev := e.principal("reviewer", "reviewer", "")
	aud := e.principal("inspector", "auditor", "")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	gid, err := e.dpGrant(acme, auth, prov, "district statistics", 2, 0.5)
	if err != nil {
		t.Fatal(err)
	}
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
	before, err := acme.Export(ctx, j.ID, "csv")
	if err != nil {
		t.Fatal(err)
	}
	oldKey, err := e.op.PlatformKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opTok := e.opToken(t)
	// The daemon is stopped before the rotation: it has signed the whole log, whose size
	// bounds the old key's term (as veil key rotate reads it from the store).
	rep, err := aud.VerifyAudit(ctx, oldKey.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}

	keptOld := latestCheckpoint(t, e, opTok)
	e.stop()
	// As veil key rotate does: the log's size in the store of the stopped daemon.
	size := storedLogSize(t, e.cfg.StorePath())
	if size < rep.Records {
		t.Fatalf("stored log %d < served %d", size, rep.Records)
	}
	retired, current, err := platform.RotateKey(e.cfg, size, time.Now())
	if err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if retired.VerifierKey != oldKey.VerifierKey || current.VerifierKey == oldKey.VerifierKey || retired.MaxSize != size {
		t.Fatalf("rotation: retired %+v, current %+v, old key %s", retired, current, oldKey.VerifierKey)
	}
	e.boot()

	newKey, err := e.op.PlatformKey(ctx)
	if err != nil || newKey.VerifierKey != current.VerifierKey {
		t.Fatalf("the daemon serves %s (%v), want the new key %s", newKey.VerifierKey, err, current.VerifierKey)
	}
	kr, err := aud.PlatformKeyring(ctx)
	if err != nil || len(kr.Keys) != 2 || kr.Keys[0].VerifierKey != oldKey.VerifierKey || kr.Keys[0].Until.IsZero() || kr.Keys[1].VerifierKey != current.VerifierKey {
		t.Fatalf("keyring %+v: %v", kr, err)
	}
	b, _ := json.Marshal(kr)
	ring, err := client.ParseKeyring(b)
	if err != nil {
		t.Fatal(err)
	}
	after, err := acme.Export(ctx, j.ID, "csv")
	if err != nil {
		t.Fatal(err)
	}
	if string(after.Data) != string(before.Data) {
		t.Fatalf("the export changed with the key")
	}
	if _, err := client.VerifyExport(oldKey.VerifierKey, before.Data, before.Certificate); err != nil {
		t.Errorf("certificate from before the rotation, old key: %v", err)
	}
	if _, err := client.VerifyExportKeyring(ring, before.Data, before.Certificate); err != nil {
		t.Errorf("certificate from before the rotation, keyring: %v", err)
	}
	if _, err := client.VerifyExportKeyring(ring, after.Data, after.Certificate); err != nil {
		t.Errorf("certificate from after the rotation, keyring: %v", err)
	}
	if _, err := client.VerifyExport(oldKey.VerifierKey, after.Data, after.Certificate); !errors.Is(err, audit.ErrTampered) {
		t.Errorf("certificate from after the rotation verifies with the old key alone: %v", err)
	}
	// The log now holds checkpoints of both keys (new entries: the exports, the restart).
	if _, err := aud.VerifyAuditKeyring(ctx, ring); err != nil {
		t.Errorf("audit log with the keyring: %v", err)
	}
	for name, vkey := range map[string]string{"old": oldKey.VerifierKey, "new": current.VerifierKey} {
		if _, err := aud.VerifyAudit(ctx, vkey); err == nil {
			t.Errorf("the audit log verifies with the %s key alone", name)
		}
	}
	if ok, msg, err := aud.ServerVerify(ctx); err != nil || !ok {
		t.Errorf("the daemon's verification after the rotation: %v %s", err, msg)
	}
	// doctor, backup and restore verify with the keyring too, and a checkpoint kept before
	// the rotation (signed by the old key) still counts.
	bdir := filepath.Join(t.TempDir(), "b")
	if _, err := backup.Create(ctx, e.cfg.DataDir, bdir); err != nil {
		t.Fatalf("backup after a rotation: %v", err)
	}
	if _, err := backup.Restore(ctx, bdir, filepath.Join(t.TempDir(), "r"), backup.RestoreOptions{Checkpoints: []backup.Kept{{Name: "old", Note: keptOld.Note}}}); err != nil {
		t.Fatalf("restore after a rotation, with a checkpoint of the old key: %v", err)
	}
	for _, c := range doctor.Run(ctx, doctor.Options{DataDir: e.cfg.DataDir}).Checks {
		if c.Name == "audit-log" && c.Status == doctor.Fail {
			t.Errorf("doctor after a rotation: %+v", c)
		}
	}
	if !strings.HasPrefix(current.KeyID, audit.KeyID(mustPub(t, current.VerifierKey))[:8]) {
		t.Errorf("key id %s", current.KeyID)
	}
}

func mustPub(t *testing.T, vkey string) []byte {
	_, pub, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func storedLogSize(t *testing.T, path string) int64 {
	t.Helper()
	db, err := doctor.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	n, err := doctor.LogReader(tx).Size(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}
