package audit

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func signedCheckpoint(t *testing.T, k *Key, size int64) []byte {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: formatCheckpoint(k.Name(), size, tlog.Hash{1})}, k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func certAt(t *testing.T, k *Key, at time.Time) []byte {
	t.Helper()
	c, err := SignCertificate(k, "j.csv", []byte("out"), map[string]any{"exported": at, "platform": k.VerifierKey()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKeyring: after a rotation, what the retired key signed in its term verifies with the
// ring, what the new key signs verifies with the ring but not with the old key alone, and the
// retired key cannot vouch for anything after its term.
func TestKeyring(t *testing.T) {
	old, _ := GenerateKey("veil-platform")
	cur, _ := GenerateKey("veil-platform")
	rotated := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	ring, err := NewKeyring([]RingKey{
		{VerifierKey: old.VerifierKey(), KeyID: KeyID(old.PublicKey()), Until: rotated, MaxSize: 5},
		{VerifierKey: cur.VerifierKey(), KeyID: KeyID(cur.PublicKey()), From: rotated},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, n, _, err := OpenCheckpoint(ring, signedCheckpoint(t, old, 5)); err != nil || n != 5 {
		t.Errorf("old key's checkpoint in its term: %d %v", n, err)
	}
	if _, _, _, err := OpenCheckpoint(ring, signedCheckpoint(t, cur, 9)); err != nil {
		t.Errorf("new key's checkpoint with the ring: %v", err)
	}
	if _, _, _, err := OpenCheckpoint(old.Verifier(), signedCheckpoint(t, cur, 9)); !errors.Is(err, ErrTampered) {
		t.Errorf("new key's checkpoint with the old key alone: %v", err)
	}
	if _, _, _, err := OpenCheckpoint(ring, signedCheckpoint(t, old, 6)); !errors.Is(err, ErrTampered) {
		t.Errorf("old key's checkpoint beyond its term: %v", err)
	}

	before, after := certAt(t, old, rotated.Add(-time.Hour)), certAt(t, cur, rotated.Add(time.Hour))
	if _, err := ring.VerifyCertificate(before, []byte("out")); err != nil {
		t.Errorf("certificate of the old key in its term: %v", err)
	}
	if _, err := ring.VerifyCertificate(after, []byte("out")); err != nil {
		t.Errorf("certificate of the new key: %v", err)
	}
	if _, err := VerifyCertificate(old.PublicKey(), after, []byte("out")); !errors.Is(err, ErrTampered) {
		t.Errorf("new certificate with the old key alone: %v", err)
	}
	if _, err := ring.VerifyCertificate(certAt(t, old, rotated.Add(time.Minute)), []byte("out")); !errors.Is(err, ErrTampered) {
		t.Errorf("old key's certificate after its term: %v", err)
	}
	if _, err := ring.VerifyCertificate(after, []byte("other")); !errors.Is(err, ErrTampered) {
		t.Errorf("certificate of other bytes: %v", err)
	}
	other, _ := GenerateKey("veil-platform")
	if _, err := ring.VerifyCertificate(certAt(t, other, rotated), []byte("out")); !errors.Is(err, ErrTampered) {
		t.Errorf("certificate of a key not in the ring: %v", err)
	}
	for name, keys := range map[string][]RingKey{
		"empty":            nil,
		"no current":       {{VerifierKey: old.VerifierKey(), Until: rotated}},
		"two current":      {{VerifierKey: old.VerifierKey()}, {VerifierKey: cur.VerifierKey()}},
		"listed twice":     {{VerifierKey: cur.VerifierKey(), Until: rotated}, {VerifierKey: cur.VerifierKey()}},
		"another log name": {{VerifierKey: other.VerifierKey(), Until: rotated}, {VerifierKey: mustKey(t, "other-name").VerifierKey()}},
	} {
		if _, err := NewKeyring(keys); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func mustKey(t *testing.T, name string) *Key {
	k, err := GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
