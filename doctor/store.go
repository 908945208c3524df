package doctor

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "github.com/mattn/go-sqlite3"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
)

// maxKeyFile bounds the read of a key file: a key is one short line.
const maxKeyFile = 64 << 10

// readSmall reads a file of at most maxKeyFile bytes.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a key file", path, maxKeyFile)
	}
	return b, nil
}

// openStore opens the store read-only: the daemon may be running, and doctor never writes.
// (store/sqlite.Open creates the schema and changes modes, so it is not used here.)
func openStore(path string) (*sql.DB, error) {
	q := url.Values{"mode": {"ro"}, "_busy_timeout": {"10000"}}
	db, err := sql.Open("sqlite3", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// storeChecks check the store file's integrity, the audit log in it against its signed
// checkpoints, and that platform.pub is the public half of the platform key.
func storeChecks(ctx context.Context, dir string) []Check {
	path := filepath.Join(dir, "veil.db")
	vkey, keyCheck := platformKeyCheck(dir)
	if _, err := os.Stat(path); err != nil {
		return []Check{
			fail("store", "create the data directory with veil init, or restore veil.db from a backup", "no store: %v", err),
			skip("audit-log", "no store"),
			keyCheck,
		}
	}
	db, err := openStore(path)
	if err != nil {
		return []Check{fail("store", "", "open %s read-only: %v", path, err), skip("audit-log", "the store cannot be opened"), keyCheck}
	}
	defer db.Close()
	return []Check{integrityCheck(ctx, db, path), auditCheck(ctx, db, dir, vkey), keyCheck}
}

// maxIntegrityLines bounds what quick_check reports.
const maxIntegrityLines = 10

func integrityCheck(ctx context.Context, db *sql.DB, path string) Check {
	const name = "store"
	restore := "stop the daemon and restore veil.db from the latest backup (sqlite3 .backup copies), then run veil doctor again; keep the damaged file for analysis"
	rows, err := db.QueryContext(ctx, fmt.Sprintf("PRAGMA quick_check(%d)", maxIntegrityLines))
	if err != nil {
		return fail(name, restore, "%s cannot be checked: %v", path, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return fail(name, restore, "%s: quick_check: %v", path, err)
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return fail(name, restore, "%s: quick_check: %v", path, err)
	}
	if len(lines) != 1 || lines[0] != "ok" {
		return fail(name, restore, "%s is damaged: %s", path, strings.Join(lines, "; "))
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err == nil && mode != "wal" {
		return warn(name, "start the daemon once: it opens the store in WAL mode", "%s passes quick_check, but its journal mode is %s, not wal", path, mode)
	}
	return ok(name, "%s passes PRAGMA quick_check (opened read-only, WAL)", path)
}

// platformKeyCheck reads platform.pub and checks it is the public half of keys/platform.key:
// vendors and auditors verify certificates and checkpoints with platform.pub, so a
// replaced one makes every verification meaningless. It returns the verifier key text.
func platformKeyCheck(dir string) (string, Check) {
	const name = "platform-key"
	pubPath, keyPath := filepath.Join(dir, "platform.pub"), filepath.Join(dir, "keys", "platform.key")
	b, err := readSmall(pubPath)
	if err != nil {
		return "", fail(name, "restore platform.pub from a backup, or from the copy vendors and auditors were given", "%v", err)
	}
	vkey := strings.TrimSpace(string(b))
	_, pub, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		return "", fail(name, "restore platform.pub from a backup", "%s: %v", pubPath, err)
	}
	sb, err := readSmall(keyPath)
	if err != nil {
		if os.Geteuid() != 0 && errors.Is(err, os.ErrPermission) {
			return vkey, skip(name, "keys/platform.key is readable by root only")
		}
		return vkey, fail(name, "restore keys/platform.key from its separate backup", "%v", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sb)))
	clear(sb)
	if err != nil || len(seed) != ed25519.SeedSize {
		return vkey, fail(name, "restore keys/platform.key from its separate backup", "%s is damaged", keyPath)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	clear(seed)
	derived := priv.Public().(ed25519.PublicKey)
	clear(priv)
	if !derived.Equal(pub) {
		return vkey, fail(name, "restore platform.pub (or keys/platform.key) from the same backup: certificates and checkpoints are signed with keys/platform.key and verified with platform.pub",
			"%s is not the public half of %s", pubPath, keyPath)
	}
	return vkey, ok(name, "platform.pub is the public half of keys/platform.key (%s)", audit.KeyID(pub))
}

// auditCheck verifies the audit log in the store, offline, against its checkpoints and the
// platform's public key: every record, every stored tree hash, every signature.
func auditCheck(ctx context.Context, db *sql.DB, dir, vkey string) Check {
	const name = "audit-log"
	if vkey == "" {
		return skip(name, "no platform.pub to verify the checkpoints with")
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true}) // one snapshot, even while the daemon appends
	if err != nil {
		return fail(name, "", "read the audit log: %v", err)
	}
	defer tx.Rollback()
	rep, err := verifyingLog(dir, vkey).Verify(ctx, auditReader{tx})
	if err != nil {
		fix := "do not serve from this store: restore veil.db from a backup whose log verifies, and compare the latest checkpoint with one an auditor kept (veil audit verify)"
		if !errors.Is(err, audit.ErrTampered) {
			fix = "check the store (see the store check) and run veil doctor again"
		}
		return fail(name, fix, "the audit log does NOT verify: %v", err)
	}
	if rep.Pending > 0 {
		// A daemon signs every commit, and signs what a crash left unsigned when it starts;
		// entries no checkpoint covers were added by someone else, or the daemon is running
		// and has not signed them yet.
		return fail(name, "do not serve from this store if no daemon is running: entries were added without the platform's signature; restore veil.db from a backup whose log verifies (if the daemon is running, run veil doctor again)",
			"%d of %d entries are not covered by any signed checkpoint", rep.Pending, rep.Records)
	}
	return ok(name, "%d entries and %d signed checkpoints verify against platform.pub; root %s", rep.Records, rep.Checkpoints, rep.Root)
}

// auditReader is an audit.Reader over the store's audit tables in a read-only transaction.
// It mirrors store/sqlite's, which is only reachable through a writable Open.
type auditReader struct{ tx *sql.Tx }

func (r auditReader) Size(ctx context.Context) (int64, error) {
	var n int64
	err := r.tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_records`).Scan(&n)
	return n, err
}

func (r auditReader) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	stmt, err := r.tx.PrepareContext(ctx, `SELECT hash FROM audit_hashes WHERE idx = ?`)
	if err != nil {
		return nil, err
	}
	defer stmt.Close()
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		var h []byte
		if err := stmt.QueryRowContext(ctx, idx).Scan(&h); err != nil {
			return nil, fmt.Errorf("audit hash %d: %w", idx, err)
		}
		if len(h) != tlog.HashSize {
			return nil, fmt.Errorf("audit hash %d: stored hash has %d bytes, want %d", idx, len(h), tlog.HashSize)
		}
		copy(out[i][:], h)
	}
	return out, nil
}

func (r auditReader) ReadRecords(ctx context.Context, from, to int64) ([][]byte, error) {
	rows, err := r.tx.QueryContext(ctx, `SELECT data FROM audit_records WHERE idx >= ? AND idx < ? ORDER BY idx`, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func (r auditReader) Checkpoints(ctx context.Context) ([]audit.Checkpoint, error) {
	rows, err := r.tx.QueryContext(ctx, `SELECT size, note FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		var c audit.Checkpoint
		if err := rows.Scan(&c.Size, &c.Note); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// daemonCheck asks the data directory's socket, if there is one, which key it serves: a
// daemon answering with another key is not this data directory's.
func daemonCheck(ctx context.Context, dir string) Check {
	const name = "daemon"
	sock := filepath.Join(dir, "veil.sock")
	if _, err := os.Stat(sock); err != nil {
		return ok(name, "not running (no socket %s)", sock)
	}
	c, err := client.New("unix://"+sock, "")
	if err != nil {
		return fail(name, "", "%v", err)
	}
	k, err := c.PlatformKey(ctx)
	if err != nil {
		return ok(name, "not running (nothing answers on %s; veil serve replaces the socket when it starts)", sock)
	}
	b, err := readSmall(filepath.Join(dir, "platform.pub"))
	if err == nil && strings.TrimSpace(string(b)) != k.VerifierKey {
		return fail(name, "stop the daemon that listens there: it serves another data directory's key",
			"the daemon on %s answers with a platform key that is not this data directory's platform.pub", sock)
	}
	return ok(name, "running: answers on %s with this data directory's platform key", sock)
}
