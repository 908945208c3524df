package he

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/utils/structs"
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
// per-group sum (which are also the rotations that average a weight over its
// lane), and the key ID. It never contains the secret key.
//
// The Galois keys are made at the top level, so that the platform can rotate
// the vendor's weight ciphertexts before using them. Their uniform halves
// (the "a" of each (b, a) pair) are not sent: they are expanded from a public
// seed, as a common reference string (mhe.GaloisKeyGenProtocol with one
// party), which halves the bundle and leaves the vendor no choice of them.
type PublicBundle struct {
	keyID string
	lanes int
	seed  [32]byte
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
	// Seed expands into the uniform halves of the Galois keys (hex, 32 bytes; see crs).
	Seed string `json:"galois_seed"`
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
	sk := kgen.GenSecretKeyNew()
	pk := newPublicKey(params)
	kgen.GenPublicKey(sk, pk)
	rlk := kgen.GenRelinearizationKeyNew(sk, relinKeyParams())
	lanes := lanesFor(groups)
	b := &PublicBundle{lanes: lanes, pk: pk, rlk: rlk}
	if _, err := rand.Read(b.seed[:]); err != nil {
		return nil, nil, fmt.Errorf("he: key generation needs a random source: %w", err)
	}
	if b.gks, err = genGaloisKeys(params, sk, b.seed, sumRotations(lanes)); err != nil {
		return nil, nil, err
	}
	if b.keyID, err = keyIDOf(pk); err != nil {
		return nil, nil, err
	}
	return &SecretKey{keyID: b.keyID, sk: sk}, b, nil
}

// Key moduli (see Parameters): no key is an RLWE sample modulo the whole QP, whose 484
// bits the security bound would not allow. The public key and the Galois keys live modulo
// Q7*p0 (433 bits), the relinearization key modulo Q6*p0*p1 (437 bits), where the second
// special prime halves the digits of the key switches the sigmoid spends most of its time
// in.

// newPublicKey allocates a public key modulo Q7*p0.
func newPublicKey(params hefloat.Parameters) *rlwe.PublicKey {
	return &rlwe.PublicKey{Value: rlwe.NewVectorQP(params, 2, params.MaxLevelQ(), 0)}
}

// galoisKeyParams: every Galois key is made at the top level with the first special prime.
func galoisKeyParams() rlwe.EvaluationKeyParameters {
	level, levelP := topLevel, 0
	return rlwe.EvaluationKeyParameters{LevelQ: &level, LevelP: &levelP}
}

// relinKeyParams: the relinearization key is made at the sigmoid's top level with both
// special primes.
func relinKeyParams() rlwe.EvaluationKeyParameters {
	level, levelP := polyLevel, 1
	return rlwe.EvaluationKeyParameters{LevelQ: &level, LevelP: &levelP}
}

// genGaloisKeys makes the keys for rots, in order, their uniform halves drawn in that order
// from the keyed PRNG of seed.
func genGaloisKeys(params hefloat.Parameters, sk *rlwe.SecretKey, seed [32]byte, rots []int) ([]*rlwe.GaloisKey, error) {
	crs, err := newCRS(seed)
	if err != nil {
		return nil, err
	}
	proto := mhe.NewGaloisKeyGenProtocol(params)
	evk := galoisKeyParams()
	gks := make([]*rlwe.GaloisKey, len(rots))
	for i, r := range rots {
		crp := proto.SampleCRP(crs, evk)
		share := proto.AllocateShare(evk)
		if err := proto.GenShare(sk, params.GaloisElement(r), crp, &share); err != nil {
			return nil, fmt.Errorf("he: Galois key generation failed: %w", err)
		}
		gks[i] = rlwe.NewGaloisKey(params, evk)
		if err := proto.GenGaloisKey(share, crp, gks[i]); err != nil {
			return nil, fmt.Errorf("he: Galois key generation failed: %w", err)
		}
	}
	return gks, nil
}

// newCRS is the common reference string of a key set's Galois keys: the AES-256-CTR
// keystream of the seed (zero IV), read by lattigo's uniform sampler. A keyed stream cipher
// is a pseudorandom generator; AES-NI expands a 128-lane bundle's 70 MB of uniform
// coefficients in tens of milliseconds, where lattigo's blake2b XOF (sampling.KeyedPRNG)
// took half a second of every job.
func newCRS(seed [32]byte) (io.Reader, error) {
	block, err := aes.NewCipher(seed[:])
	if err != nil {
		return nil, fmt.Errorf("he: Galois key seed: %w", err)
	}
	return &keystream{cipher.NewCTR(block, make([]byte, aes.BlockSize))}, nil
}

type keystream struct{ s cipher.Stream }

