package doctor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
)

// OpenStore opens a store file read-only, as the doctor's own checks do: the daemon may be
// running, and nothing here writes. For veil backup and veil restore.
func OpenStore(path string) (*sql.DB, error) { return openStore(path) }

// LogReader reads the audit log of a store opened with OpenStore inside tx, a read-only
// transaction: one snapshot, even while a daemon appends.
func LogReader(tx *sql.Tx) audit.Reader { return auditReader{tx} }

// QuickCheck runs PRAGMA quick_check on a store opened with OpenStore; nil means "ok".
func QuickCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, fmt.Sprintf("PRAGMA quick_check(%d)", maxIntegrityLines))
	if err != nil {
		return fmt.Errorf("the store cannot be read as a database: %w", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return fmt.Errorf("quick_check: %w", err)
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("quick_check: %w", err)
	}
	if len(lines) != 1 || lines[0] != "ok" {
		return fmt.Errorf("the store is damaged (PRAGMA quick_check: %s)", strings.Join(lines, "; "))
	}
	return nil
}

// Keyring is the data directory's keyring: platform.keyring after a key rotation, else
// platform.pub alone.
func Keyring(dir string) (*audit.Keyring, error) {
	b, err := readSmall(filepath.Join(dir, "platform.keyring"))
	if errors.Is(err, fs.ErrNotExist) {
		b, err = readSmall(filepath.Join(dir, "platform.pub"))
	}
	if err != nil {
		return nil, err
	}
	return client.ParseKeyring(b)
}

// verifyingLog verifies with the data directory's keyring if it has one, else with vkey
// (platform.pub).
func verifyingLog(dir, vkey string) *audit.Log {
	if _, err := os.Stat(filepath.Join(dir, "platform.keyring")); err == nil {
		if ring, err := Keyring(dir); err == nil {
			return audit.NewKeyringLog(ring)
		}
	}
	return audit.NewVerifyingLog(vkey)
}
