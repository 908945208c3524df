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
	"slices"
	"strings"
	"syscall"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/doctor"
	"github.com/veil-dp/veil/durable"
)

// ErrDamaged is a backup that does not match its manifest, or whose store or audit log
// does not pass its checks. errors.Is(err, audit.ErrTampered) holds as well.
var ErrDamaged = fmt.Errorf("backup damaged: %w", audit.ErrTampered)

// ErrStale is a backup older than a kept audit checkpoint: restoring it would roll the
// audit log back. errors.Is(err, audit.ErrTampered) holds as well.
var ErrStale = fmt.Errorf("backup older than a kept checkpoint: %w", audit.ErrTampered)

// skipped are what a backup leaves out, by their path relative to the data directory: the
// store's live files (the snapshot replaces them), its shutdown marker (Restore writes a
// new one), the socket, the sandboxes' state and jobs' scratch space (both made again), and
// the per-grant projections of datasets (a cache that names its source files by absolute
// path; jobs make them again from the datasets in the backup).
// The signer's state (keys/audit.state) is not copied but written from the snapshot: its
// latest checkpoint, the last one the signer signed for the log the backup holds.
var skipped = []string{StoreName, StoreName + "-wal", StoreName + "-shm", StoreName + ".shutdown", "veil.sock", "sandbox", "work", "projections",
	filepath.Join("keys", "store.shutdown"), stateName}

// stateName is the audit signer's state in the data directory's default layout.
var stateName = filepath.Join("keys", "audit.state")

// temporary says whether a name is a file being written (platform.WriteFileAtomic, a
// dataset being staged): never part of what the store names.
func temporary(name string) bool {
	return strings.HasPrefix(name, ".tmp-") || strings.HasPrefix(name, ".stage-")
}

// attempts bounds how often Create takes the snapshot again.
const attempts = 5

// driverName reads the live store keeping its write-ahead log when the last connection
// closes, as the daemon does (store/sqlite): the daemon relies on a missing -wal file
// meaning that someone removed it.
const driverName = "sqlite3-veil-backup"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		return c.SetFileControlInt("main", sqlite3.SQLITE_FCNTL_PERSIST_WAL, 1)
	}})
}

// Create backs the data directory dataDir up into to, which must not exist or be empty.
// The daemon may be running. On failure, to is left as it was found.
func Create(ctx context.Context, dataDir, to string) (*Manifest, error) {
	src, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	dst, err := filepath.Abs(to)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(src, StoreName)); err != nil {
		return nil, fmt.Errorf("%s holds no Veil store (%s): %w", src, StoreName, err)
	}
	if dst == src || strings.HasPrefix(dst, src+string(filepath.Separator)) {
		return nil, fmt.Errorf("back up to a directory outside the data directory %s (a backup inside it would be backed up too)", src)
	}
	created, err := emptyDir(dst)
	if err != nil {
		return nil, err
	}
	m, err := create(ctx, src, dst)
	if err != nil {
		clear(dst, created)
		return nil, err
	}
	return m, nil
}

// emptyDir makes dir (owner-only) or checks that it is empty; created says which.
func emptyDir(dir string) (created bool, err error) {
	switch ents, err := os.ReadDir(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return true, os.Mkdir(dir, 0o700)
	case err != nil:
		return false, err
	case len(ents) > 0:
		return false, fmt.Errorf("%s is not empty: give a new or empty directory", dir)
	}
	return false, os.Chmod(dir, 0o700)
}

