package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// memStorage is a Storage over one memStore, for checkpointer tests.
type memStorage struct {
	m   *memStore
	err error // returned by UpdateLog when set
}

func (s *memStorage) ViewLog(_ context.Context, fn func(Reader) error) error { return fn(s.m) }
func (s *memStorage) UpdateLog(_ context.Context, fn func(Writer) error) error {
	if s.err != nil {
		return s.err
	}
	return fn(s.m)
}

func proverOf(m *memStore) ProveFunc {
	return func(ctx context.Context, from, to int64) ([]tlog.Hash, error) {
		return tlog.ProveTree(to, from, hashReader{ctx, m})
	}
}

func TestArchive(t *testing.T) {
	ctx := context.Background()
	k := testKey(t, "veil.test", 1)
	_, _, m := newTestLog(t, 20)
	for _, kind := range []string{"file", "dir"} {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "checkpoints.log")
			if kind == "dir" {
				path = t.TempDir()
			}
			a, err := OpenArchive(path, "veil.test", k.Verifier())
			if err != nil {
				t.Fatal(err)
			}
			if _, ok, err := a.Last(); ok || err != nil {
				t.Fatalf("empty archive: %v %v", ok, err)
			}
			for _, i := range []int{2, 3, 3, 9, 19} {
				if err := a.Append(ctx, m.cps[i], proverOf(m)); err != nil {
					t.Fatalf("append checkpoint %d: %v", i+1, err)
				}
			}
			file := path
			if kind == "dir" {
				file = filepath.Join(path, "checkpoints")
				latest, _ := os.ReadFile(filepath.Join(path, "checkpoint"))
				if !bytes.Equal(latest, m.cps[19].Note) {
					t.Errorf("latest checkpoint file holds %q", latest)
				}
			}
			b, _ := os.ReadFile(file)
			want := bytes.Join([][]byte{m.cps[2].Note, m.cps[3].Note, m.cps[9].Note, m.cps[19].Note}, nil)
			if !bytes.Equal(b, want) {
				t.Errorf("archive holds\n%s\nwant\n%s", b, want)
			}
			// Each note in it opens with standard note tooling.
			notes, torn := splitNotes(b, true)
			if torn || len(notes) != 4 {
				t.Fatalf("split: %d notes, torn %v", len(notes), torn)
			}
			for _, n := range notes {
				if _, err := note.Open(n, note.VerifierList(k.Verifier())); err != nil {
					t.Errorf("archived note does not open: %v", err)
				}
			}
			// Reopened, it knows its last checkpoint and refuses what does not extend it.
			a2, err := OpenArchive(path, "veil.test", k.Verifier())
			if err != nil {
				t.Fatal(err)
			}
			if cp, ok, _ := a2.Last(); !ok || cp.Size != 20 {
				t.Fatalf("reopened archive's last: %d", cp.Size)
			}
			if err := a2.Append(ctx, m.cps[10], proverOf(m)); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "smaller") {
				t.Errorf("append an older checkpoint: %v", err)
			}
			fork := m.clone()
			fork.records[19][20] ^= 1
			fork.rehash(t)
			forged := sign(t, k, formatCheckpoint("veil.test", 20, mustRoot(t, fork, 20)))
			if err := a2.Append(ctx, Checkpoint{Size: 20, Note: forged}, proverOf(fork)); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "forked") {
				t.Errorf("append a fork: %v", err)
			}
			appendUnsigned(t, fork, testEntry(77))
			longer := sign(t, k, formatCheckpoint("veil.test", 21, mustRoot(t, fork, 21)))
			if err := a2.Append(ctx, Checkpoint{Size: 21, Note: longer}, proverOf(fork)); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "does not extend") {
				t.Errorf("append a rewritten history: %v", err)
			}
			if err := a2.Append(ctx, Checkpoint{Size: 5, Note: sign(t, testKey(t, "veil.test", 9), "veil.test\n5\n"+mustRoot(t, m, 5).String()+"\n")}, proverOf(m)); !errors.Is(err, ErrTampered) {
				t.Errorf("append a checkpoint of another key: %v", err)
			}
			if b2, _ := os.ReadFile(file); !bytes.Equal(b2, want) {
				t.Error("a refused checkpoint was written")
			}
		})
	}
}

