package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/durable"
)

// Signer signs the checkpoints of one log, and never a tree that does not extend the last
// one it signed. It keeps that last checkpoint in a state file of its own, outside the
// store, written durably before the signature is handed out; the store's writer can then
// rewrite, truncate, fork or roll back the stored log, but not make the signer sign it.
//
// The signer vouches for the order and the immutability of what was committed, not for who
// wrote a record: it signs the records it finds after the last checkpoint once it has
// recomputed their hashes from their data.
//
// A failure to write the state file is latched: the signer refuses to sign again until it
// is reopened, because after a failed fsync it cannot know what the file holds.
//
// The state file holds the signed checkpoints one after another: each signing appends its
// own (one write and one fsync), and once the file has grown past stateCompactAt the next
// signing rewrites it with its checkpoint alone (a new file renamed into place: two fsyncs).
// The last checkpoint is the state. What a crash at each point loses:
//   - during an append: the checkpoint being appended may be torn (cut short): the signer
//     reopens at the one before it, whose signature is the last one handed out (a signature
//     goes out only after its fsync), and its next signing rewrites the file whole;
//   - during a rewrite: the file is the old one or the new one, whole.
//
// A last checkpoint that is whole but does not verify is not a torn write, and is refused.
type Signer struct {
	origin   string
	key      *Key
	verifier note.Verifier // the key's, or a keyring with it as its current key (keyring.go)
	state    string
	// stateSize is the state file's length; 0: the next signing rewrites it whole (none
	// yet, or it ends in a torn checkpoint).
	stateSize int

	mu      sync.Mutex
	last    *tree // nil until the first checkpoint is signed
	checked bool  // Check or Adopt passed
	failed  error
}

// NewSigner returns the signer of log origin with key, remembering its last checkpoint in
// the file statePath. A missing state file means the signer has never signed; a state file
// that does not hold a checkpoint of this log signed by this key is refused.
func NewSigner(origin string, key *Key, statePath string) (*Signer, error) {
	return newSigner(origin, key, nil, statePath)
}

// NewSignerKeyring is NewSigner after a key rotation: what it reads back (its state, the
// store's checkpoints) may be signed by a retired key of ring, whose current key must be key.
func NewSignerKeyring(origin string, key *Key, ring *Keyring, statePath string) (*Signer, error) {
	if ring != nil && key != nil && ring.Current() != key.VerifierKey() {
		return nil, fmt.Errorf("%w: the keyring's current key is not the signing key", ErrInvalid)
	}
	return newSigner(origin, key, ring, statePath)
}

func newSigner(origin string, key *Key, ring *Keyring, statePath string) (*Signer, error) {
	if key == nil {
		return nil, fmt.Errorf("%w: audit signer has no key", ErrInvalid)
	}
	if !validOrigin(origin) {
		return nil, fmt.Errorf("%w: audit log origin must be one line of printable text", ErrInvalid)
	}
	if statePath == "" {
		return nil, fmt.Errorf("%w: audit signer has no state file", ErrInvalid)
	}
	s := &Signer{origin: origin, key: key, verifier: key.Verifier(), state: statePath}
	if ring != nil {
		s.verifier = ring
	}
	b, err := readBounded(statePath, maxStateSize)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read audit signer state: %v", ErrUnavailable, err)
	}
	notes, torn := splitState(b)
	if !torn {
		s.stateSize = len(b)
	}
	var t tree
	for _, n := range notes {
		if t, err = openTree(s.verifier, n); err != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("audit signer state %s does not hold a checkpoint signed by key %s: %w; restore the state file from where you keep its copies, or see \"Recovering the audit log\" in the README", statePath, key.Name(), err)
	}
	if t.origin != origin {
		return nil, fmt.Errorf("%w: audit signer state %s holds a checkpoint of log %.100q, not %.100q", ErrInvalid, statePath, t.origin, origin)
	}
	s.last = &t
	return s, nil
}

// readBounded reads at most limit bytes of a file; a longer file is an error.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is more than %d bytes", path, limit)
	}
	return b, nil
}