// clear removes what was written into dir, and dir itself if it was created.
func clear(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

func create(ctx context.Context, src, dst string) (*Manifest, error) {
	var last error
	for try := 1; try <= attempts; try++ {
		if try > 1 {
			clear(dst, false)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(try) * 100 * time.Millisecond):
			}
		}
		m, retry, err := attempt(ctx, src, dst)
		if err == nil {
			return m, nil
		}
		if !retry {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("no consistent backup after %d attempts: %w", attempts, last)
}

// attempt takes one snapshot and copies the files; retry says whether another attempt may
// succeed (the data directory changed under it).
func attempt(ctx context.Context, src, dst string) (m *Manifest, retry bool, err error) {
	storeCopy := filepath.Join(dst, StoreName)
	if err := snapshot(ctx, filepath.Join(src, StoreName), storeCopy); err != nil {
		return nil, false, err
	}
	sum, named, latest, err := inspect(ctx, storeCopy, src)
	if err != nil {
		return nil, false, err
	}
	if sum.Entries > sum.Signed {
		return nil, true, fmt.Errorf("the snapshot holds %d audit entries not yet signed", sum.Entries-sum.Signed)
	}
	m = &Manifest{Format: Format, Created: time.Now().UTC(), DataDir: src, Audit: sum}
	storeEntry, err := describe(storeCopy, StoreName)
	if err != nil {
		return nil, false, err
	}
	entries, err := copyTree(src, dst)
	if err != nil {
		return nil, false, err
	}
	m.Entries = append([]Entry{storeEntry}, entries...)
	if _, err := os.Stat(filepath.Join(src, stateName)); err == nil && latest != nil {
		if err := durable.WriteFile(filepath.Join(dst, stateName), latest, 0o644); err != nil {
			return nil, false, err
		}
		e, err := describe(filepath.Join(dst, stateName), filepath.ToSlash(stateName))
		if err != nil {
			return nil, false, err
		}
		m.Entries = append(m.Entries, e)
	}
	have := map[string]bool{}
	for _, e := range m.Entries {
		have[e.Path] = true
	}
	for _, f := range named {
		rel, err := filepath.Rel(src, f)
		if err != nil || !filepath.IsLocal(rel) {
			return nil, false, fmt.Errorf("the store names the file %s, outside the data directory %s: it cannot be backed up with it", f, src)
		}
		if !have[filepath.ToSlash(rel)] {
			return nil, true, fmt.Errorf("the store names %s, which was not there to copy", rel)
		}
	}
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return nil, false, err
	}
	if err := durable.WriteFile(filepath.Join(dst, ManifestName), append(b, '\n'), 0o600); err != nil {
		return nil, false, fmt.Errorf("write the manifest: %w", err)
	}
	return m, false, nil
}