func mustRoot(t *testing.T, m *memStore, n int64) tlog.Hash {
	t.Helper()
	h, err := tlog.TreeHash(n, hashReader{context.Background(), m})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestArchiveRefusesDamage(t *testing.T) {
	ctx := context.Background()
	k := testKey(t, "veil.test", 1)
	_, _, m := newTestLog(t, 10)
	cases := []struct {
		name    string
		content []byte
		says    string
	}{
		{"torn last append", append(bytes.Clone(m.cps[2].Note), m.cps[5].Note[:30]...), "incomplete"},
		{"torn inside the signature", append(bytes.Clone(m.cps[2].Note), m.cps[5].Note[:len(m.cps[5].Note)-3]...), "incomplete"},
		{"not notes", []byte("hello\nworld\n"), "incomplete"},
		{"another key's checkpoint", sign(t, testKey(t, "veil.test", 5), "veil.test\n3\n"+mustRoot(t, m, 3).String()+"\n"), "not signed by key"},
		{"another log", sign(t, k, "other.log\n3\n"+mustRoot(t, m, 3).String()+"\n"), "other.log"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "archive")
			os.WriteFile(p, tc.content, 0o644)
			_, err := OpenArchive(p, "veil.test", k.Verifier())
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("OpenArchive: %v, want ErrTampered saying %q", err, tc.says)
			}
		})
	}
	t.Run("shrunk under a running daemon", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "archive")
		a, err := OpenArchive(p, "veil.test", k.Verifier())
		if err != nil {
			t.Fatal(err)
		}
		a.Append(ctx, m.cps[2], proverOf(m))
		a.Append(ctx, m.cps[4], proverOf(m))
		os.WriteFile(p, m.cps[2].Note, 0o644)
		if err := a.Append(ctx, m.cps[6], proverOf(m)); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "shrank") {
			t.Errorf("append after the archive shrank: %v", err)
		}
		os.Remove(p)
		if err := a.Append(ctx, m.cps[6], proverOf(m)); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "gone") {
			t.Errorf("append after the archive was removed: %v", err)
		}
	})
	t.Run("a long archive", func(t *testing.T) {
		// More checkpoints than the tail window holds: the last is still found.
		_, _, big := newTestLog(t, 400)
		p := filepath.Join(t.TempDir(), "archive")
		a, _ := OpenArchive(p, "veil.test", k.Verifier())
		for _, cp := range big.cps {
			if err := a.Append(ctx, cp, proverOf(big)); err != nil {
				t.Fatal(err)
			}
		}
		a2, err := OpenArchive(p, "veil.test", k.Verifier())
		if err != nil {
			t.Fatal(err)
		}
		if cp, _, _ := a2.Last(); cp.Size != 400 {
			t.Errorf("last of a long archive: %d", cp.Size)
		}
	})
}

