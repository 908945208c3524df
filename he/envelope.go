package he

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// Envelope layout (all integers big-endian):
//
//	offset  size  field
//	0       6     magic "VEILHE"
//	6       1     version (2; see envelopeVersion)
//	7       1     kind (see blobKind)
//	8       32    parameter fingerprint (SHA-256 of the lattigo parameters)
//	40      8     payload length L
//	48      L     payload: a sequence of sections, each a uint64 length
//	              followed by that many bytes
//	48+L    32    SHA-256 of bytes [0, 48+L)
//
// Version 2 (this one): conjugate-invariant parameters, rotation keys at the top level with
// their uniform halves derived from a seed, so that the platform can average every
// encrypted weight over its lane itself (issue #12 item 9). Version 1 blobs are refused with
// a request to regenerate the keys.
const (
	envelopeVersion = 2
	headerSize      = 48
	checksumSize    = sha256.Size
	maxSections     = 1 << 12
	// maxHeaderBytes bounds the JSON header section of every blob (a model header with
	// MaxFeatures features is a few tens of KiB).
	maxHeaderBytes = 1 << 20
)

var magic = [6]byte{'V', 'E', 'I', 'L', 'H', 'E'}

// Sentinel errors; every error returned by the parsers wraps one of them
// (test with errors.Is) and adds what exactly was wrong.
var (
	ErrNotVeilHE       = errors.New("not a Veil HE blob")
	ErrVersion         = errors.New("unsupported Veil HE blob version")
	ErrTruncated       = errors.New("truncated")
	ErrCorrupted       = errors.New("corrupted")
	ErrWrongKind       = errors.New("wrong kind of Veil HE blob")
	ErrOtherParameters = errors.New("made under other parameters")
	ErrOtherKey        = errors.New("made under another key")
	ErrMissingKey      = errors.New("missing evaluation key")
	ErrInvalidModel    = errors.New("invalid model")
	ErrInvalidInput    = errors.New("invalid input")
	ErrState           = errors.New("invalid call sequence")
)

type blobKind byte

const (
	kindPublicBundle   blobKind = 1
	kindSecretKey      blobKind = 2
	kindEncryptedModel blobKind = 3
	kindEncryptedSums  blobKind = 4
	kindPreparedModel  blobKind = 5 // platform-made only (prepared.go); no upload accepts it
)

func (k blobKind) String() string {
	switch k {
	case kindPublicBundle:
		return "public bundle"
	case kindSecretKey:
		return "secret key"
	case kindEncryptedModel:
		return "encrypted model"
	case kindEncryptedSums:
		return "encrypted sums"
	case kindPreparedModel:
		return BlobPreparedModel
	}
	return fmt.Sprintf("unknown kind %d", byte(k))
}

