package platform

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrUploadDamaged is a stored upload that is not what was uploaded: larger than any upload
// may be, or not hashing to the digest it is stored under.
var ErrUploadDamaged = errors.New("stored upload damaged")

// ReadUpload reads back a tenant's upload stored under digest, with the upload's bound on the
// bytes actually read (a file replaced behind the daemon's back, or a sparse one, is never
// read whole), and checks it still hashes to its digest.
func ReadUpload(path, digest string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrUploadDamaged, digest)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than an upload may be", ErrUploadDamaged, digest)
	}
	sum := sha256.Sum256(b)
	if hexd, _ := strings.CutPrefix(digest, "sha256:"); hex.EncodeToString(sum[:]) != hexd {
		return nil, fmt.Errorf("%w: %s does not hash to its digest", ErrUploadDamaged, digest)
	}
	return b, nil
}