func (k *keystream) Read(p []byte) (int, error) {
	clear(p)
	k.s.XORKeyStream(p, p)
	return len(p), nil
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

// MarshalBinary writes the public bundle in the Veil HE envelope: header, public key,
// relinearization key, then the b halves of the Galois keys in the order of Rotations.
func (b *PublicBundle) MarshalBinary() ([]byte, error) {
	_, fp, err := Parameters()
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(bundleHeader{KeyID: b.keyID, Lanes: b.lanes, Rotations: b.Rotations(), LogN: logN, Seed: hex.EncodeToString(b.seed[:])})
	if err != nil {
		return nil, err
	}
	sections := [][]byte{hdr}
	for _, m := range []marshaler{b.pk, b.rlk} {
		p, err := m.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("he: encoding the public bundle failed: %w", err)
		}
		sections = append(sections, p)
	}
	for _, gk := range b.gks {
		p, err := galoisShareOf(gk).MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("he: encoding the public bundle failed: %w", err)
		}
		sections = append(sections, p)
	}
	return sealEnvelope(kindPublicBundle, fp, sections...), nil
}

// galoisShareOf is the b half of gk as a one-party mhe share (it aliases gk).
func galoisShareOf(gk *rlwe.GaloisKey) *mhe.GaloisKeyGenShare {
	m := make(structs.Matrix[rlwe.VectorQP], len(gk.Value))
	for i, row := range gk.Value {
		m[i] = make([]rlwe.VectorQP, len(row))
		for j, v := range row {
			m[i][j] = rlwe.VectorQP{v[0]}
		}
	}
	return &mhe.GaloisKeyGenShare{GaloisElement: gk.GaloisElement,
		EvaluationKeyGenShare: mhe.EvaluationKeyGenShare{GadgetCiphertext: rlwe.GadgetCiphertext{BaseTwoDecomposition: gk.BaseTwoDecomposition, Value: m}}}
}

// readBundleHeader checks the header of a public bundle: a lane width the package
// supports, exactly the rotations that lane width needs, a 32-byte seed, and one section
// per key.
func readBundleHeader(sections [][]byte) (bundleHeader, [32]byte, error) {
	var hdr bundleHeader
	var seed [32]byte
	h, err := headerSection(sections, kindPublicBundle)
	if err != nil {
		return hdr, seed, err
	}
	if err := json.Unmarshal(h, &hdr); err != nil {
		return hdr, seed, fmt.Errorf("%w: public bundle header is not valid JSON: %v", ErrCorrupted, err)
	}
	if hdr.Lanes < 1 || hdr.Lanes > MaxGroups || lanesFor(hdr.Lanes) != hdr.Lanes {
		return hdr, seed, fmt.Errorf("%w: public bundle declares lane width %d, expected a power of two between 1 and %d", ErrCorrupted, hdr.Lanes, MaxGroups)
	}
	if want := sumRotations(hdr.Lanes); !slices.Equal(hdr.Rotations, want) {
		return hdr, seed, fmt.Errorf("%w: public bundle for lane width %d lists rotations %v, expected %v", ErrCorrupted, hdr.Lanes, hdr.Rotations, want)
	}
	if s, err := hex.DecodeString(hdr.Seed); err != nil || len(s) != len(seed) {
		return hdr, seed, fmt.Errorf("%w: public bundle's Galois key seed is not %d bytes of hex", ErrCorrupted, len(seed))
	} else {
		copy(seed[:], s)
	}
	if want := 3 + len(hdr.Rotations); len(sections) != want {
		return hdr, seed, fmt.Errorf("%w: public bundle has %d sections, expected %d (header, public key, relinearization key and one Galois key per rotation)", ErrCorrupted, len(sections), want)
	}
	return hdr, seed, nil
}

// UnmarshalPublicBundle parses a public bundle and checks that it is
// consistent (its key ID matches its public key). Every key section must have exactly the
// layout this package writes, and every coefficient must be reduced, before it is used.
func UnmarshalPublicBundle(blob []byte) (*PublicBundle, error) {
	return unmarshalPublicBundle(blob, nil)
}

// UnmarshalPublicBundleDigest is UnmarshalPublicBundle that also returns the blob's Digest,
// hashing the blob once for both (the bundle is tens of MB).
func UnmarshalPublicBundleDigest(blob []byte) (*PublicBundle, string, error) {
	var digest string
	b, err := unmarshalPublicBundle(blob, &digest)
	return b, digest, err
}

