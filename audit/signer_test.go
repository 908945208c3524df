package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
	"golang.org/x/sys/unix"
)

// newSignedLog returns a signer (state in its own directory) that has signed a log of n
// entries appended through its Log, one checkpoint per entry.
func newSignedLog(t *testing.T, n int) (*Signer, *memStore, string) {
	t.Helper()
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "signer.state")
	s, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
	if err != nil {
		t.Fatal(err)
	}
	m := &memStore{}
	if err := s.Check(ctx, m); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := s.Log().Append(ctx, m, testEntry(i)); err != nil {
			t.Fatal(err)
		}
		cp, err := s.Sign(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size != int64(i+1) {
			t.Fatalf("signed size %d after %d appends", cp.Size, i+1)
		}
		m.AddCheckpoint(ctx, cp.Size, cp.Note)
	}
	return s, m, state
}

func TestSignerSigns(t *testing.T) {
	ctx := context.Background()
	s, m, state := newSignedLog(t, 5)
	// The Log appends without signing.
	if len(m.cps) != 5 || len(m.records) != 5 {
		t.Fatalf("%d records, %d checkpoints", len(m.records), len(m.cps))
	}
	// Nothing new: the same checkpoint, not a new signature.
	cp, err := s.Sign(ctx, m)
	if err != nil || cp.Size != 5 || !bytes.Equal(cp.Note, m.cps[4].Note) {
		t.Fatalf("Sign with nothing new: %+v, %v", cp, err)
	}
	// Several appends, one checkpoint.
	for i := range 3 {
		s.Log().Append(ctx, m, testEntry(10+i))
	}
	cp, err = s.Sign(ctx, m)
	if err != nil || cp.Size != 8 {
		t.Fatalf("Sign after 3 appends: %+v, %v", cp, err)
	}
	// The state file ends with the last checkpoint, and a new signer reads it.
	b, _ := os.ReadFile(state)
	if !bytes.Equal(LatestInState(b), cp.Note) {
		t.Errorf("state file holds %q", b)
	}
	s2, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s2.Latest(); !ok || got.Size != 8 {
		t.Errorf("reopened signer's latest: %+v %v", got, ok)
	}
	if _, err := s2.Sign(ctx, m); !errors.Is(err, ErrInvalid) {
		t.Errorf("Sign before Check: %v", err)
	}
	m.AddCheckpoint(ctx, cp.Size, cp.Note)
	if err := s2.Check(ctx, m); err != nil {
		t.Errorf("Check of the untampered log: %v", err)
	}
	rep, err := s.Log().Verify(ctx, m)
	if err != nil || rep.Size != 8 || rep.Pending != 0 {
		t.Errorf("verify: %+v %v", rep, err)
	}
}

// TestSignerRefuses tampers with the store as its writer could and checks that the signer
// neither signs it nor lets the daemon start on it.
func TestSignerRefuses(t *testing.T) {
	ctx := context.Background()
	other := testKey(t, "veil.test", 99)
	cases := []struct {
		name   string
		tamper func(t *testing.T, m *memStore, s *Signer)
		says   string
	}{
		{"record rewritten, every hash recomputed", func(t *testing.T, m *memStore, s *Signer) {
			m.records[2][20] ^= 1
			m.rehash(t)
		}, "rewritten"},
		{"tail truncated", func(t *testing.T, m *memStore, s *Signer) {
			m.records, m.hashes, m.cps = m.records[:4], m.hashes[:tlog.StoredHashIndex(0, 4)], m.cps[:4]
		}, "removed (truncated)"},
		{"truncated and regrown to the same size (fork)", func(t *testing.T, m *memStore, s *Signer) {
			m.records, m.hashes, m.cps = m.records[:4], m.hashes[:tlog.StoredHashIndex(0, 4)], m.cps[:4]
			e := testEntry(4)
			e.Actor = "someone else"
			appendUnsigned(t, m, e)
			appendUnsigned(t, m, testEntry(5))
		}, "forked"},
		{"history replaced by a longer one", func(t *testing.T, m *memStore, s *Signer) {
			fresh := &memStore{}
			for i := range 9 {
				appendUnsigned(t, fresh, testEntry(50+i))
			}
			*m = *fresh
		}, "does not extend"},
		{"new record changed after its append", func(t *testing.T, m *memStore, s *Signer) {
			appendUnsigned(t, m, testEntry(7))
			m.records[6][25] ^= 1
		}, "changed after it was written"},
		{"new record's interior hash changed", func(t *testing.T, m *memStore, s *Signer) {
			appendUnsigned(t, m, testEntry(7))
			appendUnsigned(t, m, testEntry(8)) // record 7 stores 4 hashes
			m.hashes[tlog.StoredHashIndex(0, 7)+2][0] ^= 1
		}, "changed after it was written"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, m, state := newSignedLog(t, 6)
			tc.tamper(t, m, s)
			_, err := s.Sign(ctx, m)
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Sign: %v, want ErrTampered saying %q", err, tc.says)
			}
			// The state still holds the checkpoint of 6, and a fresh start refuses too.
			s2, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
			if err != nil {
				t.Fatal(err)
			}
			if cp, _ := s2.Latest(); cp.Size != 6 {
				t.Errorf("state moved to %d", cp.Size)
			}
			err = s2.Check(ctx, m)
			if !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "To recover") {
				t.Errorf("Check: %v", err)
			}
			if _, err := s2.Sign(ctx, m); err == nil {
				t.Error("a signer whose Check failed signs")
			}
		})
	}

	t.Run("newer checkpoint signed by something else", func(t *testing.T) {
		s, m, state := newSignedLog(t, 3)
		legacy := NewLog("veil.test", testKey(t, "veil.test", 1))
		legacy.Append(ctx, m, testEntry(3))
		s2, _ := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
		if err := s2.Check(ctx, m); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "something else signs") {
			t.Errorf("Check: %v", err)
		}
		_ = s
	})
	t.Run("newer checkpoint forged", func(t *testing.T) {
		_, m, state := newSignedLog(t, 3)
		NewLog("veil.test", other).Append(ctx, m, testEntry(3))
		s2, _ := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
		if err := s2.Check(ctx, m); err == nil || !strings.Contains(err.Error(), "forged") {
			t.Errorf("Check: %v", err)
		}
	})
	t.Run("state lost", func(t *testing.T) {
		_, m, state := newSignedLog(t, 3)
		os.Remove(state)
		s2, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.Check(ctx, m); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "no audit signer state") {
			t.Errorf("Check without state: %v", err)
		}
		if _, err := s2.Sign(ctx, m); err == nil {
			t.Error("signer without state signs an existing log it was not told to adopt")
		}
	})
	t.Run("state damaged or of another key", func(t *testing.T) {
		_, _, state := newSignedLog(t, 3)
		b, _ := os.ReadFile(state)
		b[3] ^= 1
		os.WriteFile(state, b, 0o644)
		if _, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state); !errors.Is(err, ErrTampered) {
			t.Errorf("damaged state: %v", err)
		}
		os.WriteFile(state, sign(t, other, "veil.test\n3\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"), 0o644)
		if _, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state); !errors.Is(err, ErrTampered) {
			t.Errorf("state signed by another key: %v", err)
		}
	})
}