// Log returns the log the signer's checkpoints are for, to append records with: its Append
// stores a record and its hashes and signs nothing; call Sign (or a Checkpointer) after the
// transaction commits.
func (s *Signer) Log() *Log {
	return &Log{origin: s.origin, verifier: s.verifier, appendOnly: true}
}

// Verifier verifies the signer's checkpoints.
func (s *Signer) Verifier() note.Verifier { return s.verifier }

// Latest returns the last checkpoint the signer signed; ok is false before the first.
func (s *Signer) Latest() (cp Checkpoint, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return Checkpoint{}, false
	}
	return Checkpoint{Size: s.last.size, Note: bytes.Clone(s.last.note)}, true
}

// Err returns the latched failure that stops the signer, or nil.
func (s *Signer) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Sign signs a checkpoint of the tree r holds, if that tree extends the last checkpoint the
// signer signed, and records it in the state file before returning it. r must be one read
// snapshot of committed data. An empty log returns nil. A tree that does not extend the last
// checkpoint, or a new record whose stored hashes do not match its data, is ErrTampered; a
// state file that cannot be written is ErrUnavailable and stops the signer.
func (s *Signer) Sign(ctx context.Context, r Reader) (*Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return nil, s.failed
	}
	if !s.checked {
		// Without Check a signer without state would sign any log it is shown.
		return nil, fmt.Errorf("%w: audit signer: Check (or Adopt) the store's log before signing", ErrInvalid)
	}
	n, root, err := s.extend(ctx, r)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	if s.last != nil && n == s.last.size {
		return &Checkpoint{Size: n, Note: bytes.Clone(s.last.note)}, nil
	}
	msg, err := note.Sign(&note.Note{Text: formatCheckpoint(s.origin, n, root)}, s.key.Signer())
	if err != nil {
		return nil, fmt.Errorf("sign audit checkpoint %d: %w", n, err)
	}
	// The state goes to disk before the signature goes anywhere: a signer that crashes
	// after this still knows what it signed.
	if err := s.record(msg); err != nil {
		s.failed = fmt.Errorf("%w: the audit signer could not record checkpoint %d in its state file and stopped signing (the daemon must be restarted once the disk is fixed): %v", ErrUnavailable, n, err)
		return nil, s.failed
	}
	s.last = &tree{origin: s.origin, size: n, root: root, note: msg}
	return &Checkpoint{Size: n, Note: bytes.Clone(msg)}, nil
}

// extend computes the tree r holds and checks that it extends the last signed checkpoint:
// every record after it is re-hashed from its data and compared with its stored hashes,
// and a consistency proof from the last checkpoint to the new tree, computed from the
// store, must verify against the root the signer itself remembers.
func (s *Signer) extend(ctx context.Context, r Reader) (int64, tlog.Hash, error) {
	n, err := r.Size(ctx)
	if err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("audit signer: read log size: %w", err)
	}
	var old int64
	if s.last != nil {
		old = s.last.size
	}
	if n < old {
		return 0, tlog.Hash{}, fmt.Errorf("%w: the store's audit log has %d entries, but the signer already signed a checkpoint of %d: entries %d..%d were removed (truncated), or an older copy of the store was restored, or its write-ahead log was lost", ErrTampered, n, old, n, old-1)
	}
	if err := checkNewRecords(ctx, r, old, n); err != nil {
		return 0, tlog.Hash{}, err
	}
	if n == 0 {
		return 0, emptyRoot, nil
	}
	hr := hashReader{ctx, r}
	root, err := tlog.TreeHash(n, hr)
	if err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("audit signer: root of %d entries: %w", n, err)
	}
	if s.last == nil {
		return n, root, nil
	}
	proof, err := tlog.ProveTree(n, old, hr)
	if err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("%w: the store cannot prove that its tree of %d entries extends the signed checkpoint of %d: %v", ErrTampered, n, old, err)
	}
	if err := checkExtends(*s.last, tree{origin: s.origin, size: n, root: root}, proof); err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("the store's audit log is not the one the signer signed: %w", err)
	}
	return n, root, nil
}

