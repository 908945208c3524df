package audit

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Reader reads a stored log.
type Reader interface {
	Size(ctx context.Context) (int64, error) // number of records
	// ReadHashes returns the stored hashes at the given stored-hash indexes (see
	// tlog.StoredHashIndex), one per index, or an error.
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	ReadRecords(ctx context.Context, from, to int64) ([][]byte, error) // records [from, to)
	Checkpoints(ctx context.Context) ([]Checkpoint, error)             // in order of size
}

// Writer is what Append needs; implemented by the store's write transaction. Appends must
// be serialised (one write transaction at a time), and the record, its hashes and the
// checkpoint must commit together with the change they record.
type Writer interface {
	Reader
	// AppendRecord stores leaf data at index and the hashes tlog.StoredHashes returned,
	// starting at stored-hash index tlog.StoredHashIndex(0, index).
	AppendRecord(ctx context.Context, index int64, data []byte, hashes []tlog.Hash) error
	AddCheckpoint(ctx context.Context, size int64, signedNote []byte) error
}

// Checkpoint is a signed note of the tree of the first Size records.
type Checkpoint struct {
	Size int64  `json:"size"`
	Note []byte `json:"note"`
}

// Report is the outcome of a successful Verify.
type Report struct {
	Records     int64  `json:"records"`
	Checkpoints int64  `json:"checkpoints"`
	Root        string `json:"root"` // base64 root hash of the records covered by the latest checkpoint
	Size        int64  `json:"size"` // the size of the latest checkpoint
	// Pending counts the records after the latest checkpoint: appended and committed, and
	// checked against their stored hashes, but not signed yet (a Signer signs after the
	// commit).
	Pending int64 `json:"pending,omitempty"`
}

// VerifyError says where a log fails verification. Index is the first record index at
// which the stored log differs from what was signed: the record there was changed,
// removed, reordered or inserted, or (for truncation) it is the first missing record.
// errors.Is(err, ErrTampered) holds for it.
type VerifyError struct {
	Index  int64
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit log: record %d: %s", e.Index, e.Reason)
}

// Is makes a VerifyError match ErrTampered.
func (e *VerifyError) Is(target error) bool { return target == ErrTampered }

// Log appends to and verifies an audit log. It holds no storage: each call is given the
// caller's Reader or Writer (usually a database transaction).
type Log struct {
	key      *Key // signs a checkpoint inside each Append (NewLog)
	origin   string
	verifier note.Verifier
	// appendOnly logs (Signer.Log) append records and hashes only; their Signer signs
	// checkpoints after the commit.
	appendOnly bool
	err        error // why the log cannot be used, from NewVerifyingLog
}

// NewLog returns a log whose Append also signs a checkpoint of the new tree with key, inside
// the caller's transaction, for origin (the checkpoints' first line, conventionally the key
// name).
//
// Deprecated: signing inside the transaction signs whatever tree the store holds and may
// sign a tree whose transaction then rolls back. Use a Signer (NewSigner) and its Log,
// which sign only committed trees that extend the last one signed.
func NewLog(origin string, key *Key) *Log {
	l := &Log{key: key, origin: origin}
	if key == nil {
		l.err = fmt.Errorf("%w: audit log has no key", ErrInvalid)
	} else {
		l.verifier = key.Verifier()
	}
	return l
}

// NewVerifyingLog returns a log that can Verify but not Append, from the published
// verifier key alone. Its origin is the key's name, as the daemon sets it. A bad key makes
// every call fail with ErrInvalid.
func NewVerifyingLog(vkey string) *Log {
	v, _, err := ParseVerifierKey(vkey)
	if err != nil {
		return &Log{err: err}
	}
	return &Log{origin: v.Name(), verifier: v}
}

// hashReader adapts a Reader to tlog.HashReader.
type hashReader struct {
	ctx context.Context
	r   Reader
}

func (h hashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	hs, err := h.r.ReadHashes(h.ctx, indexes)
	if err == nil && len(hs) != len(indexes) {
		err = fmt.Errorf("store returned %d hashes for %d indexes", len(hs), len(indexes))
	}
	return hs, err
}