func unmarshalPublicBundle(blob []byte, digest *string) (*PublicBundle, error) {
	sections, err := openEnvelopeDigest(blob, kindPublicBundle, digest)
	if err != nil {
		return nil, err
	}
	hdr, seed, err := readBundleHeader(sections)
	if err != nil {
		return nil, err
	}
	params, _, err := Parameters()
	if err != nil {
		return nil, err
	}
	q, p := params.Q(), params.P()
	b := &PublicBundle{keyID: hdr.KeyID, lanes: hdr.Lanes, seed: seed}
	if b.pk, err = parsePublicKey(sections[1]); err != nil {
		return nil, err
	}
	if b.rlk, err = parseRelinKey(sections[2]); err != nil {
		return nil, err
	}
	gl, err := galoisShareLayout()
	if err != nil {
		return nil, err
	}
	crs, err := newCRS(seed)
	if err != nil {
		return nil, err
	}
	proto := mhe.NewGaloisKeyGenProtocol(params)
	evk := galoisKeyParams()
	for i, s := range sections[3:] {
		rot := hdr.Rotations[i]
		if !gl.fits(s) {
			return nil, fmt.Errorf("%w: Galois key section %d (rotation %d) is not a top-level key share as veil he keygen writes it; run veil he keygen again", ErrCorrupted, i, rot)
		}
		share := new(mhe.GaloisKeyGenShare)
		if err := share.UnmarshalBinary(s); err != nil {
			return nil, fmt.Errorf("%w: Galois key section %d: %v", ErrCorrupted, i, err)
		}
		if share.GaloisElement != params.GaloisElement(rot) {
			return nil, fmt.Errorf("%w: Galois key section %d is not the key for rotation %d", ErrCorrupted, i, rot)
		}
		if !checkReducedGadget(&share.GadgetCiphertext, q, p) {
			return nil, fmt.Errorf("%w: Galois key section %d has coefficients out of range", ErrCorrupted, i)
		}
		crp := proto.SampleCRP(crs, evk)
		gk := rlwe.NewGaloisKey(params, evk)
		if err := proto.GenGaloisKey(*share, crp, gk); err != nil {
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

func parsePublicKey(s []byte) (*rlwe.PublicKey, error) {
	l, err := layoutFor("public key", func() ([]byte, []byte, error) {
		params, _, err := Parameters()
		if err != nil {
			return nil, nil, err
		}
		pk := newPublicKey(params)
		return twoWays(pk, func(v uint64) {
			for _, p := range pk.Value {
				fillQP(p, v)
			}
		})
	})
	if err != nil {
		return nil, err
	}
	if !l.fits(s) {
		return nil, fmt.Errorf("%w: the public key section is not a public key as veil he keygen writes it", ErrCorrupted)
	}
	pk := new(rlwe.PublicKey)
	if err := pk.UnmarshalBinary(s); err != nil {
		return nil, fmt.Errorf("%w: public key section: %v", ErrCorrupted, err)
	}
	params, _, _ := Parameters()
	for _, p := range pk.Value {
		if !checkReducedQP(p, params.Q(), params.P()) {
			return nil, fmt.Errorf("%w: the public key has coefficients out of range", ErrCorrupted)
		}
	}
	return pk, nil
}

func parseRelinKey(s []byte) (*rlwe.RelinearizationKey, error) {
	l, err := layoutFor("relinearization key", func() ([]byte, []byte, error) {
		params, _, err := Parameters()
		if err != nil {
			return nil, nil, err
		}
		rlk := rlwe.NewRelinearizationKey(params, relinKeyParams())
		return twoWays(rlk, func(v uint64) { fillGadget(&rlk.GadgetCiphertext, v) })
	})
	if err != nil {
		return nil, err
	}
	if !l.fits(s) {
		return nil, fmt.Errorf("%w: the relinearization key section is not a key as veil he keygen writes it", ErrCorrupted)
	}
	rlk := new(rlwe.RelinearizationKey)
	if err := rlk.UnmarshalBinary(s); err != nil {
		return nil, fmt.Errorf("%w: relinearization key section: %v", ErrCorrupted, err)
	}
	params, _, _ := Parameters()
	if !checkReducedGadget(&rlk.GadgetCiphertext, params.Q(), params.P()) {
		return nil, fmt.Errorf("%w: the relinearization key has coefficients out of range", ErrCorrupted)
	}
	return rlk, nil
}

// galoisShareLayout is the layout of a top-level Galois key share; the Galois element is
// left free (it is checked against the rotation after parsing).
func galoisShareLayout() (layout, error) {
	return layoutFor("galois key share", func() ([]byte, []byte, error) {
		params, _, err := Parameters()
		if err != nil {
			return nil, nil, err
		}
		share := mhe.NewGaloisKeyGenProtocol(params).AllocateShare(galoisKeyParams())
		return twoWays(&share, func(v uint64) {
			share.GaloisElement = v
			fillGadget(&share.GadgetCiphertext, v)
		})
	})
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
		if g.LevelQ() >= topLevel {
			have[g.GaloisElement] = true
		}
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
	h, err := headerSection(sections, kindSecretKey)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(h, &hdr); err != nil {
		return nil, fmt.Errorf("%w: secret key header is not valid JSON: %v", ErrCorrupted, err)
	}
	l, err := layoutFor("secret key", func() ([]byte, []byte, error) {
		params, _, err := Parameters()
		if err != nil {
			return nil, nil, err
		}
		sk := rlwe.NewSecretKey(params)
		return twoWays(sk, func(v uint64) { fillQP(sk.Value, v) })
	})
	if err != nil {
		return nil, err
	}
	if !l.fits(sections[1]) {
		return nil, fmt.Errorf("%w: the secret key section is not a key as veil he keygen writes it", ErrCorrupted)
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
	hdr, _, err := readBundleHeader(sections)
	if err != nil {
		return "", 0, err
	}
	return hdr.KeyID, hdr.Lanes, nil
}