// snapshot copies the store at path to dst with SQLite's online backup API, in one step: one
// read transaction, a consistent copy while the daemon writes.
func snapshot(ctx context.Context, path, dst string) error {
	from, err := sql.Open(driverName, "file:"+path+"?mode=ro&_busy_timeout=10000")
	if err != nil {
		return err
	}
	defer from.Close()
	to, err := sql.Open(driverName, "file:"+dst)
	if err != nil {
		return err
	}
	defer to.Close()
	fc, err := from.Conn(ctx)
	if err != nil {
		return fmt.Errorf("open the store: %w", err)
	}
	defer fc.Close()
	tc, err := to.Conn(ctx)
	if err != nil {
		return fmt.Errorf("create the store's copy: %w", err)
	}
	defer tc.Close()
	err = tc.Raw(func(t any) error {
		return fc.Raw(func(f any) error {
			b, err := t.(*sqlite3.SQLiteConn).Backup("main", f.(*sqlite3.SQLiteConn), "main")
			if err != nil {
				return err
			}
			done, err := b.Step(-1)
			if ferr := b.Finish(); err == nil {
				err = ferr
			}
			if err == nil && !done {
				err = errors.New("the backup did not finish in one step")
			}
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("snapshot of the store: %w", err)
	}
	// The copy is a file of its own: out of WAL mode, so that it is whole without a -wal.
	if _, err := tc.ExecContext(ctx, "PRAGMA journal_mode=DELETE"); err != nil {
		return fmt.Errorf("snapshot of the store: %w", err)
	}
	if err := tc.Close(); err != nil {
		return err
	}
	if err := to.Close(); err != nil {
		return err
	}
	f, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	return f.Sync()
}

// inspect checks a store copy (integrity, audit log against the keyring of the data
// directory keys: platform.keyring, or platform.pub alone) and returns its audit summary and
// the files its datasets name.
func inspect(ctx context.Context, path, keys string) (sum AuditSummary, named []string, latest []byte, err error) {
	ring, err := doctor.Keyring(keys)
	if err != nil {
		return AuditSummary{}, nil, nil, fmt.Errorf("%w: the platform's public key or keyring in %s: %v", ErrDamaged, keys, err)
	}
	db, err := doctor.OpenStore(path)
	if err != nil {
		return AuditSummary{}, nil, nil, err
	}
	defer db.Close()
	if err := doctor.QuickCheck(ctx, db); err != nil {
		return AuditSummary{}, nil, nil, fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return AuditSummary{}, nil, nil, err
	}
	defer tx.Rollback()
	rep, err := audit.NewKeyringLog(ring).Verify(ctx, doctor.LogReader(tx))
	if err != nil {
		return AuditSummary{}, nil, nil, fmt.Errorf("%w: the audit log does not verify against the platform's key: %v", ErrDamaged, err)
	}
	sum = AuditSummary{Entries: rep.Records, Checkpoints: rep.Checkpoints, Signed: rep.Size, Root: rep.Root}
	if rep.Checkpoints > 0 {
		if err := tx.QueryRowContext(ctx, `SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&latest); err != nil {
			return AuditSummary{}, nil, nil, err
		}
	}
	rows, err := tx.QueryContext(ctx, `SELECT files FROM datasets`)
	if err != nil {
		return AuditSummary{}, nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var files []string
		if err := rows.Scan(&s); err != nil {
			return AuditSummary{}, nil, nil, err
		}
		if err := json.Unmarshal([]byte(s), &files); err != nil {
			return AuditSummary{}, nil, nil, fmt.Errorf("%w: a dataset's file list is not valid: %v", ErrDamaged, err)
		}
		named = append(named, files...)
	}
	return sum, named, latest, rows.Err()
}

// describe is the manifest entry of the file at path, named rel.
func describe(path, rel string) (Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Entry{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Path: rel, Type: typeFile, Mode: modeOf(fi.Mode()), Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	e.UID, e.GID = owner(fi)
	return e, nil
}

func owner(fi fs.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return 0, 0
}

// copyTree copies the data directory src into dst but what a backup leaves out, and the
// runtime images no complete runtime record names (a registration under way).
func copyTree(src, dst string) ([]Entry, error) {
	images, err := runtimeImages(src)
	if err != nil {
		return nil, err
	}
	var out []Entry
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while walking; the check of what the store names decides
			}
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if rel == "." {
			return nil
		}
		if slices.Contains(skipped, rel) || temporary(d.Name()) || skippedRuntime(rel, images) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		e := Entry{Path: filepath.ToSlash(rel), Mode: modeOf(fi.Mode())}
		e.UID, e.GID = owner(fi)
		target := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			e.Type = typeDir
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = typeSymlink
			if e.Target, err = os.Readlink(path); err != nil {
				return err
			}
			if err := os.Symlink(e.Target, target); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			e.Type = typeFile
			n, sum, err := copyFile(path, target)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			e.Bytes, e.SHA256 = n, sum
		default:
			return nil // sockets, pipes: nothing the platform keeps
		}
		setOwner(target, e)
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy the data directory: %w", err)
	}
	// Modes last: a directory without write permission for its owner is filled first.
	for i := len(out) - 1; i >= 0; i-- {
		if out[i].Type != typeSymlink {
			if err := os.Chmod(filepath.Join(dst, filepath.FromSlash(out[i].Path)), fileMode(out[i].Mode)); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// setOwner gives target the entry's owner when running as root (runtime images hold files
// of several owners); otherwise everything belongs to whoever copies.
func setOwner(target string, e Entry) {
	if os.Geteuid() == 0 {
		os.Lchown(target, e.UID, e.GID)
	}
}

// copyFile copies the regular file at path (not following a link) to target, new, and
// returns its size and SHA-256.
func copyFile(path, target string) (int64, string, error) {
	in, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return 0, "", err
	}
	defer in.Close()
	out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// runtimeImages are the runtime records (relative to the data directory) that are complete,
// and the image directories they name. A record is complete once it holds a digest; before,
// it only claims the name while the image is copied.
func runtimeImages(src string) (map[string]bool, error) {
	dir := filepath.Join(src, "runtimes")
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		rec, err := readRuntime(filepath.Join(dir, e.Name()))
		if err != nil || rec.Digest == "" {
			continue
		}
		if rel, err := filepath.Rel(src, rec.Path); err == nil && filepath.IsLocal(rel) {
			out[rel] = true
			out[filepath.Join("runtimes", e.Name())] = true
		}
	}
	return out, nil
}

// skippedRuntime says whether rel, directly in runtimes/, is a record or an image of a
// registration under way.
func skippedRuntime(rel string, kept map[string]bool) bool {
	return filepath.Dir(rel) == "runtimes" && !kept[rel]
}

// runtimeRecord is the part of a runtime record (kinds/custom) a backup reads.
type runtimeRecord struct {
	Digest string `json:"digest"`
	Path   string `json:"path"`
}

const maxRuntimeRecord = 1 << 20

func readRuntime(path string) (runtimeRecord, error) {
	var r runtimeRecord
	f, err := os.Open(path)
	if err != nil {
		return r, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRuntimeRecord))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}
