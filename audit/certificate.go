package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// Certificate formats: an in-toto Statement v1 (https://github.com/in-toto/attestation,
// spec/v1/statement.md) in a DSSE envelope (https://github.com/secure-systems-lab/dsse,
// envelope.md and protocol.md), signed with ed25519.
const (
	StatementType = "https://in-toto.io/Statement/v1"
	PredicateType = "https://veil.dev/provenance/v1"
	PayloadType   = "application/vnd.in-toto+json"
)

// maxEnvelopeSize bounds a certificate read from untrusted input.
const maxEnvelopeSize = 4 << 20

// maxSignatures bounds the ed25519 verifications one envelope can cost.
const maxSignatures = 16

// Statement is an in-toto v1 statement about one export.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject names an artifact and its digests (lowercase hex, by algorithm).
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Envelope is a DSSE envelope. Payload is base64 in JSON.
type Envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     []byte      `json:"payload"`
	Signatures  []Signature `json:"signatures"`
}

// Signature is one DSSE signature. KeyID is a hint only (it is not signed): the hex
// SHA-256 of the raw ed25519 public key.
type Signature struct {
	KeyID string `json:"keyid"`
	Sig   []byte `json:"sig"`
}

// pae is DSSE's pre-authentication encoding:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in ASCII decimal.
func pae(payloadType string, body []byte) []byte {
	b := make([]byte, 0, 32+len(payloadType)+len(body))
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(payloadType)), 10)
	b = append(b, ' ')
	b = append(b, payloadType...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, ' ')
	return append(b, body...)
}

// KeyID is the DSSE key id of an ed25519 public key: hex SHA-256 of its 32 bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// SignCertificate returns a DSSE envelope (JSON) holding an in-toto statement that output,
// named subjectName, has the provenance predicate (which must marshal to a JSON object).
func SignCertificate(k *Key, subjectName string, output []byte, predicate any) ([]byte, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: sign certificate: no key", ErrInvalid)
	}
	if subjectName == "" {
		return nil, fmt.Errorf("%w: sign certificate: the subject has no name", ErrInvalid)
	}
	pred, err := json.Marshal(predicate)
	if err != nil {
		return nil, fmt.Errorf("%w: sign certificate %s: encode predicate: %v", ErrInvalid, subjectName, err)
	}
	if len(pred) == 0 || pred[0] != '{' {
		return nil, fmt.Errorf("%w: sign certificate %s: the predicate must be a JSON object", ErrInvalid, subjectName)
	}
	sum := sha256.Sum256(output)
	st := Statement{
		Type:          StatementType,
		Subject:       []Subject{{Name: subjectName, Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}}},
		PredicateType: PredicateType,
		Predicate:     pred,
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("sign certificate %s: %w", subjectName, err)
	}
	env := Envelope{
		PayloadType: PayloadType,
		Payload:     payload,
		Signatures:  []Signature{{KeyID: KeyID(k.pub), Sig: ed25519.Sign(k.priv, pae(PayloadType, payload))}},
	}
	return json.Marshal(env)
}

// VerifyCertificate checks that envelope is signed by pub, holds an in-toto v1 statement of
// Veil provenance with exactly one subject, and that the subject's sha256 digest is that of
// output. It returns the statement. Malformed certificates are ErrInvalid; a bad signature
// or a digest that does not match output is ErrTampered.
func VerifyCertificate(pub ed25519.PublicKey, envelope []byte, output []byte) (*Statement, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: certificate key has %d bytes, want %d", ErrInvalid, len(pub), ed25519.PublicKeySize)
	}
	if len(envelope) > maxEnvelopeSize {
		return nil, fmt.Errorf("%w: certificate is %d bytes, more than %d", ErrInvalid, len(envelope), maxEnvelopeSize)
	}
	var env Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("%w: certificate is not a DSSE envelope: %v", ErrInvalid, err)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("%w: certificate payload type is %.80q, want %q", ErrInvalid, env.PayloadType, PayloadType)
	}
	if len(env.Signatures) == 0 {
		return nil, fmt.Errorf("%w: certificate is not signed", ErrInvalid)
	}
	if len(env.Signatures) > maxSignatures {
		return nil, fmt.Errorf("%w: certificate has %d signatures, more than %d", ErrInvalid, len(env.Signatures), maxSignatures)
	}
	msg := pae(env.PayloadType, env.Payload)
	signed := false
	for _, s := range env.Signatures {
		if len(s.Sig) == ed25519.SignatureSize && ed25519.Verify(pub, msg, s.Sig) {
			signed = true
			break
		}
	}
	if !signed {
		return nil, fmt.Errorf("%w: certificate signature does not verify with key %s", ErrTampered, KeyID(pub)[:16])
	}
	// Signed by the platform, so the payload is ours; still check it is what we sign.
	dec := json.NewDecoder(bytes.NewReader(env.Payload))
	dec.DisallowUnknownFields()
	var st Statement
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: certificate payload is not an in-toto statement", ErrInvalid)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: certificate payload is not an in-toto statement", ErrInvalid)
	}
	if st.Type != StatementType {
		return nil, fmt.Errorf("%w: certificate statement type is %.80q, want %q", ErrInvalid, st.Type, StatementType)
	}
	if st.PredicateType != PredicateType {
		return nil, fmt.Errorf("%w: certificate predicate type is %.80q, want %q", ErrInvalid, st.PredicateType, PredicateType)
	}
	if len(st.Predicate) == 0 || st.Predicate[0] != '{' {
		return nil, fmt.Errorf("%w: certificate predicate is not a JSON object", ErrInvalid)
	}
	if len(st.Subject) != 1 {
		return nil, fmt.Errorf("%w: certificate has %d subjects, want 1", ErrInvalid, len(st.Subject))
	}
	want, ok := st.Subject[0].Digest["sha256"]
	if !ok {
		return nil, fmt.Errorf("%w: certificate subject has no sha256 digest", ErrInvalid)
	}
	sum := sha256.Sum256(output)
	if want != hex.EncodeToString(sum[:]) {
		return nil, fmt.Errorf("%w: the output's sha256 digest does not match the certificate's subject %.200q", ErrTampered, st.Subject[0].Name)
	}
	return &st, nil
}
