package he

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// MaxGroups is the largest number of groups one key set and one scorer
// support (lanes <= slots/2, so each packing batch holds at least two rows
// per group).
const MaxGroups = 4096

// SecretKey is the vendor's CKKS secret key. It exists only on the vendor's
// machine: it is produced by GenerateKeys, saved with MarshalBinary, read
// back with UnmarshalSecretKey and used by Decrypt. Its fields are
// unexported and String never prints key material.
type SecretKey struct {
	keyID string
	sk    *rlwe.SecretKey
}

// KeyID identifies the key set this secret key belongs to.
func (k *SecretKey) KeyID() string { return k.keyID }

// String prints only the key ID, so a secret key cannot leak through %v.
func (k *SecretKey) String() string { return "he.SecretKey{key_id=" + k.keyID + "}" }

// GoString is String, for %#v.
func (k *SecretKey) GoString() string { return k.String() }

// PublicBundle is what the vendor uploads: the public key, the
// relinearization key, the Galois keys for exactly the rotations of the
// per-group sum, and the key ID. It never contains the secret key.
type PublicBundle struct {
	keyID string
	lanes int
	pk    *rlwe.PublicKey
	rlk   *rlwe.RelinearizationKey
	gks   []*rlwe.GaloisKey
}

// KeyID identifies the key set.
func (b *PublicBundle) KeyID() string { return b.keyID }

// Lanes is the lane width (a power of two) the Galois keys were made for;
// scorers with up to Lanes groups use it as is, scorers with more groups use
// the next power of two, whose rotations are a subset of these.
func (b *PublicBundle) Lanes() int { return b.lanes }

// Rotations lists the slot rotations the bundle has Galois keys for.
func (b *PublicBundle) Rotations() []int { return sumRotations(b.lanes) }

type bundleHeader struct {
	KeyID     string `json:"key_id"`
	Lanes     int    `json:"lanes"`
	Rotations []int  `json:"rotations"`
	LogN      int    `json:"log_n"`
}

type secretHeader struct {
	KeyID string `json:"key_id"`
}

// GenerateKeys is vendor-side: it creates a fresh key set whose Galois keys
// allow per-group sums for `groups` groups (and any other group count up to
// MaxGroups, see PublicBundle.Lanes). Keep the SecretKey; upload the
// PublicBundle.
func GenerateKeys(groups int) (*SecretKey, *PublicBundle, error) {
	if groups < 1 || groups > MaxGroups {
		return nil, nil, fmt.Errorf("%w: groups must be between 1 and %d, got %d", ErrInvalidInput, MaxGroups, groups)
	}
	params, _, err := Parameters()
	if err != nil {
		return nil, nil, err
	}
	kgen := rlwe.NewKeyGenerator(params)
	sk, pk := kgen.GenKeyPairNew()
	relinLevel := polyLevel
	rlk := kgen.GenRelinearizationKeyNew(sk, rlwe.EvaluationKeyParameters{LevelQ: &relinLevel})
	lanes := lanesFor(groups)
	gks := genGaloisKeys(kgen, params, sk, lanes)
	keyID, err := keyIDOf(pk)
	if err != nil {
		return nil, nil, err
	}
	return &SecretKey{keyID: keyID, sk: sk},
		&PublicBundle{keyID: keyID, lanes: lanes, pk: pk, rlk: rlk, gks: gks}, nil
}

func genGaloisKeys(kgen *rlwe.KeyGenerator, params hefloat.Parameters, sk *rlwe.SecretKey, lanes int) []*rlwe.GaloisKey {
	level := outLevel
	var gks []*rlwe.GaloisKey
	for _, r := range sumRotations(lanes) {
		gks = append(gks, kgen.GenGaloisKeyNew(params.GaloisElement(r), sk, rlwe.EvaluationKeyParameters{LevelQ: &level}))
	}
	return gks
}

// lanesFor returns the next power of two >= groups, at least 1.
func lanesFor(groups int) int {
	l := 1
	for l < groups {
		l <<= 1
	}
	return l
}

// sumRotations returns lanes, 2*lanes, ..., slots/2: the rotations that fold
// every slot s into slot s mod lanes.
func sumRotations(lanes int) []int {
	params, _, err := Parameters()
	if err != nil {
		return nil
	}
	var rots []int
	for r := lanes; r < params.MaxSlots(); r <<= 1 {
		rots = append(rots, r)
	}
	return rots
}

