package platform

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/veil-dp/veil/durable"
	"github.com/veil-dp/veil/policy"
)

// WriteFileAtomic replaces path with data durably (durable.WriteFile: a temporary file
// created owner-only and narrowed to mode before the data goes in, fsync, rename, fsync of
// the directory), so that a reader or a crash sees the old file or the new one, never half
// of one, and a secret is never readable with wider permissions than mode.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return durable.WriteFile(path, data, mode)
}

// TenantFile is where a tenant's upload with the given digest lives under area: the digest
// is checked to be one (so no path comes from the request), the tenant hashed.
func (c Config) TenantFile(area, tenant, digest string) (string, error) {
	hexd, ok := strings.CutPrefix(digest, "sha256:")
	if b, err := hex.DecodeString(hexd); !ok || err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%w: %q is not a digest (sha256:<64 hex digits>)", policy.ErrInvalid, digest)
	}
	t := sha256.Sum256([]byte(tenant))
	return filepath.Join(c.DataDir, area, hex.EncodeToString(t[:8]), hexd), nil
}

// StoreUpload writes an upload where the sandbox's unprivileged root can read it
// (directories 0711, the file with mode), atomically.
func StoreUpload(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return err
		}
	}
	return WriteFileAtomic(path, b, mode)
}
