package he

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/bits"
	"strings"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// A prepared model is the lane averages R(bias), R(w_j) of a logistic model's ciphertexts
// (see Scorer), computed by the platform once per uploaded model instead of once per job
// (issue #18). It is made only by the platform (PrepareModel, in a sandbox), never by a
// vendor, and is bound by digest to the exact model and public bundle blobs it was computed
// from and to the lane width it averages over: a scorer takes it (NewPreparedScorer) only
// for that model, bundle and lane width, and recomputes the averages otherwise.
//
// It adds nothing to what a job may compute: it holds exactly what the scorer would compute
// itself from the same model and keys (the same code, bit for bit), so a crafted model is
// neutralised as before. The trust it needs is that of the place it is stored: the platform
// keeps it outside the vendor's uploads, and its envelope kind is one no upload accepts.

// BlobPreparedModel is what BlobKind calls a prepared model.
const BlobPreparedModel = "prepared model"

// PreparedBinding is what a prepared model was computed from.
type PreparedBinding struct {
	// Model and Bundle are the digests (Digest) of the encrypted model and public bundle blobs.
	Model  string `json:"model"`
	Bundle string `json:"bundle"`
	KeyID  string `json:"key_id"`
	// Lanes is the lane width averaged over: a job of at most Lanes groups with this bundle.
	Lanes int `json:"lanes"`
	// Weights is the number of weight ciphertexts (features).
	Weights int `json:"weights"`
}

// PreparedModel is the lane-averaged bias and weights of one logistic model.
type PreparedModel struct {
	binding PreparedBinding
	bias    *rlwe.Ciphertext
	weights []*rlwe.Ciphertext
}

// Binding returns what the prepared model was computed from.
func (p *PreparedModel) Binding() PreparedBinding { return p.binding }

// Digest is the name the platform gives a blob: "sha256:" and the hex SHA-256 of its bytes.
func Digest(blob []byte) string {
	sum := sha256.Sum256(blob)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CheckBinding returns an error unless the prepared model was computed from the model and
// bundle blobs with these digests.
func (p *PreparedModel) CheckBinding(modelDigest, bundleDigest string) error {
	if p.binding.Model != modelDigest || p.binding.Bundle != bundleDigest {
		return fmt.Errorf("%w: the prepared model was computed from model %s and bundle %s, not from model %s and bundle %s",
			ErrOtherKey, p.binding.Model, p.binding.Bundle, modelDigest, bundleDigest)
	}
	return nil
}

// PrepareModel computes the lane averages of a logistic model's ciphertexts over the public
// bundle's lane width, the layout of every job of at most pub.Lanes() groups. modelDigest
// and bundleDigest are the digests of the blobs m and pub were read from (the caller read
// them; Digest).
func PrepareModel(pub *PublicBundle, m *EncryptedModel, modelDigest, bundleDigest string) (*PreparedModel, error) {
	if pub == nil || m == nil {
		return nil, fmt.Errorf("%w: PrepareModel needs a public bundle and an encrypted model", ErrInvalidInput)
	}
	if m.header.Kind != KindLogistic {
		return nil, fmt.Errorf("%w: only a logistic model is averaged over its lanes; a %s model needs no preparation", ErrInvalidInput, m.header.Kind)
	}
	if m.header.KeyID != pub.keyID {
		return nil, fmt.Errorf("%w: the encrypted model was made for key ID %s but the public bundle is key ID %s", ErrOtherKey, m.header.KeyID, pub.keyID)
	}
	if !validDigest(modelDigest) || !validDigest(bundleDigest) {
		return nil, fmt.Errorf("%w: PrepareModel needs the blobs' digests (sha256:<64 hex digits>)", ErrInvalidInput)
	}
	params, _, err := Parameters()
	if err != nil {
		return nil, err
	}
	lanes := pub.lanes
	if err := pub.checkRotations(lanes, lanes); err != nil {
		return nil, err
	}
	r := startReplication(params, pub.evaluationKeys(), m, lanes, workerCount())
	if err := r.wait(); err != nil {
		return nil, err
	}
	return &PreparedModel{
		binding: PreparedBinding{Model: modelDigest, Bundle: bundleDigest, KeyID: pub.keyID, Lanes: lanes, Weights: len(m.weights)},
		bias:    r.bias, weights: r.weights,
	}, nil
}

// preparedLogScale is the scale of a lane average over `lanes` lanes: the model's 2^46
// times the n = slots/lanes slots summed (see laneAverage).
func preparedLogScale(lanes int) int {
	params, _, _ := Parameters()
	return logDefaultScale + bits.TrailingZeros(uint(params.MaxSlots()/lanes))
}

// MarshalBinary writes the prepared model in the Veil HE envelope.
func (p *PreparedModel) MarshalBinary() ([]byte, error) {
	_, fp, err := Parameters()
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(p.binding)
	if err != nil {
		return nil, err
	}
	sections := [][]byte{hdr}
	for _, ct := range append([]*rlwe.Ciphertext{p.bias}, p.weights...) {
		b, err := ct.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("he: encoding the prepared model failed: %w", err)
		}
		sections = append(sections, b)
	}
	return sealEnvelope(kindPreparedModel, fp, sections...), nil
}

