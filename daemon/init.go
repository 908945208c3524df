package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// keyName names the platform key in signed notes and certificates.
const keyName = "veil-platform"

// Init creates a data directory: the store, the platform's ed25519 signing key, and a first
// operator, whose token it returns. The token is shown once and stored only as a hash. Init
// refuses a directory that already holds a store.
func Init(ctx context.Context, cfg Config) (token string, err error) {
	if _, err := os.Stat(cfg.storePath()); err == nil {
		return "", fmt.Errorf("%w: %s already holds a Veil store; use it, or choose another --data-dir", errConflict, cfg.DataDir)
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "keys"), 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	// o+x (not r) on the data directory: container root is an unprivileged host uid and must
	// traverse to the dataset files it mounts; the keys and the store stay owner-only.
	if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
		return "", err
	}
	if err := os.MkdirAll(cfg.dataPath(), 0o711); err != nil {
		return "", err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	key, err := audit.NewKey(keyName, priv)
	if err != nil {
		return "", err
	}
	seed := base64.StdEncoding.EncodeToString(priv.Seed())
	if err := writeFileAtomic(cfg.keyPath(), []byte(seed+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write platform key: %w", err)
	}
	if err := writeFileAtomic(cfg.pubPath(), []byte(key.VerifierKey()+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write platform public key: %w", err)
	}
	db, err := sqlite.Open(ctx, cfg.storePath())
	if err != nil {
		return "", err
	}
	defer db.Close()
	token, hash := newToken()
	now := time.Now().UTC()
	p := store.Principal{ID: newID("p"), Name: "operator", Role: "operator", TokenHash: hash, Created: now}
	log := audit.NewLog(keyName, key)
	err = db.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutPrincipal(ctx, p); err != nil {
			return err
		}
		_, err := log.Append(ctx, tx, audit.Entry{Time: now, Actor: "veil-init", Role: "system", Action: "platform.init",
			Object: "principal/" + p.ID, Details: map[string]string{"role": "operator", "verifier_key": key.VerifierKey()}})
		return err
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// loadKey reads the platform key.
func loadKey(cfg Config) (*audit.Key, error) {
	b, err := os.ReadFile(cfg.keyPath())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no platform key in %s: run `veil init --data-dir %s` first", cfg.DataDir, cfg.DataDir)
		}
		return nil, err
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("platform key %s is damaged", cfg.keyPath())
	}
	return audit.NewKey(keyName, ed25519.NewKeyFromSeed(seed))
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// newToken returns a fresh bearer token and the hash under which it is stored.
func newToken() (string, []byte) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	tok := "veil_" + base64.RawURLEncoding.EncodeToString(b)
	return tok, hashToken(tok)
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

var idEnc = base32.NewEncoding("abcdefghijkmnpqrstuvwxyz23456789").WithPadding(base32.NoPadding)

// newID returns prefix-xxxxxxxxxxxx with 60 random bits.
func newID(prefix string) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + "-" + idEnc.EncodeToString(b)[:12]
}
