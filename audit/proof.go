package audit

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxProofHashes bounds a proof read from untrusted input: a tree of 2⁶³ records needs 63.
const maxProofHashes = 64

// Proof shows that Record is the entry at Index in the log whose signed checkpoint is
// Checkpoint. In JSON, Record and Checkpoint are base64 strings (encoding/json's []byte)
// and Hashes are base64 strings (tlog.Hash).
type Proof struct {
	Index      int64       `json:"index"`
	Record     []byte      `json:"record"`
	Checkpoint []byte      `json:"checkpoint"`
	Hashes     []tlog.Hash `json:"hashes"`
}

// Prove returns an inclusion proof of the record at index against the latest checkpoint.
// The proof is checked before it is returned, so a store that no longer matches its
// checkpoint yields ErrTampered rather than a proof that does not verify.
func (l *Log) Prove(ctx context.Context, r Reader, index int64) (*Proof, error) {
	if l.err != nil {
		return nil, l.err
	}
	cps, err := r.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("prove audit entry %d: read checkpoints: %w", index, err)
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("%w: the audit log has no checkpoint yet", ErrNotFound)
	}
	latest := cps[len(cps)-1]
	origin, size, _, err := OpenCheckpoint(l.verifier, latest.Note)
	if err != nil {
		return nil, fmt.Errorf("prove audit entry %d: latest checkpoint: %w", index, err)
	}
	if origin != l.origin || size != latest.Size {
		return nil, fmt.Errorf("%w: prove audit entry %d: the latest checkpoint is not this log's checkpoint for size %d", ErrTampered, index, latest.Size)
	}
	if index < 0 || index >= size {
		return nil, fmt.Errorf("%w: the latest checkpoint covers entries 0..%d; entry %d is not among them", ErrNotFound, size-1, index)
	}
	recs, err := r.ReadRecords(ctx, index, index+1)
	if err != nil {
		return nil, fmt.Errorf("prove audit entry %d: read record: %w", index, err)
	}
	if len(recs) != 1 {
		return nil, fmt.Errorf("%w: audit entry %d is covered by the latest checkpoint but missing from the store", ErrTampered, index)
	}
	hashes, err := tlog.ProveRecord(size, index, hashReader{ctx, r})
	if err != nil {
		return nil, fmt.Errorf("prove audit entry %d: %w", index, err)
	}
	p := &Proof{Index: index, Record: recs[0], Checkpoint: latest.Note, Hashes: hashes}
	if err := CheckProof(l.verifier, p); err != nil {
		return nil, fmt.Errorf("prove audit entry %d: the stored log does not match its latest checkpoint (run audit verify): %w", index, err)
	}
	return p, nil
}

// CheckProof checks a proof offline: the checkpoint's signature by v's key, and that the
// record's hash is at Index in the checkpointed tree. It does not decode the record; use
// DecodeEntry for that. Malformed proofs are ErrInvalid, proofs that do not verify
// ErrTampered.
func CheckProof(v note.Verifier, p *Proof) error {
	if p == nil {
		return fmt.Errorf("%w: no proof", ErrInvalid)
	}
	if len(p.Hashes) > maxProofHashes {
		return fmt.Errorf("%w: proof has %d hashes, more than %d", ErrInvalid, len(p.Hashes), maxProofHashes)
	}
	_, size, root, err := OpenCheckpoint(v, p.Checkpoint)
	if err != nil {
		return err
	}
	if p.Index < 0 || p.Index >= size {
		return fmt.Errorf("%w: entry %d is outside the checkpoint's tree of %d entries", ErrInvalid, p.Index, size)
	}
	if err := tlog.CheckRecord(p.Hashes, size, root, p.Index, tlog.RecordHash(p.Record)); err != nil {
		return fmt.Errorf("%w: entry %d is not included in the checkpointed tree of %d entries", ErrTampered, p.Index, size)
	}
	return nil
}

// ConsistencyProof shows that the log of checkpoint New extends the log of checkpoint Old:
// an auditor who kept Old can check that nothing it covered was changed since.
type ConsistencyProof struct {
	Old    []byte      `json:"old"`
	New    []byte      `json:"new"`
	Hashes []tlog.Hash `json:"hashes"`
}

// ProveConsistency returns a proof that the latest checkpoint extends the checkpoint of
// size oldSize.
func (l *Log) ProveConsistency(ctx context.Context, r Reader, oldSize int64) (*ConsistencyProof, error) {
	if l.err != nil {
		return nil, l.err
	}
	cps, err := r.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("prove audit consistency: read checkpoints: %w", err)
	}
	var old []byte
	for _, c := range cps {
		if c.Size == oldSize {
			old = c.Note
		}
	}
	if old == nil || oldSize < 1 {
		return nil, fmt.Errorf("%w: no checkpoint for size %d", ErrNotFound, oldSize)
	}
	latest := cps[len(cps)-1]
	hashes, err := tlog.ProveTree(latest.Size, oldSize, hashReader{ctx, r})
	if err != nil {
		return nil, fmt.Errorf("prove audit consistency %d→%d: %w", oldSize, latest.Size, err)
	}
	p := &ConsistencyProof{Old: old, New: latest.Note, Hashes: hashes}
	if err := CheckConsistency(l.verifier, p); err != nil {
		return nil, fmt.Errorf("prove audit consistency %d→%d: the stored log does not match its checkpoints (run audit verify): %w", oldSize, latest.Size, err)
	}
	return p, nil
}

// CheckConsistency checks offline that both checkpoints are signed by v's key, are of the
// same log, and that New's tree extends Old's.
func CheckConsistency(v note.Verifier, p *ConsistencyProof) error {
	if p == nil {
		return fmt.Errorf("%w: no proof", ErrInvalid)
	}
	if len(p.Hashes) > 2*maxProofHashes {
		return fmt.Errorf("%w: proof has %d hashes, more than %d", ErrInvalid, len(p.Hashes), 2*maxProofHashes)
	}
	oldOrigin, oldSize, oldRoot, err := OpenCheckpoint(v, p.Old)
	if err != nil {
		return fmt.Errorf("old checkpoint: %w", err)
	}
	newOrigin, newSize, newRoot, err := OpenCheckpoint(v, p.New)
	if err != nil {
		return fmt.Errorf("new checkpoint: %w", err)
	}
	if oldOrigin != newOrigin {
		return fmt.Errorf("%w: the checkpoints are of different logs", ErrTampered)
	}
	if oldSize < 1 || oldSize > newSize {
		return fmt.Errorf("%w: the old checkpoint (size %d) must be non-empty and not larger than the new one (size %d)", ErrInvalid, oldSize, newSize)
	}
	if err := tlog.CheckTree(p.Hashes, newSize, newRoot, oldSize, oldRoot); err != nil {
		return fmt.Errorf("%w: the log of size %d does not extend the log of size %d", ErrTampered, newSize, oldSize)
	}
	return nil
}