// overlay reads the hashes being written (from stored index first on) from memory and the
// rest from the store, so Append does not rely on reading its own uncommitted writes.
type overlay struct {
	base   tlog.HashReader
	first  int64
	hashes []tlog.Hash
}

func (o overlay) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var need []int64
	var at []int
	for i, x := range indexes {
		if x >= o.first && x < o.first+int64(len(o.hashes)) {
			out[i] = o.hashes[x-o.first]
			continue
		}
		need = append(need, x)
		at = append(at, i)
	}
	if len(need) > 0 {
		hs, err := o.base.ReadHashes(need)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			out[i] = hs[j]
		}
	}
	return out, nil
}

// Append encodes e canonically (JSON), stores it at the next index with its tree hashes,
// and signs and stores a checkpoint of the new tree. It returns the entry's index.
func (l *Log) Append(ctx context.Context, w Writer, e Entry) (int64, error) {
	if l.err != nil {
		return 0, l.err
	}
	if l.key == nil && !l.appendOnly {
		return 0, fmt.Errorf("%w: audit log opened for verification only", ErrInvalid)
	}
	if !validOrigin(l.origin) {
		return 0, fmt.Errorf("%w: audit log origin must be one line of printable text", ErrInvalid)
	}
	data, err := encodeEntry(e)
	if err != nil {
		return 0, err
	}
	n, err := w.Size(ctx)
	if err != nil {
		return 0, fmt.Errorf("append audit entry: read log size: %w", err)
	}
	hr := hashReader{ctx, w}
	hashes, err := tlog.StoredHashes(n, data, hr)
	if err != nil {
		return 0, fmt.Errorf("append audit entry %d: compute tree hashes: %w", n, err)
	}
	if l.appendOnly {
		if err := w.AppendRecord(ctx, n, data, hashes); err != nil {
			return 0, fmt.Errorf("append audit entry %d: %w", n, err)
		}
		return n, nil
	}
	root, err := tlog.TreeHash(n+1, overlay{base: hr, first: tlog.StoredHashIndex(0, n), hashes: hashes})
	if err != nil {
		return 0, fmt.Errorf("append audit entry %d: compute tree root: %w", n, err)
	}
	msg, err := note.Sign(&note.Note{Text: formatCheckpoint(l.origin, n+1, root)}, l.key.Signer())
	if err != nil {
		return 0, fmt.Errorf("append audit entry %d: sign checkpoint: %w", n, err)
	}
	if err := w.AppendRecord(ctx, n, data, hashes); err != nil {
		return 0, fmt.Errorf("append audit entry %d: %w", n, err)
	}
	if err := w.AddCheckpoint(ctx, n+1, msg); err != nil {
		return 0, fmt.Errorf("append audit entry %d: store checkpoint: %w", n, err)
	}
	return n, nil
}

// verifyBatch is how many records Verify reads at a time; memory is O(verifyBatch).
const verifyBatch = 1024

// verifiedHashes serves hashes that Verify has already checked: those of the current batch
// from memory, older ones from the store (which equal the recomputed ones, having been
// checked). Reading a hash not yet checked is a bug, not a tampered log.
type verifiedHashes struct {
	ctx    context.Context
	r      Reader
	limit  int64 // stored hashes [0, limit) are verified
	recent map[int64]tlog.Hash
}

func (h *verifiedHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var need []int64
	var at []int
	for i, x := range indexes {
		if x < 0 || x >= h.limit {
			return nil, fmt.Errorf("audit: internal error: hash %d read before it was verified", x)
		}
		if v, ok := h.recent[x]; ok {
			out[i] = v
			continue
		}
		need = append(need, x)
		at = append(at, i)
	}
	if len(need) > 0 {
		hs, err := hashReader{h.ctx, h.r}.ReadHashes(need)
		if err != nil {
			return nil, err
		}
		for j, i := range at {
			out[i] = hs[j]
		}
	}
	return out, nil
}