// sealEnvelope wraps sections in the versioned, checksummed envelope.
func sealEnvelope(kind blobKind, fp [32]byte, sections ...[]byte) []byte {
	payloadLen := 0
	for _, s := range sections {
		payloadLen += 8 + len(s)
	}
	out := make([]byte, 0, headerSize+payloadLen+checksumSize)
	out = append(out, magic[:]...)
	out = append(out, envelopeVersion, byte(kind))
	out = append(out, fp[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(payloadLen))
	for _, s := range sections {
		out = binary.BigEndian.AppendUint64(out, uint64(len(s)))
		out = append(out, s...)
	}
	sum := sha256.Sum256(out)
	return append(out, sum[:]...)
}

// openEnvelope checks magic, version, length, checksum, kind and parameter
// fingerprint, in that order, and returns the payload sections.
func openEnvelope(blob []byte, want blobKind) ([][]byte, error) {
	return openEnvelopeDigest(blob, want, nil)
}

// openEnvelopeDigest is openEnvelope that also sets *digest (when not nil) to the blob's
// Digest, from the same pass of SHA-256 as the checksum: the checksum is the hash of all but
// the last 32 bytes, the digest that of the whole blob.
func openEnvelopeDigest(blob []byte, want blobKind, digest *string) ([][]byte, error) {
	if len(blob) < len(magic) || !bytes.Equal(blob[:len(magic)], magic[:]) {
		return nil, fmt.Errorf("%w (the first bytes are not %q); expected a %s written by this package", ErrNotVeilHE, magic[:], want)
	}
	if len(blob) < headerSize {
		return nil, fmt.Errorf("%w: expected at least %d bytes, got %d", ErrTruncated, headerSize+checksumSize, len(blob))
	}
	if err := checkVersion(blob[6], want); err != nil {
		return nil, err
	}
	payloadLen := binary.BigEndian.Uint64(blob[40:48])
	if payloadLen > uint64(len(blob)) {
		return nil, fmt.Errorf("%w: expected %d bytes, got %d", ErrTruncated, uint64(headerSize+checksumSize)+payloadLen, len(blob))
	}
	total := headerSize + int(payloadLen) + checksumSize
	if len(blob) < total {
		return nil, fmt.Errorf("%w: expected %d bytes, got %d", ErrTruncated, total, len(blob))
	}
	if len(blob) > total {
		return nil, fmt.Errorf("%w: %d unexpected bytes after the end of the blob", ErrCorrupted, len(blob)-total)
	}
	h := sha256.New()
	h.Write(blob[:total-checksumSize])
	sum := h.Sum(nil)
	if digest != nil {
		h.Write(blob[total-checksumSize:])
		*digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	if !bytes.Equal(sum, blob[total-checksumSize:]) {
		return nil, fmt.Errorf("%w: checksum mismatch; the %s was damaged in transit, copy it again", ErrCorrupted, want)
	}
	if got := blobKind(blob[7]); got != want {
		return nil, wrongKindError(got, want)
	}
	if err := checkFingerprint(blob[8:40], want); err != nil {
		return nil, err
	}
	return splitSections(blob[headerSize : headerSize+int(payloadLen)])
}

func checkVersion(v byte, want blobKind) error {
	switch {
	case v == envelopeVersion:
		return nil
	case v < envelopeVersion:
		return fmt.Errorf("%w %d: this %s was written by an older Veil, whose keys cannot make the encrypted weights uniform (format %d is needed); run veil he keygen again, upload the new public.bundle and encrypt the model again with it",
			ErrVersion, v, want, envelopeVersion)
	}
	return fmt.Errorf("%w %d: this build reads version %d; use a matching Veil release", ErrVersion, v, envelopeVersion)
}

// headerSection returns the JSON header section, refusing one larger than maxHeaderBytes
// before anything parses it.
func headerSection(sections [][]byte, what blobKind) ([]byte, error) {
	if len(sections) == 0 {
		return nil, fmt.Errorf("%w: the %s has no header", ErrCorrupted, what)
	}
	if len(sections[0]) > maxHeaderBytes {
		return nil, fmt.Errorf("%w: the %s header has %d bytes, more than %d", ErrCorrupted, what, len(sections[0]), maxHeaderBytes)
	}
	return sections[0], nil
}

func wrongKindError(got, want blobKind) error {
	if got == kindSecretKey {
		return fmt.Errorf("%w: this is a secret key; upload the public bundle instead (the secret key must stay on the vendor's machine)", ErrWrongKind)
	}
	return fmt.Errorf("%w: this is a %s, expected a %s", ErrWrongKind, got, want)
}

func checkFingerprint(got []byte, what blobKind) error {
	_, fp, err := Parameters()
	if err != nil {
		return err
	}
	if !bytes.Equal(got, fp[:]) {
		var g [32]byte
		copy(g[:], got)
		return fmt.Errorf("%s %w (fingerprint %s, expected %s); regenerate it with this Veil release", what, ErrOtherParameters, shortHex(g), shortHex(fp))
	}
	return nil
}

func splitSections(p []byte) ([][]byte, error) {
	var out [][]byte
	for len(p) > 0 {
		if len(out) == maxSections {
			return nil, fmt.Errorf("%w: more than %d sections", ErrCorrupted, maxSections)
		}
		if len(p) < 8 {
			return nil, fmt.Errorf("%w: section header cut short (%d bytes left)", ErrCorrupted, len(p))
		}
		n := binary.BigEndian.Uint64(p[:8])
		p = p[8:]
		if n > uint64(len(p)) {
			return nil, fmt.Errorf("%w: section %d declares %d bytes but only %d remain", ErrCorrupted, len(out), n, len(p))
		}
		out = append(out, p[:n])
		p = p[n:]
	}
	return out, nil
}

// Blob kinds as BlobKind names them.
const (
	BlobPublicBundle   = "public bundle"
	BlobSecretKey      = "secret key"
	BlobEncryptedModel = "encrypted model"
	BlobEncryptedSums  = "encrypted sums"
)

// BlobKind reads only the envelope's header and names what the blob claims to be (one of the
// Blob* constants). It parses no key material: the platform uses it to refuse a secret key
// before anything else touches it. The claim is checked fully by the Unmarshal functions.
func BlobKind(blob []byte) (string, error) {
	if len(blob) < len(magic) || !bytes.Equal(blob[:len(magic)], magic[:]) {
		return "", fmt.Errorf("%w (the first bytes are not %q)", ErrNotVeilHE, magic[:])
	}
	if len(blob) < headerSize {
		return "", fmt.Errorf("%w: expected at least %d bytes, got %d", ErrTruncated, headerSize+checksumSize, len(blob))
	}
	switch k := blobKind(blob[7]); k {
	case kindPublicBundle, kindSecretKey, kindEncryptedModel, kindEncryptedSums, kindPreparedModel:
		return k.String(), nil
	default:
		return "", fmt.Errorf("%w: %s", ErrCorrupted, k)
	}
}
