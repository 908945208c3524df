package doctor

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/veil-dp/veil/audit"
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