// UnmarshalPreparedModel parses and checks a prepared model: its binding, and each
// ciphertext against the exact layout MarshalBinary writes (level 7, the scale of its lane
// width), with reduced coefficients.
func UnmarshalPreparedModel(blob []byte) (*PreparedModel, error) {
	sections, err := openEnvelope(blob, kindPreparedModel)
	if err != nil {
		return nil, err
	}
	b, err := readPreparedBinding(sections)
	if err != nil {
		return nil, err
	}
	logScale := preparedLogScale(b.Lanes)
	cts := make([]*rlwe.Ciphertext, len(sections)-1)
	for i, s := range sections[1:] {
		if cts[i], err = unmarshalCiphertext(s, topLevel, logScale, fmt.Sprintf("prepared ciphertext %d", i)); err != nil {
			return nil, err
		}
	}
	return &PreparedModel{binding: b, bias: cts[0], weights: cts[1:]}, nil
}

// PeekPrepared checks a prepared model's envelope (magic, length, checksum, kind,
// parameters) and reads its binding, without parsing a ciphertext.
func PeekPrepared(blob []byte) (PreparedBinding, error) {
	sections, err := openEnvelope(blob, kindPreparedModel)
	if err != nil {
		return PreparedBinding{}, err
	}
	return readPreparedBinding(sections)
}

func readPreparedBinding(sections [][]byte) (PreparedBinding, error) {
	var b PreparedBinding
	h, err := headerSection(sections, kindPreparedModel)
	if err != nil {
		return b, err
	}
	dec := json.NewDecoder(bytes.NewReader(h))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("%w: prepared model header is not valid JSON: %v", ErrCorrupted, err)
	}
	params, _, err := Parameters()
	if err != nil {
		return b, err
	}
	switch {
	case !validDigest(b.Model) || !validDigest(b.Bundle) || b.KeyID == "":
		return b, fmt.Errorf("%w: prepared model header lacks the model's or the bundle's digest or the key ID", ErrCorrupted)
	case b.Lanes < 1 || lanesFor(b.Lanes) != b.Lanes || b.Lanes > params.MaxSlots()/2:
		return b, fmt.Errorf("%w: prepared model declares %d lanes", ErrCorrupted, b.Lanes)
	case b.Weights < 1 || b.Weights > MaxFeatures || len(sections) != b.Weights+2:
		return b, fmt.Errorf("%w: prepared model declares %d weights and has %d sections", ErrCorrupted, b.Weights, len(sections))
	}
	return b, nil
}

func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// BlobHeader is what PeekPrefix reads from the first bytes of a blob.
type BlobHeader struct {
	Kind  string // one of the Blob* constants
	KeyID string
	// Model is an encrypted model's kind (KindLinear, KindLogistic); empty for other blobs.
	Model string
	// Lanes is a public bundle's lane width; 0 for other blobs.
	Lanes int
}

// PeekPrefix reads the kind and key ID from the first bytes of a blob (its envelope header
// and JSON header section), without the rest and without checking the checksum: for
// finding which stored blobs belong to one key set. Every claim is checked again by the
// Unmarshal functions before the blob is used. It returns an error if the header section
// does not fit in prefix.
func PeekPrefix(prefix []byte) (BlobHeader, error) {
	kind, err := BlobKind(prefix)
	if err != nil {
		return BlobHeader{}, err
	}
	if err := checkVersion(prefix[6], blobKind(prefix[7])); err != nil {
		return BlobHeader{}, err
	}
	if err := checkFingerprint(prefix[8:40], blobKind(prefix[7])); err != nil {
		return BlobHeader{}, err
	}
	if len(prefix) < headerSize+8 {
		return BlobHeader{}, fmt.Errorf("%w: no header section in the first %d bytes", ErrTruncated, len(prefix))
	}
	n := binary.BigEndian.Uint64(prefix[headerSize : headerSize+8])
	if n > maxHeaderBytes || uint64(len(prefix)-headerSize-8) < n {
		return BlobHeader{}, fmt.Errorf("%w: the header section (%d bytes) is not within the first %d bytes", ErrTruncated, n, len(prefix))
	}
	var h struct {
		KeyID string `json:"key_id"`
		Kind  string `json:"kind"`
		Lanes int    `json:"lanes"`
	}
	if err := json.Unmarshal(prefix[headerSize+8:headerSize+8+int(n)], &h); err != nil {
		return BlobHeader{}, fmt.Errorf("%w: the header is not valid JSON: %v", ErrCorrupted, err)
	}
	out := BlobHeader{Kind: kind, KeyID: h.KeyID}
	switch kind {
	case BlobEncryptedModel:
		out.Model = h.Kind
	case BlobPublicBundle:
		out.Lanes = h.Lanes
	}
	return out, nil
}
