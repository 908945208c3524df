package he

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// FloodBits is the flooding margin: Flood adds to the output ciphertext a
// fresh discrete Gaussian whose standard deviation is 2^FloodBits times a
// conservative estimate of the evaluation noise's standard deviation (in
// coefficient units). See Flood.
const FloodBits = 16

// EncryptedSums holds the encrypted per-group sums: slot s carries the sum
// of group s mod Lanes. On the platform it also keeps the public key, which
// Flood needs; an unmarshalled EncryptedSums (vendor side) has none.
type EncryptedSums struct {
	params     hefloat.Parameters
	pk         *rlwe.PublicKey
	keyID      string
	kind       string
	groups     int
	lanes      int
	ct         *rlwe.Ciphertext
	evalNoise  float64 // estimated std of the evaluation noise, coefficient units
	flooded    bool
	floodSigma float64
	noised     bool
	degree     int // sigmoid degree (0 for linear models)
}

type sumsHeader struct {
	KeyID      string  `json:"key_id"`
	Kind       string  `json:"kind"`
	Groups     int     `json:"groups"`
	Lanes      int     `json:"lanes"`
	Flooded    bool    `json:"flooded"`
	FloodSigma float64 `json:"flood_sigma"`
	DPNoise    bool    `json:"dp_noise"`
}

// Groups returns the number of groups.
func (e *EncryptedSums) Groups() int { return e.groups }

// Flooded reports whether Flood was applied.
func (e *EncryptedSums) Flooded() bool { return e.flooded }

// FloodSigma returns the standard deviation (coefficient units, at the
// output scale) of the flooding noise that was added, 0 before Flood.
func (e *EncryptedSums) FloodSigma() float64 { return e.floodSigma }

// AddNoise adds plaintext noise to the encrypted sums: noise[g] is added to
// group g, in every slot that carries group g's sum (slot g and its periodic
// copies g + k*lanes), so no copy of the sum escapes unnoised.
func (e *EncryptedSums) AddNoise(noise []float64) error {
	if e.pk == nil {
		return fmt.Errorf("%w: AddNoise works on the sums returned by Scorer.Finish, on the platform", ErrState)
	}
	if len(noise) != e.groups {
		return fmt.Errorf("%w: got %d noise values for %d groups", ErrInvalidInput, len(noise), e.groups)
	}
	for g, v := range noise {
		if !finite(v) {
			return fmt.Errorf("%w: noise for group %d is not a finite number", ErrInvalidInput, g)
		}
	}
	v := periodicVector(e.params.MaxSlots(), e.lanes, e.groups, func(g int) float64 { return noise[g] })
	if err := hefloat.NewEvaluator(e.params, nil).Add(e.ct, v, e.ct); err != nil {
		return fmt.Errorf("he: adding DP noise failed: %w", err)
	}
	e.noised = true
	return nil
}

