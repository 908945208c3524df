package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Cosignatures follow C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), the
// Ed25519 "cosignature/v1" type: a note signature line whose key ID is
// SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4] and whose signature is an 8-byte big-endian
// POSIX timestamp followed by an Ed25519 signature of
//
//	cosignature/v1
//	time <timestamp>
//	<the whole checkpoint text>
//
// so that witnesses' tooling (transparency-dev, sigsum, torchwood) reads Veil's cosigned
// checkpoints and Veil reads theirs.
const algCosignatureV1 = 0x04

// Cosigner signs cosignatures with an independent party's key: a witness's, never the
// platform's.
type Cosigner struct {
	name string
	hash uint32
	priv ed25519.PrivateKey
	now  func() time.Time
}

var _ note.Signer = (*Cosigner)(nil)

func validKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}

func cosignKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write([]byte{algCosignatureV1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// NewCosigner returns a cosigner named name (a schema-less URL, e.g.
// "witness.example.org/veil") with key priv.
func NewCosigner(name string, priv ed25519.PrivateKey) (*Cosigner, error) {
	if !validKeyName(name) {
		return nil, fmt.Errorf("%w: cosigner name %.100q: want non-empty text with no spaces or '+'", ErrInvalid, name)
	}
	if len(priv) != ed25519.PrivateKeySize || !bytes.Equal(ed25519.NewKeyFromSeed(priv.Seed()), priv) {
		return nil, fmt.Errorf("%w: cosigner key is not a valid ed25519 private key", ErrInvalid)
	}
	pub := priv.Public().(ed25519.PublicKey)
	return &Cosigner{name: name, hash: cosignKeyHash(name, pub), priv: priv, now: time.Now}, nil
}

// GenerateCosigner returns a cosigner with a new random key.
func GenerateCosigner(name string) (*Cosigner, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return NewCosigner(name, priv)
}

// Name implements note.Signer.
func (c *Cosigner) Name() string { return c.name }

// KeyHash implements note.Signer.
func (c *Cosigner) KeyHash() uint32 { return c.hash }

// Sign implements note.Signer: a timestamped cosignature of msg, the checkpoint text.
func (c *Cosigner) Sign(msg []byte) ([]byte, error) {
	t := c.now().Unix()
	if t < 0 {
		return nil, fmt.Errorf("cosign: the clock is before 1970")
	}
	sig := make([]byte, 8, 8+ed25519.SignatureSize)
	binary.BigEndian.PutUint64(sig, uint64(t))
	return append(sig, ed25519.Sign(c.priv, cosignedMessage(uint64(t), msg))...), nil
}

func cosignedMessage(t uint64, text []byte) []byte {
	m := make([]byte, 0, 40+len(text))
	m = append(m, "cosignature/v1\ntime "...)
	m = strconv.AppendUint(m, t, 10)
	m = append(m, '\n')
	return append(m, text...)
}

// VerifierKey is the cosigner's public key as a C2SP vkey: name+hash+base64(0x04 ‖ key).
func (c *Cosigner) VerifierKey() string {
	pub := c.priv.Public().(ed25519.PublicKey)
	return fmt.Sprintf("%s+%08x+%s", c.name, c.hash, base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, pub...)))
}

// SecretKey is the cosigner's private key in the note signer-key format:
// PRIVATE+KEY+name+hash+base64(0x04 ‖ seed). Keep it with mode 0o600.
func (c *Cosigner) SecretKey() string {
	return fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", c.name, c.hash, base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, c.priv.Seed()...)))
}

// Verifier verifies the cosigner's cosignatures.
func (c *Cosigner) Verifier() note.Verifier {
	return &cosignVerifier{name: c.name, hash: c.hash, pub: c.priv.Public().(ed25519.PublicKey)}
}

// ParseCosigner parses a key written by SecretKey.
func ParseCosigner(skey string) (*Cosigner, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(skey), "PRIVATE+KEY+")
	parts := strings.SplitN(rest, "+", 3)
	if !ok || len(parts) != 3 {
		return nil, fmt.Errorf("%w: cosigner key: want PRIVATE+KEY+<name>+<hash>+<key>", ErrInvalid)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != algCosignatureV1 {
		return nil, fmt.Errorf("%w: cosigner key is not a cosignature/v1 ed25519 key", ErrInvalid)
	}
	c, err := NewCosigner(parts[0], ed25519.NewKeyFromSeed(raw[1:]))
	if err != nil {
		return nil, err
	}
	if h, err := strconv.ParseUint(parts[1], 16, 32); err != nil || len(parts[1]) != 8 || uint32(h) != c.hash {
		return nil, fmt.Errorf("%w: cosigner key hash does not match its name and key (damaged key)", ErrInvalid)
	}
	return c, nil
}

type cosignVerifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
}

func (v *cosignVerifier) Name() string    { return v.name }
func (v *cosignVerifier) KeyHash() uint32 { return v.hash }
func (v *cosignVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > math.MaxInt64 {
		return false
	}
	return ed25519.Verify(v.pub, cosignedMessage(t, msg), sig[8:])
}

// NewCosignatureVerifier parses a cosigner's vkey (name+hash+base64(0x04 ‖ key)).
func NewCosignatureVerifier(vkey string) (note.Verifier, error) {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 || !validKeyName(parts[0]) {
		return nil, fmt.Errorf("%w: cosigner verifier key: want <name>+<hash>+<key>", ErrInvalid)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != algCosignatureV1 {
		return nil, fmt.Errorf("%w: cosigner verifier key is not a cosignature/v1 ed25519 key", ErrInvalid)
	}
	v := &cosignVerifier{name: parts[0], pub: ed25519.PublicKey(raw[1:])}
	v.hash = cosignKeyHash(v.name, v.pub)
	if h, err := strconv.ParseUint(parts[1], 16, 32); err != nil || len(parts[1]) != 8 || uint32(h) != v.hash {
		return nil, fmt.Errorf("%w: cosigner verifier key hash does not match its name and key", ErrInvalid)
	}
	return v, nil
}

// CosignedAt returns when v cosigned the checkpoint msg (which must also be signed by the
// log's key, verified by log). It is ErrTampered if v did not cosign it, or its cosignature
// does not verify.
func CosignedAt(log, v note.Verifier, msg []byte) (time.Time, error) {
	if len(msg) > maxNoteSize {
		return time.Time{}, fmt.Errorf("%w: checkpoint is %d bytes, more than %d", ErrInvalid, len(msg), maxNoteSize)
	}
	n, err := note.Open(msg, note.VerifierList(log, v))
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: cosigned checkpoint does not verify: %v", ErrTampered, err)
	}
	var logSigned bool
	for _, s := range n.Sigs {
		logSigned = logSigned || s.Name == log.Name() && s.Hash == log.KeyHash()
	}
	for _, s := range n.Sigs {
		if s.Name == v.Name() && s.Hash == v.KeyHash() && logSigned {
			raw, err := base64.StdEncoding.DecodeString(s.Base64)
			if err != nil || len(raw) < 12 {
				return time.Time{}, fmt.Errorf("%w: malformed cosignature", ErrInvalid)
			}
			return time.Unix(int64(binary.BigEndian.Uint64(raw[4:12])), 0).UTC(), nil
		}
	}
	if !logSigned {
		return time.Time{}, fmt.Errorf("%w: the checkpoint is not signed by the log's key %s", ErrTampered, log.Name())
	}
	return time.Time{}, fmt.Errorf("%w: the checkpoint is not cosigned by witness %s", ErrTampered, v.Name())
}
