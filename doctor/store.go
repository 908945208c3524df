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
	"github.com/veil-dp/veil/store/sqlite"
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
func storeChecks(ctx context.Context, o Options) []Check {
	dir := o.DataDir
	path := filepath.Join(dir, "veil.db")
	vkey, keyCheck := platformKeyCheck(dir, o.KeyPath)
	marker := markerCheck(path, o.StoreMarker)
	if _, err := os.Stat(path); err != nil {
		return []Check{
			fail("store", "create the data directory with veil init, or restore veil.db from a backup", "no store: %v", err),
			marker,
			skip("audit-log", "no store"),
			skip("audit-signer", "no store"),
			keyCheck,
		}
	}
	db, err := openStore(path)
	if err != nil {
		return []Check{fail("store", "", "open %s read-only: %v", path, err), marker, skip("audit-log", "the store cannot be opened"), skip("audit-signer", "the store cannot be opened"), keyCheck}
	}
	defer db.Close()
	return []Check{integrityCheck(ctx, db, path), marker, auditCheck(ctx, db, dir, vkey), signerCheck(ctx, db, vkey, o.AuditState), keyCheck}
}

// markerCheck runs the daemon's own start-up check of the store's files against its
// shutdown marker: the file is the one shut down, and a store not shut down cleanly (or
// open now) still has its write-ahead log.
func markerCheck(path, marker string) Check {
	const name = "shutdown-marker"
	if err := sqlite.CheckFiles(sqlite.Options{Path: path, Marker: marker}); err != nil {
		return fail(name, "the daemon will refuse to start on this store: follow the message (restore the store from a backup, or put back what was moved)", "%v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		return ok(name, "no store to check")
	}
	return ok(name, "the store's files match its shutdown marker %s", marker)
}

// signerCheck is the daemon's start-up check that the store's log extends the last
// checkpoint the audit signer signed (its state file, kept apart from the store): a log
// that was truncated, rolled back to an older copy or rewritten does not.
func signerCheck(ctx context.Context, db *sql.DB, vkey, state string) Check {
	const name = "audit-signer"
	if vkey == "" {
		return skip(name, "no platform.pub to open the signer's state with")
	}
	b, err := readSmall(state)
	if errors.Is(err, os.ErrNotExist) {
		return fail(name, "put the signer's state file back (it is kept beside the platform key); only after an upgrade from a Veil without one, start once with veil serve --audit-adopt",
			"there is no audit signer state at %s", state)
	}
	if err != nil {
		return fail(name, "", "read the signer's state: %v", err)
	}
	v, _, _ := audit.ParseVerifierKey(vkey)
	_, size, root, err := audit.OpenCheckpoint(v, audit.LatestInState(b)) // checkpoints one after another
	if err != nil {
		return fail(name, "restore the state file from its copies", "%s does not hold a checkpoint signed by platform.pub: %v", state, err)
	}
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fail(name, "", "read the audit log: %v", err)
	}
	defer tx.Rollback()
	r := auditReader{tx}
	n, err := r.Size(ctx)
	if err != nil {
		return fail(name, "", "read the audit log: %v", err)
	}
	restore := "do not serve from this store: restore the newest backup of veil.db that holds at least the signed entries, and keep this one as evidence"
	if n < size {
		return fail(name, restore, "the store's audit log has %d entries, but the signer signed a checkpoint of %d (%s): entries were removed, or an older copy of the store was restored", n, size, state)
	}
	got, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return r.ReadHashes(ctx, idx) }))
	if err != nil || got != root {
		return fail(name, restore, "the store's first %d audit entries are not the tree the signer signed (%s): the log was rewritten or forked", size, state)
	}
	return ok(name, "the store's log (%d entries) extends the signer's last checkpoint (%d entries, %s)", n, size, state)
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
func platformKeyCheck(dir, keyPath string) (string, Check) {
	const name = "platform-key"
	pubPath := filepath.Join(dir, "platform.pub")
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