// verification is the state of one Verify run.
type verification struct {
	l        *Log
	hashes   *verifiedHashes
	cps      []Checkpoint
	next     int // next checkpoint to check
	prev     int64
	prevRoot tlog.Hash
	havePrev bool
}

// Verify recomputes the whole tree from the records and checks that every stored hash
// equals the recomputed one, that every checkpoint is validly signed, names this log and
// has the recomputed root at its size, that successive checkpoints are consistent, and that
// the log is not shorter than its latest checkpoint. Records after the latest checkpoint are
// checked against their stored hashes and counted as Pending. A failure is a *VerifyError
// naming the first record index at fault; errors of the store itself are returned wrapped,
// not as ErrTampered.
//
// Verify reads r as one snapshot: give it a read transaction, or a copy of the log fixed at
// one checkpoint, never pages read at different times (a log that grew in between would
// look truncated).
func (l *Log) Verify(ctx context.Context, r Reader) (*Report, error) {
	if l.err != nil {
		return nil, l.err
	}
	n, err := r.Size(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify audit log: read size: %w", err)
	}
	if n < 0 {
		return nil, fmt.Errorf("verify audit log: store reports %d records", n)
	}
	cps, err := r.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify audit log: read checkpoints: %w", err)
	}
	v := &verification{l: l, cps: cps, hashes: &verifiedHashes{ctx: ctx, r: r}}
	if err := v.checkpointsUpTo(0); err != nil {
		return nil, err
	}
	for from := int64(0); from < n; from += verifyBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		to := min(from+verifyBatch, n)
		recs, err := r.ReadRecords(ctx, from, to)
		if err != nil {
			return nil, fmt.Errorf("verify audit log: read records %d..%d: %w", from, to-1, err)
		}
		if int64(len(recs)) > to-from {
			return nil, fmt.Errorf("verify audit log: store returned %d records for %d..%d", len(recs), from, to-1)
		}
		got := from + int64(len(recs))
		lo := tlog.StoredHashIndex(0, from)
		stored, err := readStoredHashes(ctx, r, from, got)
		if err != nil {
			return nil, err
		}
		v.hashes.recent = make(map[int64]tlog.Hash, len(stored))
		for i, data := range recs {
			idx := from + int64(i)
			want, err := tlog.StoredHashes(idx, data, v.hashes)
			if err != nil {
				return nil, fmt.Errorf("verify audit log: record %d: recompute hashes: %w", idx, err)
			}
			first := tlog.StoredHashIndex(0, idx)
			for k, h := range want {
				if stored[first-lo+int64(k)] != h {
					if k == 0 {
						return nil, &VerifyError{idx, "changed, removed or reordered: its hash does not match the hash stored when it was appended"}
					}
					return nil, &VerifyError{idx, fmt.Sprintf("the stored tree hash (level %d) written with this record does not match the records", k)}
				}
				v.hashes.recent[first+int64(k)] = h
			}
			v.hashes.limit = first + int64(len(want))
			if err := v.checkpointsUpTo(idx + 1); err != nil {
				return nil, err
			}
		}
		if got < to {
			return nil, &VerifyError{got, fmt.Sprintf("missing: the store reports %d records but returns none at this index", n)}
		}
	}
	if v.next < len(cps) {
		// Checkpoints beyond the records: the tail was cut off. Make sure the latest one
		// is genuine before calling it truncation.
		latest := cps[len(cps)-1]
		if err := v.open(latest); err != nil {
			return nil, err
		}
		return nil, &VerifyError{n, fmt.Sprintf("missing: the log has %d records but a signed checkpoint covers %d; records from %d on were removed (truncated)", n, latest.Size, n)}
	}
	root := v.prevRoot
	if !v.havePrev {
		root = emptyRoot
	}
	return &Report{Records: n, Checkpoints: int64(len(cps)), Root: root.String(), Size: v.prev, Pending: n - v.prev}, nil
}

