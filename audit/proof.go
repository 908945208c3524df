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
// an auditor who kept Old can check that nothing it covered was changed since. Served by
// the daemon, Old is the store's own copy of the older checkpoint if it has one; a client
// checks against the copy it kept, never against the server's.
type ConsistencyProof struct {
	Old    []byte      `json:"old,omitempty"`
	New    []byte      `json:"new"`
	Hashes []tlog.Hash `json:"hashes"`
}

// ProveConsistency returns a proof that the log's tree at the stored checkpoint of size to
// (0: the latest) extends its tree of size from. It reads one snapshot r, so the checkpoint
// and the hashes agree even while the log grows, and checks the proof before returning it:
// a store that no longer matches its checkpoints yields ErrTampered, not a bad proof.
func (l *Log) ProveConsistency(ctx context.Context, r Reader, from, to int64) (*ConsistencyProof, error) {
	if l.err != nil {
		return nil, l.err
	}
	if from < 1 {
		return nil, fmt.Errorf("%w: the older tree size must be at least 1, not %d", ErrInvalid, from)
	}
	cps, err := r.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("prove audit consistency: read checkpoints: %w", err)
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("%w: the audit log has no checkpoint yet", ErrNotFound)
	}
	var newCP, oldCP *Checkpoint
	for i := range cps {
		switch cps[i].Size {
		case to:
			newCP = &cps[i]
		case from:
			oldCP = &cps[i]
		}
	}
	if to == 0 {
		newCP = &cps[len(cps)-1]
	}
	if newCP == nil {
		return nil, fmt.Errorf("%w: no checkpoint of size %d", ErrNotFound, to)
	}
	if from > newCP.Size {
		return nil, fmt.Errorf("%w: the checkpoint of size %d is older than size %d; the log signed no larger tree", ErrInvalid, newCP.Size, from)
	}
	next, err := openTree(l.verifier, newCP.Note)
	if err != nil {
		return nil, fmt.Errorf("prove audit consistency: checkpoint %d: %w", newCP.Size, err)
	}
	if next.origin != l.origin || next.size != newCP.Size {
		return nil, fmt.Errorf("%w: the checkpoint stored for size %d is not this log's checkpoint of that size", ErrTampered, newCP.Size)
	}
	hr := hashReader{ctx, r}
	root, err := tlog.TreeHash(next.size, hr)
	if err != nil {
		return nil, fmt.Errorf("prove audit consistency %d→%d: %w", from, next.size, err)
	}
	if root != next.root {
		return nil, fmt.Errorf("%w: the stored tree of size %d does not match its signed checkpoint (run audit verify)", ErrTampered, next.size)
	}
	hashes, err := tlog.ProveTree(next.size, from, hr)
	if err != nil {
		return nil, fmt.Errorf("prove audit consistency %d→%d: %w", from, next.size, err)
	}
	p := &ConsistencyProof{New: newCP.Note, Hashes: hashes}
	if oldCP != nil {
		p.Old = oldCP.Note
		if err := CheckConsistency(l.verifier, p); err != nil {
			return nil, fmt.Errorf("prove audit consistency %d→%d: the stored log does not match its checkpoints (run audit verify): %w", from, next.size, err)
		}
	}
	return p, nil
}

// CheckConsistency checks offline that both checkpoints are signed by v's key and are of the
// same log, and that New's tree extends Old's; see checkExtends for what it reports.
func CheckConsistency(v note.Verifier, p *ConsistencyProof) error {
	if p == nil {
		return fmt.Errorf("%w: no proof", ErrInvalid)
	}
	prev, err := openTree(v, p.Old)
	if err != nil {
		return fmt.Errorf("old checkpoint: %w", err)
	}
	next, err := openTree(v, p.New)
	if err != nil {
		return fmt.Errorf("new checkpoint: %w", err)
	}
	return checkExtends(prev, next, p.Hashes)
}
