package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxNoteSize bounds a checkpoint note read from untrusted input. Ours are about 200 bytes.
const maxNoteSize = 16 << 10

// validOrigin reports whether s can be the first line of a checkpoint: non-empty UTF-8
// with no control characters (which notes forbid) and so no newline.
func validOrigin(s string) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// formatCheckpoint returns the C2SP tlog-checkpoint body: origin, size, base64 root.
func formatCheckpoint(origin string, size int64, root tlog.Hash) string {
	return origin + "\n" + strconv.FormatInt(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// parseCheckpoint parses a checkpoint body. Lines after the root (extensions) are ignored.
func parseCheckpoint(text string) (origin string, size int64, root tlog.Hash, err error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return "", 0, tlog.Hash{}, fmt.Errorf("%w: checkpoint has fewer than three lines", ErrInvalid)
	}
	origin = lines[0]
	if !validOrigin(origin) {
		return "", 0, tlog.Hash{}, fmt.Errorf("%w: checkpoint has no valid origin line", ErrInvalid)
	}
	size, err = strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || lines[1] != strconv.FormatInt(size, 10) {
		return "", 0, tlog.Hash{}, fmt.Errorf("%w: checkpoint tree size is not a canonical decimal number", ErrInvalid)
	}
	h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return "", 0, tlog.Hash{}, fmt.Errorf("%w: checkpoint root is not a base64 SHA-256 hash", ErrInvalid)
	}
	copy(root[:], h)
	return origin, size, root, nil
}

// OpenCheckpoint checks a signed checkpoint note against v and returns what it says: the
// log's origin, its tree size and root hash. A note not validly signed by v's key is
// ErrTampered; a malformed one is ErrInvalid.
func OpenCheckpoint(v note.Verifier, msg []byte) (origin string, size int64, root tlog.Hash, err error) {
	if v == nil {
		return "", 0, tlog.Hash{}, fmt.Errorf("%w: no verifier key", ErrInvalid)
	}
	if len(msg) > maxNoteSize {
		return "", 0, tlog.Hash{}, fmt.Errorf("%w: checkpoint is %d bytes, more than %d", ErrInvalid, len(msg), maxNoteSize)
	}
	// A Keyring is its own list: the current key and the retired ones, each within its term.
	vs, ok := v.(note.Verifiers)
	if !ok {
		vs = note.VerifierList(v)
	}
	n, err := note.Open(msg, vs)
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return "", 0, tlog.Hash{}, fmt.Errorf("%w: checkpoint is not signed by key %s", ErrTampered, v.Name())
		case errors.As(err, &invalid):
			return "", 0, tlog.Hash{}, fmt.Errorf("%w: checkpoint signature by key %s is invalid", ErrTampered, v.Name())
		}
		return "", 0, tlog.Hash{}, fmt.Errorf("%w: checkpoint is not a signed note: %v", ErrInvalid, err)
	}
	return parseCheckpoint(n.Text)
}

// tree is a checkpoint that has been opened: what its signed text says, and the note.
type tree struct {
	origin string
	size   int64
	root   tlog.Hash
	note   []byte
}

func openTree(v note.Verifier, msg []byte) (tree, error) {
	origin, size, root, err := OpenCheckpoint(v, msg)
	if err != nil {
		return tree{}, err
	}
	return tree{origin: origin, size: size, root: root, note: msg}, nil
}

// emptyRoot is the root hash of the empty tree (RFC 6962: the hash of the empty string).
var emptyRoot, _ = tlog.TreeHash(0, nil)

// checkExtends checks that next's tree extends prev's, given a tree proof from prev.size to
// next.size, and names what is wrong otherwise: a smaller tree (truncated, or an older copy
// restored), two different trees of one size (a fork), or a proof that does not verify
// (history rewritten). All three are ErrTampered.
func checkExtends(prev, next tree, proof []tlog.Hash) error {
	if prev.origin != next.origin {
		return fmt.Errorf("%w: the checkpoints are of different logs (%.100q and %.100q)", ErrTampered, prev.origin, next.origin)
	}
	switch {
	case next.size < prev.size:
		return fmt.Errorf("%w: the log's tree of %d entries is smaller than the checkpoint of %d entries signed earlier: entries were removed (truncated) or an older copy of the log was restored", ErrTampered, next.size, prev.size)
	case next.size == prev.size && next.root != prev.root:
		return fmt.Errorf("%w: two different trees of %d entries (roots %s and %s): the log was forked, or entries it covered were rewritten", ErrTampered, next.size, prev.root, next.root)
	case prev.size == 0:
		if prev.root != emptyRoot {
			return fmt.Errorf("%w: the checkpoint of the empty log has a root other than the empty tree's", ErrTampered)
		}
		return nil
	}
	if len(proof) > 2*maxProofHashes {
		return fmt.Errorf("%w: consistency proof has %d hashes, more than %d", ErrInvalid, len(proof), 2*maxProofHashes)
	}
	if err := tlog.CheckTree(proof, next.size, next.root, prev.size, prev.root); err != nil {
		return fmt.Errorf("%w: the log's tree of %d entries does not extend the checkpoint of %d entries signed earlier: entries it covered were changed (history rewritten, or a fork)", ErrTampered, next.size, prev.size)
	}
	return nil
}

// ProveFunc returns a tree proof (RFC 6962 consistency proof) that the log's tree of size
// to extends its tree of size from; Signer, Archive and Witness ask one when they have to
// check a new checkpoint against an older one.
type ProveFunc func(ctx context.Context, from, to int64) ([]tlog.Hash, error)
