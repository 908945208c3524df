package backup_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-dp/veil/backup"
	"github.com/veil-dp/veil/daemon"
)

// dataDir makes a data directory as veil init does.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := daemon.Init(context.Background(), daemon.Defaults(dir)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRestoreRefusesWhatTheManifestDoesNotVouchFor: a manifest that names paths outside the
// backup, writes through a link, or whose digests, types or format do not match is refused,
// and the refused restore leaves no directory behind.
func TestRestoreRefusesWhatTheManifestDoesNotVouchFor(t *testing.T) {
	ctx := context.Background()
	src := dataDir(t)
	cases := []struct {
		name   string
		change func(t *testing.T, dir, outside string, m map[string]any)
	}{
		{"parent path", func(t *testing.T, dir, outside string, m map[string]any) {
			addEntry(m, map[string]any{"path": "../escaped", "type": "dir", "mode": 0o700})
		}},
		{"absolute path", func(t *testing.T, dir, outside string, m map[string]any) {
			addEntry(m, map[string]any{"path": outside + "/x", "type": "dir", "mode": 0o700})
		}},
		{"write through a link", func(t *testing.T, dir, outside string, m map[string]any) {
			os.Symlink(outside, filepath.Join(dir, "out"))
			os.WriteFile(filepath.Join(outside, "x"), []byte("x"), 0o644)
			addEntry(m, map[string]any{"path": "out", "type": "symlink", "target": outside, "mode": 0o777})
			addEntry(m, map[string]any{"path": "out/x", "type": "file", "mode": 0o644, "bytes": 1,
				"sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"})
		}},
		{"changed digest", func(t *testing.T, dir, outside string, m map[string]any) {
			for _, e := range m["entries"].([]any) {
				if e := e.(map[string]any); e["path"] == "platform.pub" {
					e["sha256"] = strings.Repeat("0", 64)
				}
			}
		}},
		{"file replaced by a link", func(t *testing.T, dir, outside string, m map[string]any) {
			os.WriteFile(filepath.Join(outside, "pub"), []byte("x"), 0o644)
			os.Remove(filepath.Join(dir, "platform.pub"))
			os.Symlink(filepath.Join(outside, "pub"), filepath.Join(dir, "platform.pub"))
		}},
		{"listed twice", func(t *testing.T, dir, outside string, m map[string]any) {
			addEntry(m, m["entries"].([]any)[0].(map[string]any))
		}},
		{"another format", func(t *testing.T, dir, outside string, m map[string]any) { m["format"] = "veil-backup v0" }},
		{"unknown field", func(t *testing.T, dir, outside string, m map[string]any) { m["extra"] = true }},
		{"no store", func(t *testing.T, dir, outside string, m map[string]any) {
			m["entries"] = m["entries"].([]any)[1:]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bdir := filepath.Join(t.TempDir(), "b")
			if _, err := backup.Create(ctx, src, bdir); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			b, _ := os.ReadFile(filepath.Join(bdir, backup.ManifestName))
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			outside := t.TempDir()
			tc.change(t, bdir, outside, m)
			was := listing(t, outside)
			b, _ = json.Marshal(m)
			os.WriteFile(filepath.Join(bdir, backup.ManifestName), b, 0o600)
			target := filepath.Join(t.TempDir(), "new")
			_, err := backup.Restore(ctx, bdir, target, backup.RestoreOptions{})
			if !errors.Is(err, backup.ErrDamaged) {
				t.Fatalf("restore: %v, want ErrDamaged", err)
			}
			if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused restore left %s", target)
			}
			if now := listing(t, outside); now != was {
				t.Errorf("the restore wrote outside its directory: %s, was %s", now, was)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(target), "escaped")); err == nil {
				t.Error("the restore made a directory outside its own")
			}
		})
	}
}

// listing is the names and contents of the files in dir.
func listing(t *testing.T, dir string) string {
	var b strings.Builder
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		c, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + "=" + string(c) + ";")
	}
	return b.String()
}

func addEntry(m map[string]any, e map[string]any) {
	m["entries"] = append(m["entries"].([]any), e)
}

// TestBackupRefusesItsOwnDataDir: a backup goes to a new or empty directory outside the
// data directory, and an existing data directory is never restored over.
func TestBackupRefusesItsOwnDataDir(t *testing.T) {
	ctx := context.Background()
	src := dataDir(t)
	if _, err := backup.Create(ctx, src, filepath.Join(src, "bk")); err == nil {
		t.Error("a backup inside the data directory was taken")
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o600)
	if _, err := backup.Create(ctx, src, full); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a backup into a non-empty directory: %v", err)
	}
	bdir := filepath.Join(t.TempDir(), "b")
	if _, err := backup.Create(ctx, src, bdir); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Restore(ctx, bdir, src, backup.RestoreOptions{}); err == nil {
		t.Error("a restore over the existing data directory")
	}
	if _, err := os.Stat(filepath.Join(src, "veil.db")); err != nil {
		t.Errorf("the refused restore touched the data directory: %v", err)
	}
	// An empty directory is fine, and the restored store opens as the daemon opens it.
	target := t.TempDir()
	if _, err := backup.Restore(ctx, bdir, target, backup.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := daemon.Defaults(target)
	cfg.Isolation = "process" // no job runs: the store and the key are what is tested
	srv, err := daemon.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("a daemon on the restored directory: %v", err)
	}
	srv.Close()
}
