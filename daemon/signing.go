package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// LoadSigningKey reads the platform's signing key as the configuration says: from the file
// descriptor AuditKeyFD (read once and closed, so that no child inherits it) or from the
// file KeyPath (refused if other users can read or change it). It is the one place keys are
// loaded: a keyring (several keys, rotation) extends it here.
func LoadSigningKey(cfg Config) (*audit.Key, error) {
	if cfg.AuditKeyFD > 0 {
		return audit.LoadKeyFD(keyName, cfg.AuditKeyFD)
	}
	path := cfg.KeyPath()
	k, err := audit.LoadKey(keyName, path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no platform signing key at %s: run `veil init --data-dir %s` first, or give the key's place with --audit-key PATH or --audit-key-fd N", path, cfg.DataDir)
	}
	return k, err
}

// nameOptions names the flags the store's and the signer's messages call "the option that
// adopts ...".
func nameOptions(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var names []string
	if strings.Contains(msg, "adopts the store") {
		names = append(names, "the option that adopts the store as found is veil serve --store-adopt")
	}
	if strings.Contains(msg, "adopts the log") {
		names = append(names, "the option that adopts the log is veil serve --audit-adopt")
	}
	if len(names) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(names, "; "))
}

// storeOptions are how the daemon opens its store: never creating one, with the shutdown
// marker beside the signer's state.
func storeOptions(cfg Config, create bool) (sqlite.Options, error) {
	m, err := cfg.StoreMarkerPath()
	if err != nil {
		return sqlite.Options{}, err
	}
	return sqlite.Options{Path: cfg.StorePath(), Marker: m, Create: create, Adopt: cfg.StoreAdopt}, nil
}

// auditSigner is the daemon's signing side of the audit log: the signer with its state,
// the archives and the checkpointer that runs after each audited commit.
type auditSigner struct {
	signer *audit.Signer
	cp     *audit.Checkpointer
}

// openSigner opens the signer's state and the archives, checks that the store's log
// extends the last checkpoint the signer signed (or adopts the log, when told to and the
// signer has no state), hooks signing to the store's audited commits and signs what was
// committed but not yet signed (a crash between a commit and its signature). A failure is a
// refusal to start that says what is wrong and how to recover.
func openSigner(ctx context.Context, cfg Config, key *audit.Key, ring *audit.Keyring, db *sqlite.DB, logger *slog.Logger) (*auditSigner, error) {
	state, err := cfg.AuditStatePath()
	if err != nil {
		return nil, err
	}
	signer, err := audit.NewSignerKeyring(keyName, key, ring, state)
	if err != nil {
		return nil, fmt.Errorf("audit signer: %w", err)
	}
	var archives []*audit.Archive
	for _, p := range cfg.AuditArchives {
		var v note.Verifier = key.Verifier()
		if ring != nil {
			v = ring
		}
		a, err := audit.OpenArchive(p, keyName, v)
		if err != nil {
			return nil, fmt.Errorf("audit archive %s: %w; fix or remove it (--audit-archive) and start again", p, err)
		}
		archives = append(archives, a)
	}
	_, hasState := signer.Latest()
	err = db.View(ctx, func(tx store.Tx) error {
		if cfg.AuditAdopt && !hasState {
			return signer.Adopt(ctx, tx)
		}
		return signer.Check(ctx, tx)
	})
	if err != nil {
		return nil, err
	}
	if cfg.AuditAdopt && !hasState {
		n, _ := signer.Latest()
		logger.Warn("audit: adopted the store's log; the signer now vouches for it", "state", state, "checkpoint", n.Size)
	}
	cp := audit.NewCheckpointer(signer, store.AuditLog(db), archives, func(err error) {
		logger.Error("audit: the log can no longer be signed; the store refuses writes until the operator restarts Veil", "err", err)
		db.Halt(err)
	})
	// Signing runs in the committing goroutine, after the commit, so that a change is
	// signed when its request returns. Commits that finish while a signature is being made
	// wait for the next one, which covers all of them (group commit): a burst of requests
	// costs one state write, one stored checkpoint and one archive append per batch, not
	// per request.
	g := &groupSync{run: func(ctx context.Context) error { _, err := cp.Sync(ctx); return err }}
	g.cond = sync.NewCond(&g.mu)
	db.AfterAuditCommit(func(ctx context.Context) {
		if err := g.Sync(ctx); err != nil {
			logger.Error("audit: sign checkpoint", "err", err)
		}
	})
	if _, err := cp.Sync(ctx); err != nil {
		if errors.Is(err, audit.ErrTampered) || signer.Err() != nil {
			return nil, fmt.Errorf("audit start-up check failed: %w", err)
		}
		// An archive that is merely unreachable: readiness reports it, and the next
		// commit retries.
		logger.Warn("audit: checkpoint not archived", "err", err)
	}
	return &auditSigner{signer: signer, cp: cp}, nil
}

// Err is the signing side's failure for the readiness check: a stopped checkpointer, or an
// archive that did not take the last checkpoint.
func (a *auditSigner) Err() error { return a.cp.Err() }

// groupSync runs run for callers that each need a run that starts after they call: one run
// at a time, and the callers that arrive during a run share the next one.
type groupSync struct {
	run func(context.Context) error

	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	started uint64 // runs started
	done    uint64 // the last run finished
	err     error  // its outcome
}

// Sync returns once a run that started after the call has finished, with that run's error
// (or a later one's).
func (g *groupSync) Sync(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// A run under way may have read the log before this caller's commit: the next one.
	need := g.started + 1
	for g.done < need {
		if g.running {
			g.cond.Wait()
			continue
		}
		g.running = true
		g.started++
		mine := g.started
		g.mu.Unlock()
		err := g.run(ctx)
		g.mu.Lock()
		g.running, g.done, g.err = false, mine, err
		g.cond.Broadcast()
	}
	return g.err
}
