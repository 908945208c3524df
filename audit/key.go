package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
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

// maxKeyFile bounds a key file read: a key is 45 bytes of base64.
const maxKeyFile = 4 << 10

// GenerateKey returns a new random platform key named name.
func GenerateKey(name string) (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return NewKey(name, priv)
}

// Secret is the key file's content: the base64 ed25519 seed and a newline. It is the
// platform's only secret; write it with durable.WriteFile and mode 0o600.
func (k *Key) Secret() []byte {
	return []byte(base64.StdEncoding.EncodeToString(k.priv.Seed()) + "\n")
}

// ReadKey reads a key file's content (see Secret) from r.
func ReadKey(name string, r io.Reader) (*Key, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read platform key: %w", err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%w: the platform key is more than %d bytes: not a key file", ErrInvalid, maxKeyFile)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: the platform key is damaged: want a base64 ed25519 seed of %d bytes", ErrInvalid, ed25519.SeedSize)
	}
	return NewKey(name, ed25519.NewKeyFromSeed(seed))
}

// LoadKey reads the platform key from a file. It refuses a file that other users can read
// or write: whoever can read the key can sign a forged log, and whoever can replace it can
// make the daemon sign with theirs.
func LoadKey(name, path string) (*Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open platform key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open platform key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: platform key %s is not a regular file", ErrInvalid, path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: platform key %s has mode %#o: other users can read or change it; run chmod 600 %s", ErrInvalid, path, fi.Mode().Perm(), path)
	}
	k, err := ReadKey(name, f)
	if err != nil {
		return nil, fmt.Errorf("platform key %s: %w", path, err)
	}
	return k, nil
}

// LoadKeyFD reads the platform key from an inherited file descriptor (a pipe or a file
// opened by whoever started the daemon, e.g. `veil serve --audit-key-fd 3 3<key`) and
// closes it, so that no child process inherits the key.
func LoadKeyFD(name string, fd int) (*Key, error) {
	if fd < 3 {
		return nil, fmt.Errorf("%w: platform key file descriptor %d: use 3 or above (0-2 are standard input and output)", ErrInvalid, fd)
	}
	f := os.NewFile(uintptr(fd), "platform key")
	if f == nil {
		return nil, fmt.Errorf("%w: platform key file descriptor %d is not open", ErrInvalid, fd)
	}
	defer f.Close()
	k, err := ReadKey(name, f)
	if err != nil {
		return nil, fmt.Errorf("platform key from file descriptor %d: %w", fd, err)
	}
	return k, nil
}
