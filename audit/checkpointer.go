package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// Storage is how a Checkpointer reaches the stored log: a read snapshot, and a write
// transaction to store a checkpoint in. store.AuditLog adapts a store.Store.
type Storage interface {
	ViewLog(ctx context.Context, fn func(Reader) error) error
	UpdateLog(ctx context.Context, fn func(Writer) error) error
}

// Checkpointer signs the committed log with a Signer, stores the checkpoint in the store
// (where clients read it) and appends it to every Archive. Sync is meant to run after each
// commit that appended audit records; concurrent calls queue, and the first signs what all
// of them committed.
//
// When the log can no longer be signed safely (the signer refuses a tree, its state file
// cannot be written, or an archive refuses a checkpoint as inconsistent) the checkpointer
// stops for good and calls halt, which should make the store refuse writes: entries the
// signer cannot sign must not pile up. An archive that is merely unreachable (a mount
// down) is reported by Err and retried on the next Sync.
type Checkpointer struct {
	signer   *Signer
	st       Storage
	archives []*Archive
	halt     func(error)

	mu      sync.Mutex
	stored  int64 // the size of the newest checkpoint known to be in the store
	stopped error
	archErr error
}

// NewCheckpointer returns a checkpointer; halt may be nil.
func NewCheckpointer(s *Signer, st Storage, archives []*Archive, halt func(error)) *Checkpointer {
	return &Checkpointer{signer: s, st: st, archives: archives, halt: halt}
}

// Sync signs the log as committed now, if it grew, stores the checkpoint and appends it to
// the archives. It returns the latest checkpoint (nil for an empty log).
func (c *Checkpointer) Sync(ctx context.Context) (*Checkpoint, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped != nil {
		return nil, c.stopped
	}
	var cp *Checkpoint
	err := c.st.ViewLog(ctx, func(r Reader) error {
		var err error
		cp, err = c.signer.Sign(ctx, r)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrTampered) || c.signer.Err() != nil {
			return nil, c.stop(err)
		}
		return nil, fmt.Errorf("sign audit checkpoint: %w", err)
	}
	if cp == nil {
		return nil, nil
	}
	if cp.Size > c.stored {
		err := c.st.UpdateLog(ctx, func(w Writer) error { return w.AddCheckpoint(ctx, cp.Size, cp.Note) })
		if err != nil {
			// Signed and in the signer's state: the next Sync stores it.
			return cp, fmt.Errorf("store audit checkpoint %d: %w", cp.Size, err)
		}
		c.stored = cp.Size
	}
	var errs []error
	for _, a := range c.archives {
		if err := a.Append(ctx, *cp, c.prove); err != nil {
			if errors.Is(err, ErrTampered) {
				return cp, c.stop(err)
			}
			errs = append(errs, err)
		}
	}
	c.archErr = errors.Join(errs...)
	return cp, c.archErr
}

func (c *Checkpointer) stop(err error) error {
	c.stopped = fmt.Errorf("the audit log can no longer be signed: %w", err)
	if c.halt != nil {
		c.halt(c.stopped)
	}
	return c.stopped
}

// prove computes a consistency proof from the store, for archives.
func (c *Checkpointer) prove(ctx context.Context, from, to int64) ([]tlog.Hash, error) {
	var p []tlog.Hash
	err := c.st.ViewLog(ctx, func(r Reader) error {
		var err error
		p, err = tlog.ProveTree(to, from, hashReader{ctx, r})
		return err
	})
	return p, err
}

// Err reports why checkpoints are not leaving the box, for a readiness check: the failure
// that stopped the checkpointer, or the last Sync's archive failures; nil when healthy.
func (c *Checkpointer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped != nil {
		return c.stopped
	}
	return c.archErr
}
