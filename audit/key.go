package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// algEd25519 is the note algorithm byte for ed25519 keys (golang.org/x/mod/sumdb/note).
const algEd25519 = 1

// Key is the platform signing key: an ed25519 key and the name it signs notes under.
type Key struct {
	name     string
	priv     ed25519.PrivateKey
	pub      ed25519.PublicKey
	vkey     string
	signer   note.Signer
	verifier note.Verifier
}

// NewKey wraps an ed25519 private key for signing checkpoints (under the note key name
// name) and certificates. The name must be non-empty with no spaces or '+'.
func NewKey(name string, priv ed25519.PrivateKey) (*Key, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: ed25519 private key has %d bytes, want %d", ErrInvalid, len(priv), ed25519.PrivateKeySize)
	}
	// A private key is seed ‖ public key; a damaged copy would sign with one key and
	// advertise another.
	if !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()), priv) {
		return nil, fmt.Errorf("%w: ed25519 private key is inconsistent with its seed", ErrInvalid)
	}
	pub := priv.Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %v", ErrInvalid, name, err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("%w: key name %q: %v", ErrInvalid, name, err)
	}
	// vkey is name+hash+base64(alg ‖ pub) (base64 may itself contain '+'); the signer key
	// is PRIVATE+KEY+name+hash+base64(alg ‖ seed).
	_, rest, _ := strings.Cut(vkey, "+")
	hash, _, _ := strings.Cut(rest, "+")
	skey := "PRIVATE+KEY+" + name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, priv.Seed()...))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q: %v", ErrInvalid, name, err)
	}
	return &Key{name: name, priv: priv, pub: pub, vkey: vkey, signer: signer, verifier: verifier}, nil
}

// Name is the note key name.
func (k *Key) Name() string { return k.name }

// Signer signs notes (checkpoints) with the key.
func (k *Key) Signer() note.Signer { return k.signer }

// Verifier verifies notes signed with the key.
func (k *Key) Verifier() note.Verifier { return k.verifier }

// VerifierKey is the note verifier key text ("name+hash+base64"), safe to publish.
func (k *Key) VerifierKey() string { return k.vkey }

// PublicKey is the raw ed25519 public key, which verifies certificates.
func (k *Key) PublicKey() ed25519.PublicKey { return k.pub }

// ParseVerifierKey parses a published verifier key (as VerifierKey returns it) into a note
// verifier for checkpoints and the ed25519 public key for certificates.
func ParseVerifierKey(vkey string) (note.Verifier, ed25519.PublicKey, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: verifier key: %v", ErrInvalid, err)
	}
	// NewVerifier accepted it, so it is name+hash+base64 with a valid ed25519 key.
	_, rest, _ := strings.Cut(vkey, "+")
	_, key64, _ := strings.Cut(rest, "+")
	raw, err := base64.StdEncoding.DecodeString(key64)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != algEd25519 {
		return nil, nil, fmt.Errorf("%w: verifier key is not an ed25519 key", ErrInvalid)
	}
	return v, ed25519.PublicKey(raw[1:]), nil
}