// Flood re-randomizes and floods the output ciphertext before export
// (circuit privacy: the decryption error of an evaluated ciphertext depends
// on the data, and the vendor holds the secret key).
//
// It adds (1) a fresh public-key encryption of zero, which replaces the
// ciphertext's mask c1 by a fresh pseudo-random one (lattigo
// rlwe.Encryptor.EncryptZero with the vendor's public key), and (2) to c0 a
// discrete Gaussian polynomial with standard deviation
// sigma = 2^FloodBits * E, where E is a deliberately conservative estimate
// of the evaluation noise's standard deviation for this circuit and input
// size, sampled with lattigo's ring.NewSampler(ring.DiscreteGaussian) — the
// same smudging lattigo's multiparty key-switch protocols
// (mhe.NewKeySwitchProtocol / NewPublicKeySwitchProtocol, "noiseFlooding")
// add before a decryption is shared. Lattigo offers no platform-side
// "flood" call that works without the secret key, so these two primitives
// are combined here.
//
// Size and meaning: with FloodBits = 16 the flooding noise is 2^16 times
// the estimated evaluation noise, itself 2-4 times the noise measured in the
// tests. This is not the classic 2^-lambda statistical flooding (that needs
// a margin of ~2^40 and would leave no precision at N = 2^14); it follows
// the differential-privacy view of CKKS noise leakage (Li, Micciancio,
// Schultz, Sorrell, CRYPTO 2022): the vendor sees the data-dependent
// evaluation noise only through a Gaussian mechanism. Assuming the
// evaluation noises of two data sets differ by at most 12 standard
// deviations per coefficient (L2 sensitivity 12*sqrt(N) = 2^10.6 times the
// noise std), sigma = 2^16 times that std gives epsilon ~ 0.2 at
// delta = 2^-40 per exported ciphertext.
//
// Precision left: each decrypted group sum gets an extra Gaussian error of
// standard deviation sigma*sqrt(2N)/scale (SumErrorStd; a real slot of the
// conjugate-invariant ring sums 2N coefficient terms): ~1e-3 (logistic, 20k
// rows in 37 groups) to ~4e-3 (logistic, 1M rows), 5e-6 (linear, 20k rows),
// i.e. relative errors of ~1e-5 for logistic groups of >= ~140 rows and of
// about 1e-6 on the benchmark's 1M rows in 100 groups.
// Flood must be called exactly once, after AddNoise.
func (e *EncryptedSums) Flood() error {
	if e.pk == nil {
		return fmt.Errorf("%w: Flood works on the sums returned by Scorer.Finish, on the platform (it needs the public key)", ErrState)
	}
	if e.flooded {
		return fmt.Errorf("%w: the sums are already flooded", ErrState)
	}
	level := e.ct.Level()
	ringQ := e.params.RingQ().AtLevel(level)
	zero := rlwe.NewEncryptor(e.params, e.pk).EncryptZeroNew(level)
	ringQ.Add(e.ct.Value[0], zero.Value[0], e.ct.Value[0])
	ringQ.Add(e.ct.Value[1], zero.Value[1], e.ct.Value[1])

	sigma := math.Ldexp(e.evalNoise, FloodBits)
	prng, err := sampling.NewPRNG()
	if err != nil {
		return fmt.Errorf("he: flooding needs a random source: %w", err)
	}
	sampler, err := ring.NewSampler(prng, ringQ, ring.DiscreteGaussian{Sigma: sigma, Bound: 6 * sigma}, false)
	if err != nil {
		return fmt.Errorf("he: flooding sampler: %w", err)
	}
	flood := ringQ.NewPoly()
	sampler.Read(flood)
	ringQ.NTT(flood, flood)
	ringQ.Add(e.ct.Value[0], flood, e.ct.Value[0])
	e.flooded, e.floodSigma = true, sigma
	return nil
}

// SumErrorStd returns the standard deviation of the error Flood adds to each
// decrypted group sum (0 before Flood).
func (e *EncryptedSums) SumErrorStd() float64 {
	// A real slot of the conjugate-invariant ring sums 2N coefficient-sized terms.
	return e.floodSigma * math.Sqrt(2*float64(e.params.N())) / e.ct.Scale.Float64()
}

// MarshalBinary writes the sums in the Veil HE envelope. It refuses sums
// that were not flooded: unflooded sums must never leave the platform.
func (e *EncryptedSums) MarshalBinary() ([]byte, error) {
	if !e.flooded {
		return nil, fmt.Errorf("%w: the sums are not flooded; call Flood before export", ErrState)
	}
	_, fp, err := Parameters()
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(sumsHeader{KeyID: e.keyID, Kind: e.kind, Groups: e.groups, Lanes: e.lanes, Flooded: e.flooded, FloodSigma: e.floodSigma, DPNoise: e.noised})
	if err != nil {
		return nil, err
	}
	p, err := e.ct.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("he: encoding the sums failed: %w", err)
	}
	return sealEnvelope(kindEncryptedSums, fp, hdr, p), nil
}

