package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/durable"
)

// Archive is a place outside the box's reach where the daemon appends every checkpoint it
// signs: a file the operator made append-only (chattr +a) or owned by another user, or a
// directory of a second machine mounted here. It never rewrites what it holds, and it
// refuses to append a checkpoint that does not extend the last one there, so a store that
// was truncated, rolled back or forked cannot get a checkpoint past it.
//
// A file archive is the checkpoints' signed notes one after another, each exactly as
// signed (standard C2SP tlog-checkpoint notes; `cat` shows them). A directory archive holds
// that file as "checkpoints" and the latest note alone as "checkpoint", replaced atomically,
// for tools that read one checkpoint.
type Archive struct {
	path   string // the append-only file
	latest string // the latest-checkpoint file of a directory archive, or ""
	v      note.Verifier
	origin string

	mu    sync.Mutex
	seen  int64 // the file's size when last read or appended to; -1 before
	last  *tree // the file's last checkpoint, nil if none
	label string
}

// archiveTail is how much of the end of an archive file is read to find its last
// checkpoint: several notes of at most maxNoteSize.
const archiveTail = 4 * maxNoteSize

// OpenArchive opens the archive at path (an existing directory, or a file whose directory
// exists) for the checkpoints of log origin, verified with v. It reads the last checkpoint
// there, if any, and refuses an archive whose end is not a checkpoint of this log.
func OpenArchive(path, origin string, v note.Verifier) (*Archive, error) {
	a := &Archive{path: path, v: v, origin: origin, seen: -1, label: path}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		a.path, a.latest = filepath.Join(path, "checkpoints"), filepath.Join(path, "checkpoint")
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: checkpoint archive %s: %v", ErrUnavailable, path, err)
	} else if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("%w: checkpoint archive %s: %v", ErrUnavailable, path, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.read(); err != nil {
		return nil, err
	}
	return a, nil
}

// Path is the archive's location as configured.
func (a *Archive) Path() string { return a.label }

// Last returns the last checkpoint in the archive; ok is false for an empty archive.
func (a *Archive) Last() (cp Checkpoint, ok bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, err := a.read()
	if err != nil || t == nil {
		return Checkpoint{}, false, err
	}
	return Checkpoint{Size: t.size, Note: bytes.Clone(t.note)}, true, nil
}

// read returns the archive's last checkpoint, re-reading the file's tail only if its size
// changed since this process last saw it.
func (a *Archive) read() (*tree, error) {
	f, err := os.Open(a.path)
	if errors.Is(err, os.ErrNotExist) {
		if a.seen > 0 {
			// An unmounted share looks the same as a deleted file. Either way the file is
			// not recreated: a fresh archive would accept any log.
			return nil, fmt.Errorf("%w: checkpoint archive %s: the file that held checkpoints is gone (a mount that went away, or it was deleted); it is not recreated: bring it back, or remove this archive from the configuration and restart", ErrUnavailable, a.label)
		}
		a.seen, a.last = 0, nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint archive %s: %v", ErrUnavailable, a.label, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: checkpoint archive %s: %v", ErrUnavailable, a.label, err)
	}
	size := fi.Size()
	if size == a.seen {
		return a.last, nil
	}
	if a.seen > 0 && size < a.seen {
		return nil, fmt.Errorf("%w: checkpoint archive %s shrank from %d to %d bytes: it was truncated or replaced", ErrTampered, a.label, a.seen, size)
	}
	off := max(0, size-archiveTail)
	buf := make([]byte, size-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%w: checkpoint archive %s: %v", ErrUnavailable, a.label, err)
	}
	notes, torn := splitNotes(buf, off == 0)
	if torn {
		return nil, fmt.Errorf("%w: checkpoint archive %s ends in an incomplete checkpoint (an append was interrupted, or something else wrote there): check its end by hand, and cut the incomplete tail after the last complete checkpoint", ErrTampered, a.label)
	}
	if len(notes) == 0 {
		if size > 0 {
			return nil, fmt.Errorf("%w: checkpoint archive %s holds no checkpoint in its last %d bytes", ErrTampered, a.label, len(buf))
		}
		a.seen, a.last = 0, nil
		return nil, nil
	}
	t, err := openTree(a.v, notes[len(notes)-1])
	if err != nil {
		return nil, fmt.Errorf("checkpoint archive %s: its last checkpoint is not one of this log's: %w", a.label, err)
	}
	if t.origin != a.origin {
		return nil, fmt.Errorf("%w: checkpoint archive %s holds checkpoints of log %.100q, not %.100q", ErrTampered, a.label, t.origin, a.origin)
	}
	a.seen, a.last = size, &t
	return a.last, nil
}

