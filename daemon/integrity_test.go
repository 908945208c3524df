package daemon_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// startOutside is start with the signing key, the signer's state and the store's shutdown
// marker outside the data directory (where the README says to put them), and an archive
// directory that receives every checkpoint.
func startOutside(t *testing.T) (*env, string) {
	t.Helper()
	outside := t.TempDir()
	archive := filepath.Join(outside, "archive")
	if err := os.Mkdir(archive, 0o700); err != nil {
		t.Fatal(err)
	}
	e := start(t, func(c *daemon.Config) {
		c.Isolation = "process"
		c.AuditKey = filepath.Join(outside, "keys", "platform.key")
		c.AuditArchives = []string{archive}
	})
	return e, archive
}

// refusedStart starts a daemon on cfg and returns why it refused; a daemon that starts fails
// the test.
func refusedStart(t *testing.T, cfg daemon.Config) error {
	t.Helper()
	srv, err := daemon.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		srv.Close()
		t.Fatal("the daemon started on a tampered store")
	}
	return err
}

// sqlExec runs statements on the store file as an insider with a SQLite shell would.
func sqlExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// rehash recomputes every stored tree hash from the records, as an insider who edited
// records would, so that the store is consistent with itself again.
func rehash(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT data FROM audit_records ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for rows.Next() {
		var b []byte
		rows.Scan(&b)
		recs = append(recs, b)
	}
	rows.Close()
	var hashes []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	tx, _ := db.Begin()
	tx.Exec(`DELETE FROM audit_records`)
	tx.Exec(`DELETE FROM audit_hashes`)
	for i, r := range recs {
		hs, err := tlog.StoredHashes(int64(i), r, hr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO audit_records (idx, data) VALUES (?, ?)`, i, r); err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if _, err := tx.Exec(`INSERT INTO audit_hashes (idx, hash) VALUES (?, ?)`, len(hashes), h[:]); err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, h)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestInsiderAtStart is the insider, with write access to the data directory while
// Veil is stopped (the key, the signer's state and the shutdown marker elsewhere): each
// change to the store is refused at the next start, by the shutdown marker, and, when the
// operator tells Veil to accept the store file as found (--store-adopt), still by the
// signer, which no rewritten, truncated, forked or older log extends.
func TestInsiderAtStart(t *testing.T) {
	const byMarker = "is not the file Veil shut down"
	cases := []struct {
		name   string
		tamper func(t *testing.T, e *env, older string)
		marker string // the refusal without --store-adopt
		signer string // the refusal with --store-adopt; "" when it may pass (caught elsewhere)
	}{
		{"edit a record and recompute every hash", func(t *testing.T, e *env, _ string) {
			sqlExec(t, e.cfg.StorePath(), `UPDATE audit_records SET data = replace(data, 'reviewer', 'operator') WHERE idx = 2`)
			rehash(t, e.cfg.StorePath())
		}, byMarker, "not the one the signer signed"},
		{"truncate the tail", func(t *testing.T, e *env, _ string) {
			sqlExec(t, e.cfg.StorePath(), `DELETE FROM audit_records WHERE idx >= 5`, `DELETE FROM audit_hashes`, `DELETE FROM audit_checkpoints WHERE size > 5`)
			rehash(t, e.cfg.StorePath())
		}, byMarker, "were removed (truncated)"},
		{"fork the log", func(t *testing.T, e *env, _ string) {
			// The same number of entries and more, but another history after entry 3.
			sqlExec(t, e.cfg.StorePath(), `UPDATE audit_records SET data = replace(data, 'reviewer', 'auditor') WHERE idx >= 3`)
			rehash(t, e.cfg.StorePath())
		}, byMarker, "not the one the signer signed"},
		{"restore an older store", func(t *testing.T, e *env, older string) {
			for _, sfx := range []string{"", "-wal"} {
				b, err := os.ReadFile(older + sfx)
				if err != nil && sfx == "" {
					t.Fatal(err)
				}
				if err == nil {
					os.WriteFile(e.cfg.StorePath()+sfx, b, 0o600)
				}
			}
		}, byMarker, "an older copy of the store was restored"},
		{"flip a byte", func(t *testing.T, e *env, _ string) {
			f, err := os.OpenFile(e.cfg.StorePath(), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			b := []byte{0}
			off := fi.Size() / 2
			f.ReadAt(b, off)
			b[0] ^= 0x40
			f.WriteAt(b, off)
		}, byMarker, ""},
		{"remove the store", func(t *testing.T, e *env, _ string) {
			os.Remove(e.cfg.StorePath())
		}, "is missing", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := startOutside(t)
			ctx := context.Background()
			for i := range 3 {
				e.principal(fmt.Sprintf("reviewer %d", i), "reviewer", "")
			}
			e.stop()
			older := filepath.Join(t.TempDir(), "older.db")
			copyStore(t, e.cfg.StorePath(), older)
			e.boot()
			aud := e.principal("inspector", "auditor", "")
			for i := 3; i < 8; i++ {
				e.principal(fmt.Sprintf("reviewer %d", i), "reviewer", "")
			}
			kept, err := aud.AuditCheckpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e.stop()
			tc.tamper(t, e, older)

			err = refusedStart(t, e.cfg)
			if !strings.Contains(err.Error(), tc.marker) {
				t.Errorf("refusal %q does not say %q", err, tc.marker)
			}
			if tc.marker == byMarker && !strings.Contains(err.Error(), "--store-adopt") {
				t.Errorf("refusal %q does not name the option", err)
			}
			if !strings.Contains(strings.ToLower(err.Error()), "restore") {
				t.Errorf("refusal %q gives no recovery step", err)
			}
			if tc.name == "remove the store" {
				return
			}
			adopt := e.cfg
			adopt.StoreAdopt = true
			srv, err := daemon.New(ctx, adopt, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil {
				srv.Close()
				if tc.signer != "" {
					t.Fatalf("with --store-adopt the daemon started on a store that does not extend its last signed checkpoint")
				}
				// Whatever the flipped byte hit, an auditor's kept checkpoint still holds the
				// line: the log verifies against it, or the difference is reported.
				e.cfg = adopt
				e.boot()
				_, verr := aud.VerifyAuditSince(ctx, vkeyOf(t, e), []client.Kept{{Name: "kept", Note: kept.Note}})
				t.Logf("flipped byte under --store-adopt: verify --since says %v", verr)
				return
			}
			if tc.signer == "" {
				t.Logf("with --store-adopt: %v", err)
				return
			}
			if !strings.Contains(err.Error(), tc.signer) || !errors.Is(err, audit.ErrTampered) {
				t.Errorf("with --store-adopt, refusal %q does not say %q", err, tc.signer)
			}
		})
	}
}

func apiPrincipal(name string) api.CreatePrincipal {
	return api.CreatePrincipal{Name: name, Role: "reviewer"}
}

func vkeyOf(t *testing.T, e *env) string {
	b, err := os.ReadFile(e.cfg.PubPath())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func copyStore(t *testing.T, from, to string) {
	t.Helper()
	for _, sfx := range []string{"", "-wal"} {
		b, err := os.ReadFile(from + sfx)
		if err != nil {
			if sfx == "" {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(to+sfx, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSignerStateRequired: without the signer's state (moved or deleted) the daemon refuses
// a store whose log has entries, and --audit-adopt takes the log over once, after verifying
// it; a second --audit-adopt changes nothing.
func TestSignerStateRequired(t *testing.T) {
	e, _ := startOutside(t)
	e.principal("reviewer", "reviewer", "")
	e.stop()
	state, _ := e.cfg.AuditStatePath()
	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	err := refusedStart(t, e.cfg)
	if !strings.Contains(err.Error(), "there is no audit signer state") || !strings.Contains(err.Error(), "put it back") {
		t.Errorf("refusal: %v", err)
	}
	e.cfg.AuditAdopt = true
	e.boot()
	e.principal("reviewer 2", "reviewer", "")
	e.stop()
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("adopting wrote no state: %v", err)
	}
	e.boot()
	aud := e.principal("inspector", "auditor", "")
	if _, err := aud.VerifyAudit(context.Background(), vkeyOf(t, e)); err != nil {
		t.Errorf("verify after adoption: %v", err)
	}
}

// TestTamperWhileRunning: an insider truncates the log's tail in the live store. The next
// audited change cannot be signed: the daemon stops taking writes (503, kind unavailable,
// with a message that names no path), /readyz says not ready, the log says why, and the
// auditor's kept checkpoint proves the truncation.
func TestTamperWhileRunning(t *testing.T) {
	e, archive := startOutside(t)
	ctx := context.Background()
	aud := e.principal("inspector", "auditor", "")
	for i := range 6 {
		e.principal(fmt.Sprintf("reviewer %d", i), "reviewer", "")
	}
	kept, err := aud.AuditCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Archived as signed.
	if b, err := os.ReadFile(filepath.Join(archive, "checkpoint")); err != nil || !bytes.Equal(b, kept.Note) {
		t.Fatalf("the archive's latest checkpoint is not the one served: %v\n%s\n%s", err, b, kept.Note)
	}
	sqlExec(t, e.cfg.StorePath(), `DELETE FROM audit_records WHERE idx >= 3`, `DELETE FROM audit_hashes`, `DELETE FROM audit_checkpoints WHERE size > 3`)
	rehash(t, e.cfg.StorePath())

	// The first change after it commits (the store took it) but cannot be signed.
	e.op.CreatePrincipal(ctx, apiPrincipal("after 1"))
	_, err = e.op.CreatePrincipal(ctx, apiPrincipal("after 2"))
	if kindOf(err) != "unavailable" || strings.Contains(err.Error(), e.cfg.DataDir) {
		t.Errorf("write after the truncation: %v, want unavailable without a path", err)
	}
	if code, _ := e.raw("/readyz", ""); code != 503 {
		t.Errorf("/readyz answers %d", code)
	}
	if !strings.Contains(e.log.String(), "can no longer be signed") {
		t.Errorf("the daemon log does not say why writes stopped:\n%s", e.log.String())
	}
	_, err = aud.VerifyAuditSince(ctx, vkeyOf(t, e), []client.Kept{{Name: "kept", Note: kept.Note}})
	if !errors.Is(err, audit.ErrTampered) {
		t.Errorf("verify --since the kept checkpoint: %v", err)
	}
	// The archive did not take a checkpoint of the truncated log.
	if b, _ := os.ReadFile(filepath.Join(archive, "checkpoint")); !bytes.Equal(b, kept.Note) {
		t.Errorf("the archive took another checkpoint:\n%s", b)
	}
}

// TestRemovedWAL kills a real daemon process with SIGKILL after acknowledged writes, then
// removes the store's write-ahead log, which holds them: the next start refuses, saying
// so, rather than opening an older store.
func TestRemovedWAL(t *testing.T) {
	e, _ := startOutside(t)
	e.stop()
	child := serveChildProcess(t, e)
	for i := range 3 {
		e.principal(fmt.Sprintf("reviewer %d", i), "reviewer", "")
	}
	child.Process.Signal(os.Kill)
	child.Wait()
	if fi, err := os.Stat(e.cfg.StorePath() + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no write-ahead log after the kill (%v): the test proves nothing", err)
	}
	os.Remove(e.cfg.StorePath() + "-wal")
	err := refusedStart(t, e.cfg)
	if !strings.Contains(err.Error(), "write-ahead log") || !strings.Contains(err.Error(), "restore") {
		t.Errorf("refusal: %v", err)
	}
}

// serveChildProcess runs `veil serve` (the test binary playing it) on e's configuration
// and waits until it answers.
func serveChildProcess(t *testing.T, e *env) *exec.Cmd {
	t.Helper()
	exe, _ := os.Executable()
	child := exec.Command(exe, "serve-child", e.cfg.DataDir)
	child.Env = append(os.Environ(), "VEIL_TEST_ISOLATION="+e.cfg.Isolation, "VEIL_TEST_AUDIT_KEY="+e.cfg.AuditKey,
		"VEIL_TEST_AUDIT_ARCHIVES="+strings.Join(e.cfg.AuditArchives, ","))
	child.Stderr = os.Stderr
	os.Remove(e.cfg.Socket)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	for i := 0; ; i++ {
		if _, err := e.op.Whoami(context.Background()); err == nil {
			return child
		}
		if i > 1000 {
			t.Fatal("child daemon did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
