package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
)

// TestStateAppends: after the first, each signing appends its checkpoint to the signer's
// state file (one write and one fsync, no new file and no directory fsync), and a new signer
// reads the last one. The file is rewritten with the latest checkpoint alone once it has
// grown past its bound.
func TestStateAppends(t *testing.T) {
	ctx := context.Background()
	s, m, state := newSignedLog(t, 3)
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	cps, _ := m.Checkpoints(ctx)
	var all []byte
	for _, cp := range cps {
		all = append(all, cp.Note...)
	}
	if !bytes.Equal(b, all) {
		t.Fatalf("state after 3 signings:\n%s\nwant the 3 checkpoints one after another:\n%s", b, all)
	}
	s2, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s2.Latest(); !ok || got.Size != 3 {
		t.Errorf("reopened signer's latest: %+v %v, want 3", got.Size, ok)
	}
	for i := 3; i < 400; i++ {
		s.Log().Append(ctx, m, testEntry(i))
		if _, err := s.Sign(ctx, m); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(state); err != nil || fi.Size() > maxStateSize {
			t.Fatalf("state after %d signings: %v bytes (%v), bound %d", i+1, fi.Size(), err, maxStateSize)
		}
	}
	s3, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := s3.Latest(); !ok || got.Size != 400 {
		t.Errorf("signer after the state was compacted: %+v %v, want 400", got.Size, ok)
	}
}

// TestStateTornAppend cuts the last appended checkpoint short, as a crash during its write
// would leave it (its signature was not handed out: that waits for the fsync, so the store
// has no copy of it either): the signer reopens at the checkpoint before, and its next
// signing rewrites the file whole, so that no torn record stays between two good ones. A
// last record that is whole but does not verify is not a torn write: it is refused.
func TestStateTornAppend(t *testing.T) {
	ctx := context.Background()
	_, m, state := newSignedLog(t, 3)
	b, _ := os.ReadFile(state)
	last := m.cps[len(m.cps)-1].Note
	m.cps = m.cps[:len(m.cps)-1]
	for _, cut := range []int{1, len(last) / 2, len(last) - 1} {
		if err := os.WriteFile(state, b[:len(b)-cut], 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state)
		if err != nil {
			t.Fatalf("state whose last checkpoint lost %d bytes: %v", cut, err)
		}
		if got, ok := s.Latest(); !ok || got.Size != 2 {
			t.Fatalf("state whose last checkpoint lost %d bytes: latest %d %v, want 2", cut, got.Size, ok)
		}
		if err := s.Check(ctx, m); err != nil {
			t.Fatalf("Check: %v", err)
		}
		cp, err := s.Sign(ctx, m)
		if err != nil || cp.Size != 3 {
			t.Fatalf("Sign: %+v %v", cp, err)
		}
		if got, _ := os.ReadFile(state); !bytes.Equal(got, cp.Note) {
			t.Fatalf("state after the signing that followed a torn record:\n%s\nwant the new checkpoint alone", got)
		}
	}
	damaged := bytes.Clone(b)
	damaged[len(damaged)-len(last)+3] ^= 1
	os.WriteFile(state, damaged, 0o644)
	if _, err := NewSigner("veil.test", testKey(t, "veil.test", 1), state); !errors.Is(err, ErrTampered) {
		t.Errorf("a whole last checkpoint that does not verify: %v, want ErrTampered", err)
	}
}