// checkNewRecords re-hashes records [from, to) from their data and compares the result with
// the hashes stored with them, batch by batch; hashes before from are read from the store
// (the consistency proof vouches for them).
func checkNewRecords(ctx context.Context, r Reader, from, to int64) error {
	hr := hashReader{ctx, r}
	for lo := from; lo < to; lo += verifyBatch {
		hi := min(lo+verifyBatch, to)
		recs, err := r.ReadRecords(ctx, lo, hi)
		if err != nil {
			return fmt.Errorf("audit signer: read records %d..%d: %w", lo, hi-1, err)
		}
		if int64(len(recs)) != hi-lo {
			return fmt.Errorf("%w: the store's audit log has %d entries but returns %d of entries %d..%d: a record was deleted", ErrTampered, to, len(recs), lo, hi-1)
		}
		stored, err := readStoredHashes(ctx, r, lo, hi)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrTampered, err)
		}
		first := tlog.StoredHashIndex(0, lo)
		mem := overlay{base: hr, first: first}
		for i, data := range recs {
			idx := lo + int64(i)
			hs, err := tlog.StoredHashes(idx, data, mem)
			if err != nil {
				return fmt.Errorf("audit signer: record %d: %w", idx, err)
			}
			at := tlog.StoredHashIndex(0, idx) - first
			for k, h := range hs {
				if stored[at+int64(k)] != h {
					return fmt.Errorf("%w: audit record %d does not match the hashes stored when it was appended: it was changed after it was written", ErrTampered, idx)
				}
			}
			mem.hashes = append(mem.hashes, hs...)
		}
	}
	return nil
}

// Check is the start-up check: that the store's log extends the last checkpoint the signer
// signed (no truncation, no restored older copy, no rewritten or forked history), that the
// records after it match their stored hashes, and that no checkpoint in the store is newer
// than the signer's (which would have been signed with the key by something else). It
// returns an error that says what is wrong and how to recover.
func (s *Signer) Check(ctx context.Context, r Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		n, err := r.Size(ctx)
		if err != nil {
			return fmt.Errorf("audit start-up check: read log size: %w", err)
		}
		if n == 0 {
			s.checked = true
			return nil
		}
		return fmt.Errorf("%w: there is no audit signer state at %s, but the store's audit log has %d entries. If this is the first start since upgrading to a Veil with a separate signer state, start once with the option that adopts the log (it verifies the whole log and records its latest checkpoint). Otherwise the state file was moved or deleted: put it back; starting without it would let a truncated or restored log pass", ErrTampered, s.state, n)
	}
	if _, _, err := s.extend(ctx, r); err != nil {
		if !errors.Is(err, ErrTampered) {
			return fmt.Errorf("audit start-up check: %w", err)
		}
		return fmt.Errorf("audit start-up check failed: %w.\n"+
			"The signer's state file %s holds the last checkpoint it signed (%d entries); the store does not extend it.\n"+
			"To recover: stop Veil and keep the damaged store and the state file as evidence; restore the newest backup of the store "+
			"(with its -wal file, if the backup has one) that holds at least %d audit entries, and start again: this check runs on it. "+
			"If no such backup exists, the signed entries are lost: see \"Recovering the audit log\" in the README "+
			"(the loss stays visible to every kept checkpoint and witness)", err, s.state, s.last.size, s.last.size)
	}
	cps, err := r.Checkpoints(ctx)
	if err != nil {
		return fmt.Errorf("audit start-up check: read checkpoints: %w", err)
	}
	if len(cps) > 0 {
		if latest := cps[len(cps)-1]; latest.Size > s.last.size {
			if _, err := openTree(s.verifier, latest.Note); err != nil {
				return fmt.Errorf("audit start-up check failed: the store holds a checkpoint of size %d that the platform key did not sign (%v): it was forged; restore the store from a backup", latest.Size, err)
			}
			return fmt.Errorf("%w: the store holds a checkpoint of size %d signed with the platform key, but the signer's state %s is at %d: something else signs with this key (an older Veil signing inside transactions, or a copy of the key). Find it and stop it; if it was an older Veil, move the state file aside and start once with the option that adopts the log", ErrTampered, latest.Size, s.state, s.last.size)
		}
	}
	s.checked = true
	return nil
}

