package sqlite

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/veil-dp/veil/durable"
	"github.com/veil-dp/veil/store"
)

// The shutdown marker is a small text file:
//
//	veil-store-marker v1
//	state open            (the store is open, or Veil stopped without closing it)
//
// or, after a clean Close,
//
//	veil-store-marker v1
//	state clean
//	bytes <size of the database file>
//	sha256 <hex digest of the database file>
//
// It lives outside the database on purpose: a marker inside would be lost with the very
// write-ahead log whose loss it must reveal.
const markerHeader = "veil-store-marker v1"

const (
	stateOpen  = "open"
	stateClean = "clean"
)

type marker struct {
	state  string
	bytes  int64
	sha256 string
}

func (m marker) encode() []byte {
	s := markerHeader + "\nstate " + m.state + "\n"
	if m.state == stateClean {
		s += "bytes " + strconv.FormatInt(m.bytes, 10) + "\nsha256 " + m.sha256 + "\n"
	}
	return []byte(s)
}

// readMarker reads the marker; ok is false if there is none.
func readMarker(path string) (m marker, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return marker{}, false, nil
	}
	if err != nil {
		return marker{}, false, fmt.Errorf("read the store's shutdown marker: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return marker{}, false, fmt.Errorf("read the store's shutdown marker: %w", err)
	}
	bad := fmt.Errorf("%w: the store's shutdown marker %s is damaged; if you know the store was shut down cleanly and not changed since, start once with the option that adopts the store as found", store.ErrDamaged, path)
	lines := strings.Split(string(b), "\n")
	if len(lines) < 3 || lines[0] != markerHeader {
		return marker{}, false, bad
	}
	m.state, _ = strings.CutPrefix(lines[1], "state ")
	switch {
	case m.state == stateOpen && len(lines) == 3 && lines[2] == "":
	case m.state == stateClean && len(lines) == 5 && lines[4] == "":
		n, ok1 := strings.CutPrefix(lines[2], "bytes ")
		h, ok2 := strings.CutPrefix(lines[3], "sha256 ")
		var perr error
		m.bytes, perr = strconv.ParseInt(n, 10, 64)
		if !ok1 || !ok2 || perr != nil || len(h) != 64 {
			return marker{}, false, bad
		}
		m.sha256 = h
	default:
		return marker{}, false, bad
	}
	return m, true, nil
}

func writeMarker(path string, m marker) error {
	return durable.WriteFile(path, m.encode(), 0o600)
}

// digestFile returns a clean marker for the file at path.
func digestFile(path string) (marker, error) {
	f, err := os.Open(path)
	if err != nil {
		return marker{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return marker{}, fmt.Errorf("digest of the store file: %w", err)
	}
	return marker{state: stateClean, bytes: n, sha256: hex.EncodeToString(h.Sum(nil))}, nil
}

// checkFiles compares the store's files with its shutdown marker before SQLite touches them.
func checkFiles(o Options) error {
	m, haveMarker, err := readMarker(o.Marker)
	if err != nil && !o.Adopt {
		return err
	}
	fi, err := os.Stat(o.Path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if haveMarker {
			return fmt.Errorf("%w: the store file %s is missing, but its shutdown marker %s says a store was there: it was moved or deleted. Put it back (with its -wal file, if there is one) or restore it from a backup; to start over with an empty store, remove the marker and run veil init", store.ErrDamaged, o.Path, o.Marker)
		}
		if !o.Create {
			return fmt.Errorf("%w: there is no store at %s: run veil init, or restore the store from a backup", store.ErrDamaged, o.Path)
		}
		return nil
	case err != nil:
		return fmt.Errorf("open store: %w", err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%w: the store %s is not a regular file", store.ErrDamaged, o.Path)
	case o.Adopt:
		return nil
	case !haveMarker:
		return fmt.Errorf("%w: the store %s has no shutdown marker (%s), so it cannot be told apart from a store that was replaced or had its write-ahead log removed. If it was created by a Veil without markers, or you restored it on purpose, check it (veil audit verify) and start once with the option that adopts the store as found", store.ErrDamaged, o.Path, o.Marker)
	}
	wal, walErr := os.Stat(o.Path + "-wal")
	walPresent := walErr == nil
	switch m.state {
	case stateOpen:
		// Not shut down cleanly: committed transactions may live only in the WAL.
		if !walPresent {
			return fmt.Errorf("%w: the store %s was not shut down cleanly and its write-ahead log %s-wal is missing: the changes committed since the last checkpoint into the database file are lost, and the store would open as an older copy of itself. Put the -wal file back if it was moved; otherwise restore the store from a backup", store.ErrDamaged, o.Path, o.Path)
		}
	case stateClean:
		if walPresent && wal.Size() > 0 {
			return fmt.Errorf("%w: the store %s has a write-ahead log with changes that appeared after its clean shutdown: something wrote to it while Veil was stopped (or still had it open when Veil stopped). Restore the store from a backup, or if the change was yours, start once with the option that adopts the store as found", store.ErrDamaged, o.Path)
		}
		got, err := digestFile(o.Path)
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		if got.bytes != m.bytes || got.sha256 != m.sha256 {
			return fmt.Errorf("%w: the store file %s is not the file Veil shut down (%d bytes, sha256 %.16s…, now %d bytes, sha256 %.16s…): it was changed, corrupted, or replaced by another copy such as an older backup. Restore the file that was shut down, or if you replaced it on purpose, start once with the option that adopts the store as found",
				store.ErrDamaged, o.Path, m.bytes, m.sha256, got.bytes, got.sha256)
		}
	}
	return nil
}

// CheckFiles runs the start-up checks that need no database connection, and writes
// nothing: that the store file is the one last shut down (its shutdown marker's digest)
// and that a store not shut down cleanly still has its write-ahead log. veil doctor runs it
// beside the daemon's own start. A failure is store.ErrDamaged with what to do.
func CheckFiles(o Options) error {
	if o.Marker == "" {
		o.Marker = o.Path + ".shutdown"
	}
	return checkFiles(o)
}
