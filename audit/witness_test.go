package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func testCosigner(t testing.TB, seed byte) *Cosigner {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed ^ byte(i*7)
	}
	c, err := NewCosigner("witness.example/w1", ed25519.NewKeyFromSeed(s))
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return time.Unix(1679315147, 0) }
	return c
}

func TestCosignatureFormat(t *testing.T) {
	// The signed message of C2SP tlog-cosignature's example.
	text := "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
	want := "cosignature/v1\ntime 1679315147\n" + text
	if got := string(cosignedMessage(1679315147, []byte(text))); got != want {
		t.Errorf("cosigned message %q, want %q", got, want)
	}
	// A cosignature/v1 vkey published by another implementation parses, and its key hash
	// is the one we compute (SHA-256(name ‖ \n ‖ 0x04 ‖ key)[:4]).
	if v, err := NewCosignatureVerifier("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"); err != nil || v.KeyHash() != 0xda77ade7 {
		t.Errorf("third-party cosigner vkey: %v", err)
	}

	c := testCosigner(t, 1)
	v, err := NewCosignatureVerifier(c.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ParseCosigner(c.SecretKey())
	if err != nil || c2.VerifierKey() != c.VerifierKey() {
		t.Fatalf("ParseCosigner: %v", err)
	}
	msg, err := note.Sign(&note.Note{Text: text}, c)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(n.Sigs[0].Base64)
	if len(raw) != 4+8+64 || !bytes.Equal(raw[4:12], []byte{0, 0, 0, 0, 0x64, 0x18, 0x50, 0xcb}) {
		t.Errorf("signature %x: want key id, 8-byte timestamp 1679315147, 64-byte signature", raw)
	}
	// A changed timestamp invalidates it; an ordinary note key does not accept it.
	raw[11]++
	bad := bytes.Replace(msg, []byte(n.Sigs[0].Base64), []byte(base64.StdEncoding.EncodeToString(raw)), 1)
	if _, err := note.Open(bad, note.VerifierList(v)); err == nil {
		t.Error("a cosignature with a changed timestamp verifies")
	}
	for _, bad := range []string{"", "x+00000000+BA==", strings.Replace(c.VerifierKey(), "+", "+0", 1), testKey(t, "witness.example/w1", 1).VerifierKey()} {
		if _, err := NewCosignatureVerifier(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewCosignatureVerifier(%q): %v", bad, err)
		}
	}
	if _, err := ParseCosigner(strings.Replace(c.SecretKey(), "witness", "wetness", 1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseCosigner with a changed name: %v", err)
	}
}

func TestWitness(t *testing.T) {
	ctx := context.Background()
	k := testKey(t, "veil.test", 1)
	_, _, m := newTestLog(t, 30)
	c := testCosigner(t, 1)
	state := filepath.Join(t.TempDir(), "witness.state")
	if _, err := OpenWitness(c, k.Verifier(), state, false); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "--init") {
		t.Fatalf("first run without --init: %v", err)
	}
	w, err := OpenWitness(c, k.Verifier(), state, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{4, 4, 11, 29} {
		cosigned, err := w.Cosign(ctx, m.cps[i].Note, proverOf(m))
		if err != nil {
			t.Fatalf("cosign %d: %v", i+1, err)
		}
		if at, err := CosignedAt(k.Verifier(), c.Verifier(), cosigned); err != nil || at.Unix() != 1679315147 {
			t.Fatalf("cosigned checkpoint: %v %v", at, err)
		}
		// Still the log's checkpoint for every tool that knows only the log's key.
		if _, size, _, err := OpenCheckpoint(k.Verifier(), cosigned); err != nil || size != int64(i+1) {
			t.Fatalf("cosigned checkpoint as a checkpoint: %v", err)
		}
	}
	if _, err := OpenWitness(c, k.Verifier(), state, true); !errors.Is(err, ErrInvalid) {
		t.Errorf("--init with state: %v", err)
	}
	w, err = OpenWitness(c, k.Verifier(), state, false)
	if err != nil {
		t.Fatal(err)
	}
	if last, ok := w.Last(); !ok || last.Size != 30 {
		t.Fatalf("witness last %d", last.Size)
	}
	before, _ := os.ReadFile(state)

	fork := m.clone()
	fork.records[29][20] ^= 1
	fork.rehash(t)
	longer := m.clone()
	longer.records[3][20] ^= 1
	longer.rehash(t)
	appendUnsigned(t, longer, testEntry(90))
	cases := []struct {
		name  string
		cp    []byte
		prove ProveFunc
		want  error
		says  string
	}{
		{"older checkpoint", m.cps[10].Note, proverOf(m), ErrTampered, "smaller"},
		{"fork of the same size", sign(t, k, formatCheckpoint("veil.test", 30, mustRoot(t, fork, 30))), proverOf(fork), ErrTampered, "forked"},
		{"rewritten and longer", sign(t, k, formatCheckpoint("veil.test", 31, mustRoot(t, longer, 31))), proverOf(longer), ErrTampered, "does not extend"},
		{"bad proof", sign(t, k, formatCheckpoint("veil.test", 31, mustRoot(t, longer, 31))), func(ctx context.Context, from, to int64) ([]tlog.Hash, error) {
			return nil, nil
		}, ErrTampered, "does not extend"},
		{"not signed by the log", sign(t, testKey(t, "veil.test", 7), formatCheckpoint("veil.test", 31, mustRoot(t, longer, 31))), proverOf(longer), ErrTampered, "not signed"},
		{"another log", sign(t, k, formatCheckpoint("veil.other", 31, mustRoot(t, longer, 31))), proverOf(longer), ErrTampered, "veil.other"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.Cosign(ctx, tc.cp, tc.prove)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("Cosign: %v, want %v saying %q", err, tc.want, tc.says)
			}
			if after, _ := os.ReadFile(state); !bytes.Equal(after, before) {
				t.Error("a refused checkpoint changed the witness state")
			}
		})
	}
	// A state file someone replaced with the log's own (uncosigned) checkpoint is refused.
	os.WriteFile(state, m.cps[29].Note, 0o644)
	if _, err := OpenWitness(c, k.Verifier(), state, false); !errors.Is(err, ErrTampered) {
		t.Errorf("state without the witness's cosignature: %v", err)
	}
}