func keyIDOf(pk *rlwe.PublicKey) (string, error) {
	b, err := pk.MarshalBinary()
	if err != nil {
		return "", fmt.Errorf("he: encoding the public key failed: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// MarshalBinary writes the public bundle in the Veil HE envelope.
func (b *PublicBundle) MarshalBinary() ([]byte, error) {
	_, fp, err := Parameters()
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(bundleHeader{KeyID: b.keyID, Lanes: b.lanes, Rotations: b.Rotations(), LogN: logN})
	if err != nil {
		return nil, err
	}
	sections := [][]byte{hdr}
	for _, m := range append([]interface{ MarshalBinary() ([]byte, error) }{b.pk, b.rlk}, galoisMarshalers(b.gks)...) {
		p, err := m.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("he: encoding the public bundle failed: %w", err)
		}
		sections = append(sections, p)
	}
	return sealEnvelope(kindPublicBundle, fp, sections...), nil
}

func galoisMarshalers(gks []*rlwe.GaloisKey) []interface{ MarshalBinary() ([]byte, error) } {
	out := make([]interface{ MarshalBinary() ([]byte, error) }, len(gks))
	for i, g := range gks {
		out[i] = g
	}
	return out
}

// UnmarshalPublicBundle parses a public bundle and checks that it is
// consistent (its key ID matches its public key).
func UnmarshalPublicBundle(blob []byte) (*PublicBundle, error) {
	sections, err := openEnvelope(blob, kindPublicBundle)
	if err != nil {
		return nil, err
	}
	if len(sections) < 3 {
		return nil, fmt.Errorf("%w: public bundle has %d sections, expected at least 3 (header, public key, relinearization key)", ErrCorrupted, len(sections))
	}
	var hdr bundleHeader
	if err := json.Unmarshal(sections[0], &hdr); err != nil {
		return nil, fmt.Errorf("%w: public bundle header is not valid JSON: %v", ErrCorrupted, err)
	}
	if hdr.Lanes < 1 || hdr.Lanes > MaxGroups || lanesFor(hdr.Lanes) != hdr.Lanes {
		return nil, fmt.Errorf("%w: public bundle declares lane width %d, expected a power of two between 1 and %d", ErrCorrupted, hdr.Lanes, MaxGroups)
	}
	b := &PublicBundle{keyID: hdr.KeyID, lanes: hdr.Lanes, pk: new(rlwe.PublicKey), rlk: new(rlwe.RelinearizationKey)}
	if err := b.pk.UnmarshalBinary(sections[1]); err != nil {
		return nil, fmt.Errorf("%w: public key section: %v", ErrCorrupted, err)
	}
	if err := b.rlk.UnmarshalBinary(sections[2]); err != nil {
		return nil, fmt.Errorf("%w: relinearization key section: %v", ErrCorrupted, err)
	}
	for i, s := range sections[3:] {
		gk := new(rlwe.GaloisKey)
		if err := gk.UnmarshalBinary(s); err != nil {
			return nil, fmt.Errorf("%w: Galois key section %d: %v", ErrCorrupted, i, err)
		}
		b.gks = append(b.gks, gk)
	}
	id, err := keyIDOf(b.pk)
	if err != nil {
		return nil, err
	}
	if id != hdr.KeyID {
		return nil, fmt.Errorf("%w: public bundle header says key ID %s but its public key is %s", ErrCorrupted, hdr.KeyID, id)
	}
	return b, nil
}

// checkRotations returns an error naming the first rotation needed to sum
// `lanes` lanes that the bundle has no Galois key for.
func (b *PublicBundle) checkRotations(lanes, groups int) error {
	params, _, err := Parameters()
	if err != nil {
		return err
	}
	have := make(map[uint64]bool, len(b.gks))
	for _, g := range b.gks {
		have[g.GaloisElement] = true
	}
	for _, r := range sumRotations(lanes) {
		if !have[params.GaloisElement(r)] {
			return fmt.Errorf("%w: the public bundle has no Galois key for rotation %d; regenerate keys with groups >= %d and upload the new public bundle", ErrMissingKey, r, groups)
		}
	}
	if b.rlk == nil {
		return fmt.Errorf("%w: the public bundle has no relinearization key; regenerate keys and upload the new public bundle", ErrMissingKey)
	}
	return nil
}

func (b *PublicBundle) evaluationKeys() rlwe.EvaluationKeySet {
	return rlwe.NewMemEvaluationKeySet(b.rlk, b.gks...)
}

// MarshalBinary writes the secret key in the Veil HE envelope. Vendor-side
// only: store the result on the vendor's machine, never upload it.
func (k *SecretKey) MarshalBinary() ([]byte, error) {
	_, fp, err := Parameters()
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(secretHeader{KeyID: k.keyID})
	if err != nil {
		return nil, err
	}
	p, err := k.sk.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("he: encoding the secret key failed: %w", err)
	}
	return sealEnvelope(kindSecretKey, fp, hdr, p), nil
}

// UnmarshalSecretKey parses a secret key written by SecretKey.MarshalBinary.
// Vendor-side only.
func UnmarshalSecretKey(blob []byte) (*SecretKey, error) {
	sections, err := openEnvelope(blob, kindSecretKey)
	if err != nil {
		return nil, err
	}
	if len(sections) != 2 {
		return nil, fmt.Errorf("%w: secret key has %d sections, expected 2", ErrCorrupted, len(sections))
	}
	var hdr secretHeader
	if err := json.Unmarshal(sections[0], &hdr); err != nil {
		return nil, fmt.Errorf("%w: secret key header is not valid JSON: %v", ErrCorrupted, err)
	}
	sk := new(rlwe.SecretKey)
	if err := sk.UnmarshalBinary(sections[1]); err != nil {
		return nil, fmt.Errorf("%w: secret key section: %v", ErrCorrupted, err)
	}
	return &SecretKey{keyID: hdr.KeyID, sk: sk}, nil
}

// PeekBundle checks a public bundle's envelope and reads its key ID and lane width without
// parsing a key: safe on untrusted input of any shape. UnmarshalPublicBundle does the full
// parse.
func PeekBundle(blob []byte) (keyID string, lanes int, err error) {
	sections, err := openEnvelope(blob, kindPublicBundle)
	if err != nil {
		return "", 0, err
	}
	if len(sections) < 3 {
		return "", 0, fmt.Errorf("%w: public bundle has %d sections, expected at least 3 (header, public key, relinearization key)", ErrCorrupted, len(sections))
	}
	var hdr bundleHeader
	if err := json.Unmarshal(sections[0], &hdr); err != nil {
		return "", 0, fmt.Errorf("%w: public bundle header is not valid JSON: %v", ErrCorrupted, err)
	}
	if hdr.Lanes < 1 || hdr.Lanes > MaxGroups || lanesFor(hdr.Lanes) != hdr.Lanes {
		return "", 0, fmt.Errorf("%w: public bundle declares lane width %d, expected a power of two between 1 and %d", ErrCorrupted, hdr.Lanes, MaxGroups)
	}
	return hdr.KeyID, hdr.Lanes, nil
}