// Adopt makes a signer without state take over an existing log: it verifies the whole log
// r holds and records its latest checkpoint as the last one signed. It is the one-time step
// after upgrading from a Veil that signed inside transactions; it refuses a log that does
// not verify, and a signer that already has state.
func (s *Signer) Adopt(ctx context.Context, r Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil {
		return fmt.Errorf("%w: the audit signer already has state (%s, checkpoint of %d entries); adopting is only for a signer without one", ErrInvalid, s.state, s.last.size)
	}
	l := &Log{origin: s.origin, verifier: s.verifier}
	if _, err := l.Verify(ctx, r); err != nil {
		return fmt.Errorf("adopt audit log: it does not verify, so the signer will not vouch for it: %w", err)
	}
	cps, err := r.Checkpoints(ctx)
	if err != nil {
		return fmt.Errorf("adopt audit log: read checkpoints: %w", err)
	}
	if len(cps) == 0 {
		s.checked = true
		return nil
	}
	latest := cps[len(cps)-1]
	t, err := openTree(s.verifier, latest.Note)
	if err != nil {
		return fmt.Errorf("adopt audit log: latest checkpoint: %w", err)
	}
	if err := durable.WriteFile(s.state, latest.Note, 0o644); err != nil {
		return fmt.Errorf("%w: adopt audit log: write signer state: %v", ErrUnavailable, err)
	}
	s.stateSize = len(latest.Note)
	s.last, s.checked = &t, true
	return nil
}

// stateCompactAt is the state file's length past which the next signing rewrites it with
// its checkpoint alone; maxStateSize bounds what is read back.
const (
	stateCompactAt = 32 << 10
	maxStateSize   = stateCompactAt + maxNoteSize
)

// record writes msg, just signed, to the state file: appended, or the file rewritten with
// it alone (the first, after a torn checkpoint, or past stateCompactAt).
func (s *Signer) record(msg []byte) error {
	if s.stateSize > 0 && s.stateSize+len(msg) <= stateCompactAt {
		if err := durable.AppendFile(s.state, msg, 0o644); err != nil {
			s.stateSize = 0
			return err
		}
		s.stateSize += len(msg)
		return nil
	}
	if err := durable.WriteFile(s.state, msg, 0o644); err != nil {
		return err
	}
	s.stateSize = len(msg)
	return nil
}

// LatestInState returns the last checkpoint of a signer's state file as read (b), for
// OpenCheckpoint: the file holds signed checkpoints one after another, its last one
// possibly torn by a crash during its append (then the one before is the state).
func LatestInState(b []byte) []byte {
	notes, _ := splitState(b)
	return notes[len(notes)-1]
}

// splitState splits a state file into its whole signed notes, and says whether a torn one
// follows them. A note is its text, a blank line and signature lines ("— name sig"); a torn
// append leaves a prefix of one, which lacks the blank line, a signature line or the final
// newline. A file with no whole note is returned whole, for openTree to refuse.
func splitState(b []byte) (notes [][]byte, torn bool) {
	rest := b
	for len(rest) > 0 {
		i := bytes.Index(rest, []byte("\n\n"))
		if i < 0 {
			break
		}
		j, sigs := i+2, 0
		for j < len(rest) && bytes.HasPrefix(rest[j:], []byte("\u2014 ")) {
			k := bytes.IndexByte(rest[j:], '\n')
			if k < 0 {
				break
			}
			j += k + 1
			sigs++
		}
		if sigs == 0 || (j < len(rest) && bytes.HasPrefix(rest[j:], []byte("\u2014 "))) {
			break // no signature yet, or one cut short
		}
		notes, rest = append(notes, rest[:j]), rest[j:]
	}
	if notes == nil {
		return [][]byte{b}, false
	}
	return notes, len(rest) > 0
}
