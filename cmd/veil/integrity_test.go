package main

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/veil-dp/veil/client"
)

// TestServeKeyOutside is the README's setup through the binary: veil init with the signing
// key (and the signer's state) outside the data directory, veil serve reading the key from
// an inherited descriptor and archiving checkpoints, veil doctor with the same paths; then
// an insider truncates the log while Veil is stopped, and veil serve refuses to start,
// saying why, as veil doctor does.
func TestServeKeyOutside(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a daemon")
	}
	parent, err := os.MkdirTemp("", "veil-key-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	os.Chmod(parent, 0o711)
	data, signer, archive := filepath.Join(parent, "data"), filepath.Join(parent, "signer"), filepath.Join(parent, "archive")
	os.Mkdir(archive, 0o700)
	key, state := filepath.Join(signer, "platform.key"), filepath.Join(signer, "audit.state")
	if out, err := runVeil(t, "init", "--data-dir", data, "--audit-key", key); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	for _, f := range []string{key, state, filepath.Join(signer, "store.shutdown")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("init left nothing at %s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "keys", "platform.key")); err == nil {
		t.Fatal("init wrote the key into the data directory too")
	}
	serve := func() (*exec.Cmd, *strings.Builder) {
		kf, err := os.Open(key)
		if err != nil {
			t.Fatal(err)
		}
		defer kf.Close()
		cmd := veilBinary(t, "serve", "--data-dir", data, "--isolation", "process", "--audit-key-fd", "3", "--audit-state", state, "--audit-archive", archive)
		cmd.ExtraFiles = []*os.File{kf}
		logs := &strings.Builder{}
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, logs
	}
	cmd, logs := serve()
	c, err := client.New("unix://"+filepath.Join(data, "veil.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if _, err := c.PlatformKey(context.Background()); err == nil {
			break
		}
		if i > 1000 {
			cmd.Process.Kill()
			t.Fatalf("veil serve with --audit-key-fd did not come up:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("veil serve: %v\n%s", err, logs.String())
	}
	if b, err := os.ReadFile(filepath.Join(archive, "checkpoint")); err != nil || !strings.HasPrefix(string(b), "veil-platform\n") {
		t.Errorf("no checkpoint archived: %v %q", err, b)
	}
	doctorArgs := []string{"doctor", "--data-dir", data, "--audit-key", key, "--audit-state", state, "-o", "json"}
	out, _ := runVeil(t, doctorArgs...)
	for _, check := range []string{"shutdown-marker", "audit-signer"} {
		if !strings.Contains(out, `"name": "`+check+`",
      "status": "ok"`) {
			t.Errorf("doctor on a healthy store: %s is not ok:\n%s", check, out)
		}
	}

	db, err := sql.Open("sqlite3", filepath.Join(data, "veil.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM audit_records WHERE idx >= 1`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	cmd, logs = serve()
	err = cmd.Wait()
	if err == nil || !strings.Contains(logs.String(), "not the file Veil shut down") || !strings.Contains(logs.String(), "--store-adopt") {
		t.Errorf("veil serve on a truncated store: %v\n%s", err, logs.String())
	}
	out, err = runVeil(t, doctorArgs...)
	if err == nil || !strings.Contains(out, "not the file Veil shut down") {
		t.Errorf("doctor on a truncated store: %v\n%s", err, out)
	}
}