func TestCheckpointer(t *testing.T) {
	ctx := context.Background()
	s, m, _ := newSignedLog(t, 0)
	a, err := OpenArchive(filepath.Join(t.TempDir(), "w1"), "veil.test", s.Verifier())
	if err != nil {
		t.Fatal(err)
	}
	unreachable := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(unreachable, 0o755)
	b, err := OpenArchive(unreachable, "veil.test", s.Verifier())
	if err != nil {
		t.Fatal(err)
	}
	var halted error
	st := &memStorage{m: m}
	c := NewCheckpointer(s, st, []*Archive{a, b}, func(err error) { halted = err })
	if cp, err := c.Sync(ctx); cp != nil || err != nil {
		t.Fatalf("Sync of an empty log: %v %v", cp, err)
	}
	for i := range 4 {
		s.Log().Append(ctx, m, testEntry(i))
	}
	cp, err := c.Sync(ctx)
	if err != nil || cp.Size != 4 || len(m.cps) != 1 || m.cps[0].Size != 4 {
		t.Fatalf("Sync after 4 appends: %+v %v; store has %v", cp, err, m.cps)
	}
	for _, x := range []*Archive{a, b} {
		if last, _, _ := x.Last(); last.Size != 4 {
			t.Errorf("archive %s last %d", x.Path(), last.Size)
		}
	}
	// An archive that cannot be reached is reported and retried, not fatal.
	os.Rename(unreachable, unreachable+".away")
	s.Log().Append(ctx, m, testEntry(4))
	if _, err := c.Sync(ctx); !errors.Is(err, ErrUnavailable) || c.Err() == nil || halted != nil {
		t.Fatalf("Sync with an archive gone: %v; Err %v; halted %v", err, c.Err(), halted)
	}
	os.Rename(unreachable+".away", unreachable)
	if _, err := c.Sync(ctx); err != nil || c.Err() != nil {
		t.Fatalf("Sync once the archive is back: %v %v", err, c.Err())
	}
	if last, _, _ := b.Last(); last.Size != 5 {
		t.Errorf("the archive missed checkpoint 5: %d", last.Size)
	}
	// A store that fails to take the checkpoint: signed, stored on the next Sync.
	s.Log().Append(ctx, m, testEntry(5))
	st.err = errors.New("disk full")
	if _, err := c.Sync(ctx); err == nil || halted != nil {
		t.Fatalf("Sync with the store failing: %v, halted %v", err, halted)
	}
	st.err = nil
	if cp, err := c.Sync(ctx); err != nil || cp.Size != 6 || m.cps[len(m.cps)-1].Size != 6 {
		t.Fatalf("Sync after the store recovered: %+v %v", cp, err)
	}
	// Tampering stops it for good and halts the store.
	m.records[1][20] ^= 1
	m.rehash(t)
	if _, err := c.Sync(ctx); !errors.Is(err, ErrTampered) || halted == nil || c.Err() == nil {
		t.Fatalf("Sync of a rewritten log: %v; halted %v", err, halted)
	}
	if _, err := c.Sync(ctx); err == nil {
		t.Error("a stopped checkpointer syncs again")
	}
}

// TestCheckpointerArchiveFork: an archive holding a newer checkpoint than the store's log
// (the store was restored from a backup, the signer's state with it) stops the checkpointer.
func TestCheckpointerArchiveFork(t *testing.T) {
	ctx := context.Background()
	s, m, _ := newSignedLog(t, 0)
	dir := t.TempDir()
	a, _ := OpenArchive(dir, "veil.test", s.Verifier())
	backup := m.clone()
	c := NewCheckpointer(s, &memStorage{m: m}, []*Archive{a}, nil)
	for i := range 3 {
		s.Log().Append(ctx, m, testEntry(i))
		c.Sync(ctx)
	}
	// Restore store and signer state from a backup of the empty log, then write again.
	s2, _ := NewSigner("veil.test", testKey(t, "veil.test", 1), filepath.Join(t.TempDir(), "state"))
	s2.Check(ctx, backup)
	a2, err := OpenArchive(dir, "veil.test", s2.Verifier())
	if err != nil {
		t.Fatal(err)
	}
	c2 := NewCheckpointer(s2, &memStorage{m: backup}, []*Archive{a2}, nil)
	for i := range 3 {
		e := testEntry(i)
		e.Actor = "rewritten"
		s2.Log().Append(ctx, backup, e)
	}
	if _, err := c2.Sync(ctx); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "forked") {
		t.Fatalf("Sync of a restored and rewritten log: %v", err)
	}
	if last, _, _ := a2.Last(); !bytes.Equal(last.Note, m.cps[len(m.cps)-1].Note) {
		t.Error("the archive took the fork")
	}
}

// TestCheckpointerHaltsOnSignerFailure: a signer that cannot write its state stops the
// checkpointer and, through halt, the store's writes.
func TestCheckpointerHaltsOnSignerFailure(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "signer")
	os.Mkdir(dir, 0o700)
	s, _ := NewSigner("veil.test", testKey(t, "veil.test", 1), filepath.Join(dir, "state"))
	m := &memStore{}
	s.Check(ctx, m)
	var halted error
	c := NewCheckpointer(s, &memStorage{m: m}, nil, func(err error) { halted = err })
	s.Log().Append(ctx, m, testEntry(0))
	os.RemoveAll(dir)
	if _, err := c.Sync(ctx); !errors.Is(err, ErrUnavailable) || halted == nil || !errors.Is(c.Err(), ErrUnavailable) {
		t.Fatalf("Sync with the signer's state unwritable: %v; halted %v", err, halted)
	}
	if len(m.cps) != 0 {
		t.Error("a checkpoint the signer could not record reached the store")
	}
}