// UnmarshalSums parses sums exported by the platform (vendor side).
func UnmarshalSums(blob []byte) (*EncryptedSums, error) {
	sections, err := openEnvelope(blob, kindEncryptedSums)
	if err != nil {
		return nil, err
	}
	if len(sections) != 2 {
		return nil, fmt.Errorf("%w: encrypted sums have %d sections, expected 2", ErrCorrupted, len(sections))
	}
	var hdr sumsHeader
	h, err := headerSection(sections, kindEncryptedSums)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(h, &hdr); err != nil {
		return nil, fmt.Errorf("%w: encrypted sums header is not valid JSON: %v", ErrCorrupted, err)
	}
	if hdr.Kind != KindLinear && hdr.Kind != KindLogistic {
		return nil, fmt.Errorf("%w: encrypted sums declare unknown kind %q", ErrCorrupted, hdr.Kind)
	}
	params, _, err := Parameters()
	if err != nil {
		return nil, err
	}
	if hdr.Lanes < 1 || lanesFor(hdr.Lanes) != hdr.Lanes || hdr.Lanes > params.MaxSlots() || hdr.Groups < 1 || hdr.Groups > hdr.Lanes {
		return nil, fmt.Errorf("%w: encrypted sums declare %d groups in %d lanes", ErrCorrupted, hdr.Groups, hdr.Lanes)
	}
	level, logScale := outputLevelScale(hdr.Kind)
	ct, err := unmarshalCiphertext(sections[1], level, logScale, "sums ciphertext")
	if err != nil {
		return nil, err
	}
	return &EncryptedSums{
		params: params, keyID: hdr.KeyID, kind: hdr.Kind, groups: hdr.Groups, lanes: hdr.Lanes,
		ct: ct, flooded: hdr.Flooded, floodSigma: hdr.FloodSigma, noised: hdr.DPNoise,
	}, nil
}

// Decrypt is vendor-side: it returns the per-group sums (one per group).
func Decrypt(sk *SecretKey, sums *EncryptedSums) ([]float64, error) {
	if sk == nil || sums == nil {
		return nil, fmt.Errorf("%w: Decrypt needs a secret key and encrypted sums", ErrInvalidInput)
	}
	if sk.keyID != sums.keyID {
		return nil, fmt.Errorf("%w: the sums were made under key ID %s but this secret key is %s; use the secret key of that key set", ErrOtherKey, sums.keyID, sk.keyID)
	}
	params := sums.params
	pt := rlwe.NewDecryptor(params, sk.sk).DecryptNew(sums.ct)
	values := make([]float64, params.MaxSlots())
	if err := hefloat.NewEncoder(params).Decode(pt, values); err != nil {
		return nil, fmt.Errorf("he: decoding the sums failed: %w", err)
	}
	return values[:sums.groups], nil
}

// Noise model used to size the flooding (coefficient-domain standard
// deviations at the output scale: 2^55 logistic, 2^60 linear). The constants
// are upper estimates calibrated against measurements; TestLinearModelSums and
// TestLogisticModelSums check that the noise measured with exact rounding,
// where every term depends on the data, stays below the estimate.
const (
	// linearNoisePerRow: the vendor's fresh encryption noise of a weight
	// (~3.2*sqrt(2N/3)) multiplied by clear feature sums of magnitude up
	// to 2^k; measured 50-150 * 2^k, estimated at 256 * 2^k.
	linearNoisePerRow = 256
	// sigmoidBatchNoiseStd: noise of one batch after the sigmoid (rescale
	// rounding through 6 levels, at the output scale 2^55); measured
	// 4.1e4-5.3e4 (lanes 64 to 2048), estimated at 8e4. The rounding of the
	// feature plaintexts is not in it: randomized, it is independent of the
	// data (see roundingSigma), and at exact rounding it is below the rest.
	sigmoidBatchNoiseStd = 80000
)

// linearNoiseStd: the noise grows with the clear sums (at most 2^k).
func linearNoiseStd(k int) float64 {
	return math.Ldexp(linearNoisePerRow, k)
}

// logisticNoiseStd: independent batch noises add up (batches), then the
// fold adds slots/lanes rotated copies together.
func logisticNoiseStd(batches int64, copies int) float64 {
	if batches < 1 {
		batches = 1
	}
	return sigmoidBatchNoiseStd * math.Sqrt(float64(batches)*float64(copies))
}