// readStoredHashes reads the stored hashes of records [from, to). If the batch cannot be
// read it finds the first record whose hashes cannot, to say where.
func readStoredHashes(ctx context.Context, r Reader, from, to int64) ([]tlog.Hash, error) {
	span := func(a, b int64) []int64 {
		idx := make([]int64, 0, b-a)
		for x := a; x < b; x++ {
			idx = append(idx, x)
		}
		return idx
	}
	hr := hashReader{ctx, r}
	hs, err := hr.ReadHashes(span(tlog.StoredHashIndex(0, from), tlog.StoredHashIndex(0, to)))
	if err == nil {
		return hs, nil
	}
	for i := from; i < to; i++ {
		if _, err := hr.ReadHashes(span(tlog.StoredHashIndex(0, i), tlog.StoredHashIndex(0, i+1))); err != nil {
			return nil, fmt.Errorf("verify audit log: record %d: read its stored hashes: %w", i, err)
		}
	}
	return nil, fmt.Errorf("verify audit log: read stored hashes of records %d..%d: %w", from, to-1, err)
}

// checkpointsUpTo checks every not yet checked checkpoint of size ≤ size. All records
// below size have been checked, so the hashes it reads are verified ones.
func (v *verification) checkpointsUpTo(size int64) error {
	for ; v.next < len(v.cps) && v.cps[v.next].Size <= size; v.next++ {
		if err := v.checkpoint(v.cps[v.next]); err != nil {
			return err
		}
	}
	return nil
}

// open checks a checkpoint's signature, origin and stored size, and returns its root.
func (v *verification) open(cp Checkpoint) error {
	_, err := v.openRoot(cp)
	return err
}

func (v *verification) openRoot(cp Checkpoint) (tlog.Hash, error) {
	at := max(cp.Size-1, 0) // the record the checkpoint was signed with
	origin, size, root, err := OpenCheckpoint(v.l.verifier, cp.Note)
	if err != nil {
		return tlog.Hash{}, &VerifyError{at, fmt.Sprintf("the checkpoint for size %d does not verify: %v", cp.Size, err)}
	}
	if origin != v.l.origin {
		return tlog.Hash{}, &VerifyError{at, fmt.Sprintf("the checkpoint for size %d is for log %.100q, not %.100q", cp.Size, origin, v.l.origin)}
	}
	if size != cp.Size {
		return tlog.Hash{}, &VerifyError{at, fmt.Sprintf("the checkpoint stored for size %d is signed for size %d", cp.Size, size)}
	}
	return root, nil
}

func (v *verification) checkpoint(cp Checkpoint) error {
	at := max(cp.Size-1, 0)
	if cp.Size < 0 || v.havePrev && cp.Size <= v.prev {
		return &VerifyError{at, fmt.Sprintf("checkpoint for size %d is out of order or repeated", cp.Size)}
	}
	root, err := v.openRoot(cp)
	if err != nil {
		return err
	}
	got, err := tlog.TreeHash(cp.Size, v.hashes)
	if err != nil {
		return fmt.Errorf("verify audit log: root of size %d: %w", cp.Size, err)
	}
	if got != root {
		// Every stored hash matched the records, so the records and hashes were rewritten
		// together; the checkpoint before this one still matched, so the change is in
		// [v.prev, cp.Size).
		if cp.Size-v.prev == 1 {
			return &VerifyError{v.prev, fmt.Sprintf("changed, removed or reordered: the tree does not match the checkpoint signed for size %d", cp.Size)}
		}
		return &VerifyError{v.prev, fmt.Sprintf("a record in %d..%d was changed, removed or reordered: the tree does not match the checkpoint signed for size %d", v.prev, cp.Size-1, cp.Size)}
	}
	if v.havePrev && v.prev > 0 {
		p, err := tlog.ProveTree(cp.Size, v.prev, v.hashes)
		if err != nil {
			return fmt.Errorf("verify audit log: consistency proof %d→%d: %w", v.prev, cp.Size, err)
		}
		if err := tlog.CheckTree(p, cp.Size, root, v.prev, v.prevRoot); err != nil {
			return &VerifyError{v.prev, fmt.Sprintf("the checkpoint for size %d is not consistent with the checkpoint for size %d", cp.Size, v.prev)}
		}
	}
	v.prev, v.prevRoot, v.havePrev = cp.Size, root, true
	return nil
}
