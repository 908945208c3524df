package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// RingKey is one platform key of a keyring: its published verifier key and its term. A
// retired key (Until set) verifies only what it signed in its term: certificates exported
// before Until, and checkpoints of at most MaxSize entries (the log's size when it was
// retired), so that a retired key that leaks cannot vouch for anything newer.
type RingKey struct {
	VerifierKey string    `json:"verifier_key"`
	KeyID       string    `json:"key_id"` // hex SHA-256 of the raw public key, as certificates name it
	From        time.Time `json:"from"`
	Until       time.Time `json:"until,omitzero"`
	MaxSize     int64     `json:"audit_size,omitempty"`
}

// Retired says whether the key was replaced.
func (k RingKey) Retired() bool { return !k.Until.IsZero() }

// Keyring verifies checkpoints and certificates signed by the platform's current key or by
// a retired one within its term. It is a note.Verifier for the current key (and everything
// that takes one, such as OpenCheckpoint and CheckConsistency, then accepts every key of the
// ring) and a note.Verifiers.
type Keyring struct {
	keys    []RingKey
	current note.Verifier
	byHash  map[uint32]ringVerifier
	pubs    []ed25519.PublicKey
}

type ringVerifier struct {
	note.Verifier
	max int64 // 0: no bound (the current key)
}

// Verify refuses a checkpoint beyond the key's term before it checks the signature.
func (v ringVerifier) Verify(msg, sig []byte) bool {
	if v.max > 0 {
		if _, size, _, err := parseCheckpoint(string(msg)); err != nil || size > v.max {
			return false
		}
	}
	return v.Verifier.Verify(msg, sig)
}

// NewKeyring builds a keyring; exactly one key, the last, is current (no Until), and every
// key has the same name.
func NewKeyring(keys []RingKey) (*Keyring, error) {
	if len(keys) == 0 || keys[len(keys)-1].Retired() {
		return nil, fmt.Errorf("%w: a keyring ends with the current key (no until)", ErrInvalid)
	}
	r := &Keyring{keys: keys, byHash: map[uint32]ringVerifier{}}
	for i, k := range keys {
		v, pub, err := ParseVerifierKey(k.VerifierKey)
		if err != nil {
			return nil, fmt.Errorf("keyring key %d: %w", i, err)
		}
		if i < len(keys)-1 && !k.Retired() {
			return nil, fmt.Errorf("%w: keyring key %d is not the last but has no until", ErrInvalid, i)
		}
		if first, _, _ := ParseVerifierKey(keys[0].VerifierKey); v.Name() != first.Name() {
			return nil, fmt.Errorf("%w: keyring key %d is named %q, not as the others", ErrInvalid, i, v.Name())
		}
		if _, dup := r.byHash[v.KeyHash()]; dup {
			return nil, fmt.Errorf("%w: keyring key %d is listed twice", ErrInvalid, i)
		}
		max := int64(0)
		if k.Retired() {
			max = k.MaxSize
			if max <= 0 {
				max = -1 // retired before any entry: it verifies no checkpoint
			}
		}
		r.byHash[v.KeyHash()] = ringVerifier{v, max}
		r.pubs = append(r.pubs, pub)
		if i == len(keys)-1 {
			r.current = v
		}
	}
	return r, nil
}

// Keys are the ring's keys, the current one last.
func (r *Keyring) Keys() []RingKey { return append([]RingKey(nil), r.keys...) }

// Current is the current key's verifier key text.
func (r *Keyring) Current() string { return r.keys[len(r.keys)-1].VerifierKey }

// Name implements note.Verifier: the keys' name.
func (r *Keyring) Name() string { return r.current.Name() }

// KeyHash implements note.Verifier: the current key's.
func (r *Keyring) KeyHash() uint32 { return r.current.KeyHash() }

// Verify implements note.Verifier with the current key.
func (r *Keyring) Verify(msg, sig []byte) bool { return r.current.Verify(msg, sig) }

// Verifier implements note.Verifiers: any key of the ring, bounded by its term.
func (r *Keyring) Verifier(name string, hash uint32) (note.Verifier, error) {
	if v, ok := r.byHash[hash]; ok && v.Name() == name {
		return v, nil
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

// NewKeyringLog returns a log that verifies with every key of the ring.
func NewKeyringLog(r *Keyring) *Log {
	return &Log{origin: r.Name(), verifier: r}
}

// VerifyCertificate checks a certificate as VerifyCertificate does, with whichever key of
// the ring signed it; a retired key's certificate must say it was exported in its term.
func (r *Keyring) VerifyCertificate(envelope, output []byte) (*Statement, error) {
	var last error
	for i, pub := range r.pubs {
		st, err := VerifyCertificate(pub, envelope, output)
		if err != nil {
			last = err
			continue
		}
		k := r.keys[i]
		var pred struct {
			Exported time.Time `json:"exported"`
		}
		if err := json.NewDecoder(bytes.NewReader(st.Predicate)).Decode(&pred); err != nil {
			return nil, fmt.Errorf("%w: certificate predicate: %v", ErrInvalid, err)
		}
		if pred.Exported.Before(k.From) || k.Retired() && pred.Exported.After(k.Until) {
			return nil, fmt.Errorf("%w: the certificate says it was exported at %s, outside the term of key %.16s (%s to %s) that signed it",
				ErrTampered, pred.Exported.UTC().Format(time.RFC3339), k.KeyID, k.From.UTC().Format(time.RFC3339), untilText(k))
		}
		return st, nil
	}
	return nil, last
}

func untilText(k RingKey) string {
	if !k.Retired() {
		return "now"
	}
	return k.Until.UTC().Format(time.RFC3339)
}

// WithKeyring returns a copy of l that verifies with every key of the ring (it still signs,
// if it does, with its own key).
func (l *Log) WithKeyring(r *Keyring) *Log {
	c := *l
	c.verifier = r
	return &c
}
