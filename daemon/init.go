package daemon

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// keyName names the platform key in signed notes and certificates.
const keyName = "veil-platform"

// Init creates a data directory: the store, the platform's ed25519 signing key, and a first
// operator, whose token it returns. The token is shown once and stored only as a hash. Init
// refuses a directory that already holds a store.
func Init(ctx context.Context, cfg Config) (token string, err error) {
	if _, err := os.Stat(cfg.StorePath()); err == nil {
		return "", fmt.Errorf("%w: %s already holds a Veil store; use it, or choose another --data-dir", policy.ErrConflict, cfg.DataDir)
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "keys"), 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	// o+x (not r) on the data directory: container root is an unprivileged host uid and must
	// traverse to the dataset files it mounts; the keys and the store stay owner-only.
	if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
		return "", err
	}
	if err := os.MkdirAll(cfg.DataPath(), 0o711); err != nil {
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
	if err := platform.WriteFileAtomic(cfg.KeyPath(), []byte(seed+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write platform key: %w", err)
	}
	if err := platform.WriteFileAtomic(cfg.PubPath(), []byte(key.VerifierKey()+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write platform public key: %w", err)
	}
	db, err := sqlite.Open(ctx, cfg.StorePath())
	if err != nil {
		return "", err
	}
	defer db.Close()
	token, hash := platform.NewToken()
	now := time.Now().UTC()
	p := store.Principal{ID: platform.NewID("p"), Name: "operator", Role: "operator", TokenHash: hash, Created: now}
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
	b, err := os.ReadFile(cfg.KeyPath())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no platform key in %s: run `veil init --data-dir %s` first", cfg.DataDir, cfg.DataDir)
		}
		return nil, err
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("platform key %s is damaged", cfg.KeyPath())
	}
	return audit.NewKey(keyName, ed25519.NewKeyFromSeed(seed))
}
