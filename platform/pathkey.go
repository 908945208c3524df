package platform

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/veil-dp/veil/durable"
)

// PathKeyPath is the secret behind PrivateName (keys/, 0600).
func (c Config) PathKeyPath() string { return filepath.Join(c.DataDir, "keys", "paths.key") }

var (
	pathKeyMu sync.Mutex
	pathKeys  = map[string][]byte{} // PathKeyPath -> its key
)

// PrivateName is the name of a directory under the data directory that holds data files
// others may read (the sandboxes' unprivileged roots read them through directories every
// local user may traverse but not list): a name no one but the daemon can compute from what
// it names (purpose and id, e.g. a dataset's version, which its vendors know), so that
// reaching the files takes the name, which only the daemon has. It is keyed by a secret of
// the data directory (PathKeyPath, made at the first use) and so stays the same across
// restarts.
func (c Config) PrivateName(purpose, id string) (string, error) {
	key, err := c.pathKey()
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("veil private name\x00" + purpose + "\x00" + id))
	return hex.EncodeToString(mac.Sum(nil)[:16]), nil
}

func (c Config) pathKey() ([]byte, error) {
	path := c.PathKeyPath()
	pathKeyMu.Lock()
	defer pathKeyMu.Unlock()
	if k, ok := pathKeys[path]; ok {
		return k, nil
	}
	k, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k = make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("the data directory's path key: %w", err)
		}
		err = durable.WriteFile(path, k, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("the data directory's path key %s: %w", path, err)
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("the data directory's path key %s holds %d bytes, not 32; restore it from a backup", path, len(k))
	}
	pathKeys[path] = k
	return k, nil
}