// Append appends cp to the archive if it extends the archive's last checkpoint (prove gives
// the consistency proof from that one's size); a checkpoint the archive already holds is not
// appended again. A checkpoint that does not extend the last one is ErrTampered and is not
// written.
func (a *Archive) Append(ctx context.Context, cp Checkpoint, prove ProveFunc) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	next, err := openTree(a.v, cp.Note)
	if err != nil {
		return fmt.Errorf("checkpoint archive %s: %w", a.label, err)
	}
	last, err := a.read()
	if err != nil {
		return err
	}
	if last != nil {
		if last.size == next.size && last.root == next.root {
			return nil
		}
		var proof []tlog.Hash
		if last.size < next.size {
			if proof, err = prove(ctx, last.size, next.size); err != nil {
				return fmt.Errorf("checkpoint archive %s: prove that checkpoint %d extends its last one (%d): %w", a.label, next.size, last.size, err)
			}
		}
		if err := checkExtends(*last, next, proof); err != nil {
			return fmt.Errorf("checkpoint archive %s refuses checkpoint %d: %w", a.label, next.size, err)
		}
	}
	if err := durable.AppendFile(a.path, next.note, 0o644); err != nil {
		a.seen = -1 // a torn append is found by the next read
		return fmt.Errorf("%w: checkpoint archive %s: %v", ErrUnavailable, a.label, err)
	}
	if a.seen < 0 {
		a.seen = 0
	}
	a.seen += int64(len(next.note))
	a.last = &next
	if a.latest != "" {
		if err := durable.WriteFile(a.latest, next.note, 0o644); err != nil {
			return fmt.Errorf("%w: checkpoint archive %s: %v", ErrUnavailable, a.label, err)
		}
	}
	return nil
}

// splitNotes splits a run of signed notes (each: text lines, a blank line, one or more "— "
// signature lines) into notes. If atStart is false, data begins somewhere inside the file and
// everything before the first note start found is skipped. torn reports an incomplete last
// note.
func splitNotes(data []byte, atStart bool) (notes [][]byte, torn bool) {
	sig := []byte("— ")
	var lines [][]byte // each with its newline, except perhaps the last
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, data)
			break
		}
		lines = append(lines, data[:i+1])
		data = data[i+1:]
	}
	isSig := func(l []byte) bool { return bytes.HasPrefix(l, sig) }
	isBlank := func(l []byte) bool { return len(l) == 1 && l[0] == '\n' }
	i := 0
	if !atStart {
		// A note starts on a text line after a signature line.
		for i = 1; i < len(lines); i++ {
			if isSig(lines[i-1]) && !isSig(lines[i]) {
				break
			}
		}
	}
	for i < len(lines) {
		start := i
		for i < len(lines) && !isBlank(lines[i]) && !isSig(lines[i]) {
			i++
		}
		if i == start || i == len(lines) || !isBlank(lines[i]) {
			return notes, true
		}
		i++ // the blank line
		sigs := i
		for i < len(lines) && isSig(lines[i]) {
			i++
		}
		if i == sigs || lines[i-1][len(lines[i-1])-1] != '\n' {
			return notes, true
		}
		notes = append(notes, bytes.Join(lines[start:i], nil))
	}
	return notes, false
}
