package backup

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/doctor"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// Kept is an audit checkpoint an operator or auditor kept (veil audit checkpoint -o FILE).
type Kept struct {
	Name string // where it came from, for messages
	Note []byte
}

// RestoreOptions say what a restore checks.
type RestoreOptions struct {
	// Checkpoints must each be extended by the backup's audit log: a backup whose log is
	// smaller than one, or holds a different tree at its size, is ErrStale.
	Checkpoints []Kept
	// Force restores a backup older than a kept checkpoint anyway (it rolls the audit log
	// back; an auditor holding the checkpoint will see it). It does not override a backup
	// that does not match its manifest or whose log does not verify.
	Force bool
}

// Restored says what Restore found and did.
type Restored struct {
	DataDir string       `json:"data_dir"`
	From    string       `json:"from"`
	Audit   AuditSummary `json:"audit"`
	Files   int          `json:"files"`
	Bytes   int64        `json:"bytes"`
	// Stale names the kept checkpoints the backup is older than (restored with Force).
	Stale []string `json:"stale,omitempty"`
}

// Restore checks the backup in from and restores it into the new data directory dataDir
// (which must not exist, or be empty). A refused restore leaves dataDir as it was found.
func Restore(ctx context.Context, from, dataDir string, o RestoreOptions) (*Restored, error) {
	src, err := filepath.Abs(from)
	if err != nil {
		return nil, err
	}
	dst, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	m, err := readManifest(src)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dst, StoreName)); err == nil {
		return nil, fmt.Errorf("%w: %s already holds a Veil store: restore into a new data directory", store.ErrConflict, dst)
	}
	created, err := emptyDir(dst)
	if err != nil {
		return nil, err
	}
	r, err := restore(ctx, m, src, dst, o)
	if err != nil {
		clear(dst, created)
		return nil, err
	}
	return r, nil
}

func restore(ctx context.Context, m *Manifest, src, dst string, o RestoreOptions) (*Restored, error) {
	r := &Restored{DataDir: dst, From: src}
	if err := copyEntries(m, src, dst, r); err != nil {
		return nil, err
	}
	sum, _, _, err := inspect(ctx, filepath.Join(dst, StoreName), dst)
	if err != nil {
		return nil, err
	}
	r.Audit = sum
	stale, err := checkKept(ctx, dst, o.Checkpoints)
	if err != nil {
		return nil, err
	}
	for _, s := range stale {
		if !o.Force {
			return nil, fmt.Errorf("%w: %s; restoring it would roll the audit log back. Restore a newer backup, or pass --force to restore this one anyway and tell the auditors why", ErrStale, s)
		}
		r.Stale = append(r.Stale, s)
	}
	if err := relocate(ctx, m.DataDir, dst); err != nil {
		return nil, err
	}
	// As veil init leaves it: others traverse it to reach the dataset files, nothing more.
	if err := os.Chmod(dst, 0o711); err != nil {
		return nil, err
	}
	return r, nil
}

