package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/durable"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// keyName names the platform key in signed notes and certificates.
const keyName = "veil-platform"

// Init creates a data directory: the store, the platform's ed25519 signing key (at
// KeyPath, which may be outside the data directory) with the signer's state beside it, and
// a first operator, whose token it returns. The token is shown once and stored only as a
// hash. Init refuses a directory that already holds a store, and a key or signer state that
// already exists (they belong to another store).
func Init(ctx context.Context, cfg Config) (token string, err error) {
	if _, err := os.Stat(cfg.StorePath()); err == nil {
		return "", fmt.Errorf("%w: %s already holds a Veil store; use it, or choose another --data-dir", policy.ErrConflict, cfg.DataDir)
	}
	if cfg.AuditKeyFD > 0 {
		return "", fmt.Errorf("%w: veil init creates the signing key and writes it to a file: give --audit-key PATH (then hand it to veil serve by descriptor if you wish)", policy.ErrInvalid)
	}
	state, err := cfg.AuditStatePath()
	if err != nil {
		return "", err
	}
	for _, f := range []string{cfg.KeyPath(), state} {
		if _, err := os.Stat(f); err == nil {
			return "", fmt.Errorf("%w: %s already exists: it belongs to another store; move it away or choose another --audit-key / --audit-state", policy.ErrConflict, f)
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "keys"), 0o700); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	for _, d := range []string{filepath.Dir(cfg.KeyPath()), filepath.Dir(state)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("create the signing key's directory: %w", err)
		}
	}
	// o+x (not r) on the data directory: container root is an unprivileged host uid and must
	// traverse to the dataset files it mounts; the keys and the store stay owner-only.
	if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
		return "", err
	}
	if err := os.MkdirAll(cfg.DataPath(), 0o711); err != nil {
		return "", err
	}
	key, err := audit.GenerateKey(keyName)
	if err != nil {
		return "", err
	}
	if err := durable.WriteFile(cfg.KeyPath(), key.Secret(), 0o600); err != nil {
		return "", fmt.Errorf("write platform key: %w", err)
	}
	if err := durable.WriteFile(cfg.PubPath(), []byte(key.VerifierKey()+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("write platform public key: %w", err)
	}
	opts, err := storeOptions(cfg, true)
	if err != nil {
		return "", err
	}
	db, err := sqlite.OpenWith(ctx, opts)
	if err != nil {
		return "", err
	}
	defer db.Close()
	as, err := openSigner(ctx, cfg, key, nil, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return "", err
	}
	token, hash := platform.NewToken()
	now := time.Now().UTC()
	p := store.Principal{ID: platform.NewID("p"), Name: "operator", Role: "operator", TokenHash: hash, Created: now}
	log := as.signer.Log()
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
	// The commit hook signed the first checkpoint; a signer that could not is an error now,
	// not at the first start.
	if err := as.signer.Err(); err != nil {
		return "", err
	}
	if _, ok := as.signer.Latest(); !ok {
		return "", errors.New("veil init: the first audit checkpoint was not signed")
	}
	return token, nil
}
