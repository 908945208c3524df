package platform

import (
	"fmt"
	"path/filepath"

	"github.com/veil-dp/veil/policy"
)

// AuditStatePath is the audit signer's state file: AuditState, or "audit.state" beside the
// signing key's file. With the key read from a file descriptor there is no such file, and
// AuditState must be set.
func (c Config) AuditStatePath() (string, error) {
	if c.AuditState != "" {
		return c.AuditState, nil
	}
	if c.AuditKeyFD > 0 {
		return "", fmt.Errorf("%w: with --audit-key-fd the signer's state file has no default place: give --audit-state PATH (somewhere the store's writer cannot change, like the key)", policy.ErrInvalid)
	}
	return filepath.Join(filepath.Dir(c.KeyPath()), "audit.state"), nil
}

// StoreMarkerPath is the store's shutdown marker: beside the signer's state, where the
// store's writer should not reach, so that it cannot forge a marker matching a changed
// store.
func (c Config) StoreMarkerPath() (string, error) {
	st, err := c.AuditStatePath()
	if err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(st), "store.shutdown"), nil
}