// copyEntries copies every entry of the manifest from src to dst, checking each file's
// size and digest as it is read. It writes only through os.Root handles, so no link in the
// backup (a runtime image's, or one put there) leads a write or a read outside the two.
func copyEntries(m *Manifest, src, dst string, r *Restored) error {
	in, err := os.OpenRoot(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	root := os.Geteuid() == 0
	for _, e := range m.Entries {
		p := filepath.FromSlash(e.Path)
		mismatch := func(format string, a ...any) error {
			return fmt.Errorf("%w: %s: %s: the backup does not match its manifest; restore another backup", ErrDamaged, e.Path, fmt.Sprintf(format, a...))
		}
		fi, err := in.Lstat(p)
		if err != nil {
			return mismatch("%v", err)
		}
		switch e.Type {
		case typeDir:
			if !fi.IsDir() {
				return mismatch("not a directory")
			}
			if err := out.Mkdir(p, 0o700); err != nil {
				return err
			}
		case typeSymlink:
			if fi.Mode()&fs.ModeSymlink == 0 {
				return mismatch("not a link")
			}
			if t, err := in.Readlink(p); err != nil || t != e.Target {
				return mismatch("the link's target changed")
			}
			if err := out.Symlink(e.Target, p); err != nil {
				return err
			}
		case typeFile:
			if !fi.Mode().IsRegular() {
				return mismatch("not a regular file")
			}
			if fi.Size() != e.Bytes {
				return mismatch("%d bytes, the manifest says %d", fi.Size(), e.Bytes)
			}
			sum, err := copyChecked(in, out, p, e.Bytes)
			if err != nil {
				return err
			}
			if sum != e.SHA256 {
				return mismatch("its SHA-256 is not the manifest's")
			}
			r.Files++
			r.Bytes += e.Bytes
		}
		if root {
			out.Lchown(p, e.UID, e.GID)
		}
	}
	for i := len(m.Entries) - 1; i >= 0; i-- {
		e := m.Entries[i]
		if e.Type != typeSymlink {
			if err := out.Chmod(filepath.FromSlash(e.Path), fileMode(e.Mode)); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyChecked copies the file p from in to out, reading at most n+1 bytes, and returns the
// SHA-256 of what it read.
func copyChecked(in, out *os.Root, p string, n int64) (string, error) {
	f, err := in.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	w, err := out.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(w, h), io.LimitReader(f, n+1))
	if err == nil {
		err = w.Sync()
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return hex.EncodeToString(h.Sum(nil)), err
}

// checkKept returns, for each kept checkpoint the restored log does not extend, why.
func checkKept(ctx context.Context, dir string, kept []Kept) ([]string, error) {
	if len(kept) == 0 {
		return nil, nil
	}
	v, err := doctor.Keyring(dir) // a checkpoint kept before a key rotation verifies with it
	if err != nil {
		return nil, err
	}
	db, err := doctor.OpenStore(filepath.Join(dir, StoreName))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	log := doctor.LogReader(tx)
	size, err := log.Size(ctx)
	if err != nil {
		return nil, err
	}
	var stale []string
	for _, k := range kept {
		_, n, root, err := audit.OpenCheckpoint(v, k.Note)
		if err != nil {
			return nil, fmt.Errorf("kept checkpoint %s: %w (is it a checkpoint of this platform's log, saved by veil audit checkpoint -o?)", k.Name, err)
		}
		if n > size {
			stale = append(stale, fmt.Sprintf("the kept checkpoint %s covers %d audit entries, the backup's log has %d", k.Name, n, size))
			continue
		}
		if n == 0 {
			continue
		}
		// Verify (in check) recomputed every stored hash from the records: the tree read
		// here is the records'.
		got, err := tlog.TreeHash(n, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return log.ReadHashes(ctx, idx) }))
		if err != nil {
			return nil, err
		}
		if got != root {
			stale = append(stale, fmt.Sprintf("the backup's first %d audit entries are not the tree of the kept checkpoint %s (another history)", n, k.Name))
		}
	}
	return stale, nil
}

// relocate points what names files by absolute path at the new data directory: the
// datasets' files in the store, and the runtime records' images. Then it closes the store
// cleanly, so that the daemon opens it as its own (the shutdown marker matches).
func relocate(ctx context.Context, oldDir, newDir string) error {
	move := func(p string) string {
		if rest, ok := strings.CutPrefix(p, oldDir+string(filepath.Separator)); ok {
			return filepath.Join(newDir, rest)
		}
		return p
	}
	// The shutdown marker where a daemon on newDir with the default key place looks for it
	// (beside the signer's state in keys/); an operator who keeps the key elsewhere starts
	// once with --store-adopt.
	marker, err := platform.Defaults(newDir).StoreMarkerPath()
	if err != nil {
		return err
	}
	db, err := sqlite.OpenWith(ctx, sqlite.Options{Path: filepath.Join(newDir, StoreName), Marker: marker, Adopt: true})
	if err != nil {
		return err
	}
	err = db.Update(ctx, func(tx store.Tx) error {
		ds, err := tx.Datasets(ctx)
		if err != nil {
			return err
		}
		for _, d := range ds {
			for i, f := range d.Files {
				d.Files[i] = move(f)
			}
			if err := tx.PutDataset(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("point the store at %s: %w", newDir, err)
	}
	dir := filepath.Join(newDir, "runtimes")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var rec map[string]any
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("%w: runtime record %s: %v", ErrDamaged, e.Name(), err)
		}
		if p, ok := rec["path"].(string); ok {
			rec["path"] = move(p)
		}
		nb, _ := json.MarshalIndent(rec, "", "  ")
		if err := platform.WriteFileAtomic(path, nb, 0o600); err != nil {
			return err
		}
	}
	return nil
}