func TestSignerAdopt(t *testing.T) {
	ctx := context.Background()
	_, _, m := newTestLog(t, 5) // signed inside transactions, as Veil did before
	state := filepath.Join(t.TempDir(), "state")
	s, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, m); err == nil {
		t.Fatal("Check passes without state on an existing log")
	}
	bad := m.clone()
	bad.records[1][15] ^= 1
	if err := s.Adopt(ctx, bad); !errors.Is(err, ErrTampered) {
		t.Errorf("Adopt of a tampered log: %v", err)
	}
	if err := s.Adopt(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := s.Adopt(ctx, m); !errors.Is(err, ErrInvalid) {
		t.Errorf("second Adopt: %v", err)
	}
	s.Log().Append(ctx, m, testEntry(5))
	if cp, err := s.Sign(ctx, m); err != nil || cp.Size != 6 {
		t.Errorf("Sign after Adopt: %+v %v", cp, err)
	}
}

// TestSignerStateFailureLatches: a signer that cannot record what it signed stops signing,
// even once the disk is back.
func TestSignerStateFailureLatches(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	os.Mkdir(dir, 0o700)
	s, err := NewSigner("veil.test", testKey(t, "veil.test", 1), filepath.Join(dir, "signer.state"))
	if err != nil {
		t.Fatal(err)
	}
	m := &memStore{}
	s.Check(ctx, m)
	s.Log().Append(ctx, m, testEntry(0))
	os.RemoveAll(dir)
	if _, err := s.Sign(ctx, m); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Sign with its state directory gone: %v", err)
	}
	os.Mkdir(dir, 0o700)
	if _, err := s.Sign(ctx, m); !errors.Is(err, ErrUnavailable) || s.Err() == nil {
		t.Errorf("Sign after a state failure: %v", err)
	}
	if _, ok := s.Latest(); ok {
		t.Error("a checkpoint not recorded in the state counts as signed")
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t, "veil.test", 1)
	p := filepath.Join(dir, "platform.key")
	os.WriteFile(p, k.Secret(), 0o600)
	got, err := LoadKey("veil.test", p)
	if err != nil || got.VerifierKey() != k.VerifierKey() {
		t.Fatalf("LoadKey: %v", err)
	}
	os.Chmod(p, 0o640)
	if _, err := LoadKey("veil.test", p); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable key: %v", err)
	}
	os.WriteFile(p, []byte("bm90IGEga2V5Cg==\n"), 0o600)
	if _, err := LoadKey("veil.test", p); !errors.Is(err, ErrInvalid) {
		t.Errorf("damaged key: %v", err)
	}

	// From a file descriptor, closed after reading.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(k.Secret())
	w.Close()
	// A duplicate, which LoadKeyFD closes: r keeps its own, and closes it itself (were r's
	// number closed under it, its finalizer would close that number again later, when it
	// may be another test's file).
	fd, err := syscall.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err = LoadKeyFD("veil.test", fd)
	if err != nil || got.VerifierKey() != k.VerifierKey() {
		t.Fatalf("LoadKeyFD: %v", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil {
		t.Error("the key's file descriptor is still open")
	}
	if _, err := LoadKeyFD("veil.test", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("fd 0: %v", err)
	}
	g, err := GenerateKey("veil.test")
	if err != nil || g.VerifierKey() == k.VerifierKey() {
		t.Errorf("GenerateKey: %v", err)
	}
}
