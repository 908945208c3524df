package platform

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/durable"
	"github.com/veil-dp/veil/policy"
)

// KeyringPath is the platform's keyring: its current public key and the retired ones, each
// with its term (public, like platform.pub). A data directory whose key was never rotated
// has none; its keyring is platform.pub alone.
func (c Config) KeyringPath() string { return filepath.Join(c.DataDir, "platform.keyring") }

// newKeyPath is where a rotation writes the new key before it takes the old one's place.
func (c Config) newKeyPath() string { return c.KeyPath() + ".new" }

// keyringFile is platform.keyring's content.
type keyringFile struct {
	Keys []audit.RingKey `json:"keys"`
}

// maxKeyring bounds the read of platform.keyring: a key is some 200 bytes.
const maxKeyring = 1 << 20

// LoadKeyring reads the keyring of the data directory whose current key is current: from
// platform.keyring, whose current key must be current, or, if there is none, current alone.
func LoadKeyring(c Config, current *audit.Key) (*audit.Keyring, error) {
	keys, err := readKeyring(c)
	if err != nil {
		return nil, err
	}
	if keys == nil {
		return audit.NewKeyring([]audit.RingKey{{VerifierKey: current.VerifierKey(), KeyID: audit.KeyID(current.PublicKey())}})
	}
	ring, err := audit.NewKeyring(keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.KeyringPath(), err)
	}
	if ring.Current() != current.VerifierKey() {
		fix := "restore keys/platform.key and platform.keyring from the same backup"
		if _, err := os.Stat(c.newKeyPath()); err == nil {
			fix = fmt.Sprintf("a key rotation was interrupted: finish it with mv %s %s, and put the keyring's last verifier_key in %s", c.newKeyPath(), c.KeyPath(), c.PubPath())
		}
		return nil, fmt.Errorf("%w: the current key of %s is not keys/platform.key: %s", policy.ErrInvalid, c.KeyringPath(), fix)
	}
	return ring, nil
}

func readKeyring(c Config) ([]audit.RingKey, error) {
	f, err := os.Open(c.KeyringPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyring+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyring {
		return nil, fmt.Errorf("%w: %s is more than %d bytes", policy.ErrInvalid, c.KeyringPath(), maxKeyring)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var kf keyringFile
	if err := dec.Decode(&kf); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", policy.ErrInvalid, c.KeyringPath(), err)
	}
	return kf.Keys, nil
}

// RotateKey replaces the platform's signing key by a new one and retires the old one as of
// now, for checkpoints of at most auditSize entries (the log's size: the daemon is stopped,
// and signed all of it). The old private key is deleted; its public key stays in the keyring.
// The new key is written beside the old one first, then the keyring, then the new key takes
// the old one's place, then platform.pub: an interruption is found by LoadKeyring.
func RotateKey(c Config, auditSize int64, now time.Time) (retired, current audit.RingKey, err error) {
	old, err := audit.LoadKey(keyNameOf(c), c.KeyPath())
	if err != nil {
		return retired, current, err
	}
	ring, err := LoadKeyring(c, old)
	if err != nil {
		return retired, current, err
	}
	next, err := audit.GenerateKey(old.Name())
	if err != nil {
		return retired, current, err
	}
	keys := ring.Keys()
	keys[len(keys)-1].Until, keys[len(keys)-1].MaxSize = now.UTC(), auditSize
	current = audit.RingKey{VerifierKey: next.VerifierKey(), KeyID: audit.KeyID(next.PublicKey()), From: now.UTC()}
	keys = append(keys, current)
	if _, err := audit.NewKeyring(keys); err != nil {
		return retired, current, err
	}
	b, _ := json.MarshalIndent(keyringFile{Keys: keys}, "", "  ")
	if err := durable.WriteFile(c.newKeyPath(), next.Secret(), 0o600); err != nil {
		return retired, current, fmt.Errorf("write the new key: %w", err)
	}
	if err := durable.WriteFile(c.KeyringPath(), append(b, '\n'), 0o644); err != nil {
		os.Remove(c.newKeyPath())
		return retired, current, fmt.Errorf("write the keyring: %w", err)
	}
	if err := os.Rename(c.newKeyPath(), c.KeyPath()); err != nil {
		return retired, current, fmt.Errorf("put the new key in place (mv %s %s to finish): %w", c.newKeyPath(), c.KeyPath(), err)
	}
	if err := durable.WriteFile(c.PubPath(), []byte(next.VerifierKey()+"\n"), 0o644); err != nil {
		return retired, current, fmt.Errorf("write platform.pub: %w", err)
	}
	return keys[len(keys)-2], current, nil
}

// keyNameOf is the key name platform.pub gives (veil init names it), or the daemon's.
func keyNameOf(c Config) string {
	if b, err := os.ReadFile(c.PubPath()); err == nil {
		if name, _, ok := strings.Cut(strings.TrimSpace(string(b)), "+"); ok && name != "" {
			return name
		}
	}
	return "veil-platform"
}
