package audit

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestKey(t *testing.T) {
	// Many seeds, so that some verifier keys have '+' inside their base64.
	sawPlus := false
	for seed := range byte(64) {
		k := testKey(t, "veil.example", seed)
		vkey := k.VerifierKey()
		sawPlus = sawPlus || strings.Count(vkey, "+") > 2
		v, pub, err := ParseVerifierKey(vkey)
		if err != nil {
			t.Fatalf("ParseVerifierKey(%q): %v", vkey, err)
		}
		if !bytes.Equal(pub, k.PublicKey()) || v.Name() != "veil.example" || v.KeyHash() != k.Verifier().KeyHash() {
			t.Fatalf("ParseVerifierKey(%q) = %s, %x", vkey, v.Name(), pub)
		}
		msg, err := note.Sign(&note.Note{Text: "hello\n"}, k.Signer())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
			t.Fatalf("seed %d: note signed by Signer does not open with the parsed verifier: %v", seed, err)
		}
	}
	if !sawPlus {
		t.Log("no verifier key with '+' in its base64 among the seeds")
	}
}

func TestKeyRejects(t *testing.T) {
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	damaged := bytes.Clone(priv)
	damaged[40] ^= 1
	for name, tc := range map[string]struct {
		name string
		priv ed25519.PrivateKey
	}{
		"empty name":    {"", priv},
		"space in name": {"veil example", priv},
		"plus in name":  {"veil+x", priv},
		"short key":     {"veil", priv[:32]},
		"damaged key":   {"veil", damaged},
		"nil key":       {"veil", nil},
	} {
		if _, err := NewKey(tc.name, tc.priv); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: NewKey err = %v, want ErrInvalid", name, err)
		}
	}
	k := testKey(t, "veil", 1)
	for _, vkey := range []string{"", "veil", "veil+00000000+AQ==", k.VerifierKey() + "x", strings.Replace(k.VerifierKey(), "veil", "vail", 1),
		"PRIVATE+KEY+veil+00000000+AQ=="} {
		if _, _, err := ParseVerifierKey(vkey); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseVerifierKey(%q) err = %v, want ErrInvalid", vkey, err)
		}
	}
}
