package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/durable"
)

// Witness is an independent party's cosigner of one log's checkpoints (`veil audit
// witness`). It cosigns a checkpoint only after checking that it extends the last one it
// cosigned, which it keeps in a state file of its own, so it refuses a smaller tree, a
// fork and rewritten history, whatever the log's operator does to the log and its key.
type Witness struct {
	cos    *Cosigner
	log    note.Verifier
	origin string
	state  string
	last   *tree // nil before the first cosignature
}

// OpenWitness opens the witness state at statePath for the log whose checkpoints log
// verifies (origin is log's key name, as Veil signs). A missing state file is an error
// unless first is set: the first checkpoint a witness sees is trusted on first use, and
// that must be a deliberate step, not what happens when the state file is lost.
func OpenWitness(cos *Cosigner, log note.Verifier, statePath string, first bool) (*Witness, error) {
	if cos == nil || log == nil {
		return nil, fmt.Errorf("%w: witness needs its own key and the log's key", ErrInvalid)
	}
	w := &Witness{cos: cos, log: log, origin: log.Name(), state: statePath}
	b, err := readBounded(statePath, maxNoteSize)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !first {
			return nil, fmt.Errorf("%w: no witness state at %s: to start witnessing this log, run once with --init (the first checkpoint is trusted on first use); if the state was lost, restore it instead", ErrNotFound, statePath)
		}
		return w, nil
	case err != nil:
		return nil, fmt.Errorf("%w: read witness state: %v", ErrUnavailable, err)
	case first:
		return nil, fmt.Errorf("%w: witness state %s already exists; --init is only for the first run", ErrInvalid, statePath)
	}
	if _, err := CosignedAt(log, cos.Verifier(), b); err != nil {
		return nil, fmt.Errorf("witness state %s is not a checkpoint of this log cosigned by this witness: %w", statePath, err)
	}
	t, err := openTree(log, b)
	if err != nil {
		return nil, fmt.Errorf("witness state %s: %w", statePath, err)
	}
	if t.origin != w.origin {
		return nil, fmt.Errorf("%w: witness state %s is for log %.100q, not %.100q", ErrInvalid, statePath, t.origin, w.origin)
	}
	w.last = &t
	return w, nil
}

// Last returns the last checkpoint the witness cosigned, with its cosignature; ok is false
// before the first.
func (w *Witness) Last() (cp Checkpoint, ok bool) {
	if w.last == nil {
		return Checkpoint{}, false
	}
	return Checkpoint{Size: w.last.size, Note: bytes.Clone(w.last.note)}, true
}

// Cosign checks that checkpoint (signed by the log) extends the last one the witness
// cosigned, asking prove for the consistency proof, then adds the witness's cosignature,
// records the result in the state file and returns it. Anything that does not extend the
// last cosigned checkpoint is ErrTampered and leaves the state as it was.
func (w *Witness) Cosign(ctx context.Context, checkpoint []byte, prove ProveFunc) ([]byte, error) {
	next, err := openTree(w.log, checkpoint)
	if err != nil {
		return nil, fmt.Errorf("the log's checkpoint: %w", err)
	}
	if next.origin != w.origin {
		return nil, fmt.Errorf("%w: the checkpoint is of log %.100q, not %.100q", ErrTampered, next.origin, w.origin)
	}
	if w.last != nil {
		var proof []tlog.Hash
		if w.last.size < next.size {
			if proof, err = prove(ctx, w.last.size, next.size); err != nil {
				return nil, fmt.Errorf("get the proof that checkpoint %d extends the last one cosigned (%d): %w", next.size, w.last.size, err)
			}
		}
		if err := checkExtends(*w.last, next, proof); err != nil {
			return nil, fmt.Errorf("witness refuses to cosign: %w", err)
		}
	}
	n, err := note.Open(checkpoint, note.VerifierList(w.log))
	if err != nil {
		return nil, fmt.Errorf("the log's checkpoint: %w", err)
	}
	// Keep only the log's signature: other lines are unverified here and not ours to vouch for.
	cosigned, err := note.Sign(&note.Note{Text: n.Text, Sigs: n.Sigs}, w.cos)
	if err != nil {
		return nil, fmt.Errorf("cosign: %w", err)
	}
	if err := durable.WriteFile(w.state, cosigned, 0o644); err != nil {
		return nil, fmt.Errorf("%w: record the cosigned checkpoint in the witness state: %v", ErrUnavailable, err)
	}
	next.note = cosigned
	w.last = &next
	return cosigned, nil
}
