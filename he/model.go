package he

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// Model kinds.
const (
	KindLinear   = "linear"
	KindLogistic = "logistic"
)

const (
	// MaxFeatures bounds the number of features of a model.
	MaxFeatures = 256
	// MaxInputRange is the widest logistic input range whose sigmoid
	// approximation stays within MaxSigmoidError at degree 31.
	MaxInputRange = 8.5
	// MaxLinearScore bounds |score| of a linear model over the declared
	// feature bounds, so that a sum over up to MaxGroupRows rows fits the
	// output level: 2^20 * 2^28 * 2^60 < 2^141 = Q0*q1*q2/2.
	MaxLinearScore = 1 << 20
	// MaxGroupRows bounds the rows of one group a scorer accepts.
	MaxGroupRows = 1 << 28
	// linearLogScale is the scale of linear model ciphertexts (level 3) and
	// of their sums (level 2): far above the default 2^46, so that the
	// vendor's encryption noise, which the multiply by the clear feature sums
	// amplifies, and the flooding sized on it stay 2^-45 below the sums.
	linearLogScale = 60
)

// Feature is one model input. Lower and Upper are the public bounds the
// platform clamps the raw value to; Mean and Scale are the vendor's own
// standardization (score uses (x - Mean) / Scale) and stay secret: they are
// folded into the encrypted weights.
type Feature struct {
	Name  string  `json:"name"`
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	Mean  float64 `json:"mean"`
	Scale float64 `json:"scale"`
}

// Model is the vendor's plaintext model (vendor-side only):
//
//	score = Bias + sum_j Weights[j] * (x_j - Mean_j) / Scale_j
//	linear:   output score
//	logistic: output sigmoid(score), with |score| <= InputRange guaranteed
//	          over the declared bounds
type Model struct {
	Kind       string    `json:"kind"`
	Features   []Feature `json:"features"`
	Weights    []float64 `json:"weights"`
	Bias       float64   `json:"bias"`
	InputRange float64   `json:"input_range,omitempty"`
}

// ParseModel reads a model from JSON (unknown fields are refused) and
// validates it.
func ParseModel(data []byte) (*Model, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Model
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: model JSON: %v", ErrInvalidModel, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the model and returns the first problem found.
func (m *Model) Validate() error {
	if m.Kind != KindLinear && m.Kind != KindLogistic {
		return fmt.Errorf("%w: unknown kind %q; use %q or %q", ErrInvalidModel, m.Kind, KindLinear, KindLogistic)
	}
	if len(m.Features) == 0 || len(m.Features) > MaxFeatures {
		return fmt.Errorf("%w: %d features; a model needs between 1 and %d", ErrInvalidModel, len(m.Features), MaxFeatures)
	}
	if len(m.Weights) != len(m.Features) {
		return fmt.Errorf("%w: %d weights for %d features; give exactly one weight per feature", ErrInvalidModel, len(m.Weights), len(m.Features))
	}
	if err := validateFeatures(m.Features); err != nil {
		return err
	}
	for j, w := range m.Weights {
		if !finite(w) {
			return fmt.Errorf("%w: weight %d (feature %q) is not a finite number", ErrInvalidModel, j, m.Features[j].Name)
		}
	}
	if !finite(m.Bias) {
		return fmt.Errorf("%w: bias is not a finite number", ErrInvalidModel)
	}
	return m.validateRange()
}

func validateFeatures(fs []Feature) error {
	seen := make(map[string]bool, len(fs))
	for j, f := range fs {
		name := strings.TrimSpace(f.Name)
		switch {
		case name == "":
			return fmt.Errorf("%w: feature %d has no name", ErrInvalidModel, j)
		case seen[name]:
			return fmt.Errorf("%w: feature %q appears twice", ErrInvalidModel, name)
		case !finite(f.Lower) || !finite(f.Upper) || !finite(f.Mean) || !finite(f.Scale):
			return fmt.Errorf("%w: feature %q has a non-finite lower, upper, mean or scale", ErrInvalidModel, name)
		case f.Lower >= f.Upper:
			return fmt.Errorf("%w: feature %q has lower >= upper; the public bounds must satisfy lower < upper", ErrInvalidModel, name)
		case f.Scale <= 0:
			return fmt.Errorf("%w: feature %q has scale <= 0; scale is the positive divisor of the vendor's standardization", ErrInvalidModel, name)
		}
		seen[name] = true
	}
	return nil
}

func (m *Model) validateRange() error {
	w, b := m.folded()
	bound := math.Abs(b)
	for _, v := range w {
		bound += math.Abs(v)
	}
	if !finite(bound) {
		return fmt.Errorf("%w: the folded weights overflow; check the scales and bounds", ErrInvalidModel)
	}
	if m.Kind == KindLinear {
		if m.InputRange != 0 {
			return fmt.Errorf("%w: input_range applies to logistic models only; remove it", ErrInvalidModel)
		}
		if bound > MaxLinearScore {
			return fmt.Errorf("%w: scores can reach %.3g over the declared bounds, more than %d; rescale the model output", ErrInvalidModel, bound, MaxLinearScore)
		}
		return nil
	}
	if !finite(m.InputRange) || m.InputRange <= 0 || m.InputRange > MaxInputRange {
		return fmt.Errorf("%w: input_range must be a number in (0, %g] for a logistic model", ErrInvalidModel, MaxInputRange)
	}
	if bound > m.InputRange*(1+1e-12) {
		return fmt.Errorf("%w: scores can reach %.4g over the declared feature bounds, beyond input_range %g; raise input_range to at least %.4g (max %g) or tighten the bounds",
			ErrInvalidModel, bound, m.InputRange, bound, MaxInputRange)
	}
	return nil
}

// folded maps the model onto the platform's inputs z_j in [-1, 1]:
// W_j = w_j h_j / scale_j, B = bias + sum_j w_j (c_j - mean_j) / scale_j with
// c = (lower+upper)/2 and h = (upper-lower)/2, so score = B + sum_j W_j z_j.
func (m *Model) folded() ([]float64, float64) {
	w := make([]float64, len(m.Weights))
	b := m.Bias
	for j, f := range m.Features {
		c, h := (f.Lower+f.Upper)/2, (f.Upper-f.Lower)/2
		w[j] = m.Weights[j] * h / f.Scale
		b += m.Weights[j] * (c - f.Mean) / f.Scale
	}
	return w, b
}

// foldedForCircuit returns the folded weights as the circuit uses them: for
// a logistic model both are divided by InputRange so that t in [-1, 1].
func (m *Model) foldedForCircuit() ([]float64, float64) {
	w, b := m.folded()
	if m.Kind == KindLogistic {
		for j := range w {
			w[j] /= m.InputRange
		}
		b /= m.InputRange
	}
	return w, b
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// PublicFeature is what the platform learns about a feature: its name and
// the public clamping bounds.
type PublicFeature struct {
	Name  string  `json:"name"`
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
}

// ModelHeader is the public part of an encrypted model. It never contains
// weights, bias, means or scales.
type ModelHeader struct {
	Kind       string          `json:"kind"`
	Features   []PublicFeature `json:"features"`
	InputRange float64         `json:"input_range,omitempty"`
	Degree     int             `json:"degree,omitempty"`
	// ScoreBound bounds |score| of one row over the declared feature bounds: 1 for a
	// logistic model (a probability), |B| + Σ|W_j| for a linear one. It is what
	// differential privacy calibrates its noise to, computed here by the vendor's own tool
	// (the platform cannot check it: the weights are encrypted). It reveals this one number
	// about the model.
	ScoreBound  float64 `json:"score_bound"`
	KeyID       string  `json:"key_id"`
	Fingerprint string  `json:"fingerprint"`
}

// EncryptedModel is the vendor's model encrypted under its public key: one
// ciphertext per folded weight and one for the bias, each replicated in all
// slots by the honest tool (the platform averages them over their lanes
// whatever they hold, see Scorer), plus the public header.
type EncryptedModel struct {
	header  ModelHeader
	bias    *rlwe.Ciphertext
	weights []*rlwe.Ciphertext
}

// Header returns the public header.
func (e *EncryptedModel) Header() ModelHeader {
	h := e.header
	h.Features = append([]PublicFeature(nil), e.header.Features...)
	return h
}

// EncryptModel is vendor-side: it validates the model, folds the vendor's
// standardization into weights over the platform's z in [-1, 1], and
// encrypts them under the bundle's public key.
func EncryptModel(pub *PublicBundle, m *Model) (*EncryptedModel, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	params, fp, err := Parameters()
	if err != nil {
		return nil, err
	}
	hdr := ModelHeader{Kind: m.Kind, InputRange: m.InputRange, KeyID: pub.keyID, Fingerprint: shortHex(fp)}
	for _, f := range m.Features {
		hdr.Features = append(hdr.Features, PublicFeature{Name: strings.TrimSpace(f.Name), Lower: f.Lower, Upper: f.Upper})
	}
	level, logScale := modelLevelScale(m.Kind)
	scale := rlwe.NewScale(math.Exp2(float64(logScale)))
	if m.Kind == KindLogistic {
		if hdr.Degree, err = chooseSigmoidDegree(m.InputRange); err != nil {
			return nil, err
		}
	}
	hdr.ScoreBound = 1
	if m.Kind == KindLinear {
		fw, fb := m.folded()
		hdr.ScoreBound = math.Abs(fb)
		for _, v := range fw {
			hdr.ScoreBound += math.Abs(v)
		}
	}
	w, b := m.foldedForCircuit()
	enc := &EncryptedModel{header: hdr}
	encryptor := rlwe.NewEncryptor(params, pub.pk)
	if enc.bias, err = encryptConstant(params, encryptor, b, level, scale); err != nil {
		return nil, err
	}
	for _, v := range w {
		ct, err := encryptConstant(params, encryptor, v, level, scale)
		if err != nil {
			return nil, err
		}
		enc.weights = append(enc.weights, ct)
	}
	return enc, nil
}

// encryptConstant encrypts v in every slot. A constant slot vector is the constant
// polynomial v*scale, so it is written exactly (rounded once, in big integers) rather than
// through the float64 FFT, whose rounding at scale 2^60 would be a per-slot error larger
// than the encryption noise.
func encryptConstant(params hefloat.Parameters, enc *rlwe.Encryptor, v float64, level int, scale rlwe.Scale) (*rlwe.Ciphertext, error) {
	pt := hefloat.NewPlaintext(params, level)
	pt.Scale = scale
	x := new(big.Float).SetPrec(256).SetFloat64(v)
	x.Mul(x, &scale.Value)
	if x.Sign() >= 0 {
		x.Add(x, big.NewFloat(0.5))
	} else {
		x.Sub(x, big.NewFloat(0.5))
	}
	c, _ := x.Int(nil) // truncation after +-1/2: rounding half away from zero
	ringQ := params.RingQ().AtLevel(level)
	r := new(big.Int)
	for i, s := range ringQ.SubRings[:level+1] {
		r.Mod(c, new(big.Int).SetUint64(s.Modulus)) // in [0, q)
		pt.Value.Coeffs[i][0] = r.Uint64()
	}
	rlwe.NTTSparseAndMontgomery(ringQ, pt.MetaData, pt.Value)
	ct, err := enc.EncryptNew(pt)
	if err != nil {
		return nil, fmt.Errorf("he: encrypting a model constant failed: %w", err)
	}
	return ct, nil
}

// MarshalBinary writes the encrypted model in the Veil HE envelope.
func (e *EncryptedModel) MarshalBinary() ([]byte, error) {
	_, fp, err := Parameters()
	if err != nil {
		return nil, err
	}
	hdr, err := json.Marshal(e.header)
	if err != nil {
		return nil, err
	}
	sections := [][]byte{hdr}
	for _, ct := range append([]*rlwe.Ciphertext{e.bias}, e.weights...) {
		p, err := ct.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("he: encoding the encrypted model failed: %w", err)
		}
		sections = append(sections, p)
	}
	return sealEnvelope(kindEncryptedModel, fp, sections...), nil
}

// UnmarshalEncryptedModel parses and checks an encrypted model. Each ciphertext must be a
// fresh degree-1 ciphertext at the level and scale of its kind, in exactly the layout
// EncryptModel writes, with reduced coefficients; it is rebuilt with the canonical metadata,
// so nothing the vendor wrote beyond the coefficients reaches the evaluation.
func UnmarshalEncryptedModel(blob []byte) (*EncryptedModel, error) {
	return unmarshalEncryptedModel(blob, nil)
}

// UnmarshalEncryptedModelDigest is UnmarshalEncryptedModel that also returns the blob's
// Digest, hashing the blob once for both.
func UnmarshalEncryptedModelDigest(blob []byte) (*EncryptedModel, string, error) {
	var digest string
	m, err := unmarshalEncryptedModel(blob, &digest)
	return m, digest, err
}

func unmarshalEncryptedModel(blob []byte, digest *string) (*EncryptedModel, error) {
	sections, err := openEnvelopeDigest(blob, kindEncryptedModel, digest)
	if err != nil {
		return nil, err
	}
	hdr, err := readModelHeader(sections)
	if err != nil {
		return nil, err
	}
	level, logScale := modelLevelScale(hdr.Kind)
	cts := make([]*rlwe.Ciphertext, len(sections)-1)
	for i, s := range sections[1:] {
		if cts[i], err = unmarshalCiphertext(s, level, logScale, fmt.Sprintf("model ciphertext %d", i)); err != nil {
			return nil, err
		}
	}
	return &EncryptedModel{header: hdr, bias: cts[0], weights: cts[1:]}, nil
}

// modelLevelScale is where EncryptModel puts a model of this kind.
func modelLevelScale(kind string) (level, logScale int) {
	if kind == KindLogistic {
		return topLevel, logDefaultScale
	}
	return linearLevel, linearLogScale
}

// outputLevelScale is where the sums of a model of this kind are.
func outputLevelScale(kind string) (level, logScale int) {
	if kind == KindLogistic {
		return outLevel, logisticOutLogScale
	}
	return linearOutLevel, linearLogScale
}

func readModelHeader(sections [][]byte) (ModelHeader, error) {
	var hdr ModelHeader
	if len(sections) < 3 {
		return hdr, fmt.Errorf("%w: encrypted model has %d sections, expected a header, a bias and at least one weight", ErrCorrupted, len(sections))
	}
	h, err := headerSection(sections, kindEncryptedModel)
	if err != nil {
		return hdr, err
	}
	if err := json.Unmarshal(h, &hdr); err != nil {
		return hdr, fmt.Errorf("%w: encrypted model header is not valid JSON: %v", ErrCorrupted, err)
	}
	return hdr, checkModelHeader(hdr, len(sections)-2)
}

func checkModelHeader(h ModelHeader, weights int) error {
	if h.Kind != KindLinear && h.Kind != KindLogistic {
		return fmt.Errorf("%w: encrypted model declares unknown kind %q", ErrCorrupted, h.Kind)
	}
	if len(h.Features) != weights || weights > MaxFeatures {
		return fmt.Errorf("%w: encrypted model lists %d features but carries %d weights", ErrCorrupted, len(h.Features), weights)
	}
	if !(h.ScoreBound > 0) || math.IsInf(h.ScoreBound, 0) || (h.Kind == KindLogistic && h.ScoreBound != 1) {
		return fmt.Errorf("%w: encrypted model declares score bound %g; expected a positive finite number, and 1 for a logistic model", ErrCorrupted, h.ScoreBound)
	}
	seen := map[string]bool{}
	for j, f := range h.Features {
		if strings.TrimSpace(f.Name) == "" || seen[f.Name] || !finite(f.Lower) || !finite(f.Upper) || f.Lower >= f.Upper {
			return fmt.Errorf("%w: encrypted model's feature %d has no name, a repeated name, or bounds that are not finite with lower < upper", ErrCorrupted, j)
		}
		seen[f.Name] = true
	}
	if h.Kind == KindLogistic && (!validSigmoidDegree(h.Degree) || !(h.InputRange > 0 && h.InputRange <= MaxInputRange)) {
		return fmt.Errorf("%w: encrypted model declares sigmoid degree %d and input_range %g; expected an odd degree in [3, %d] and a range in (0, %g]",
			ErrCorrupted, h.Degree, h.InputRange, maxSigmoidDegree, MaxInputRange)
	}
	return nil
}

func unmarshalCiphertext(p []byte, level, logScale int, what string) (*rlwe.Ciphertext, error) {
	l, err := ciphertextLayout(level, logScale)
	if err != nil {
		return nil, err
	}
	if !l.fits(p) {
		return nil, fmt.Errorf("%w: %s is not a fresh degree-1 ciphertext at level %d and scale 2^%d in the layout this release writes; encrypt it again with this release",
			ErrCorrupted, what, level, logScale)
	}
	in := new(rlwe.Ciphertext)
	if err := in.UnmarshalBinary(p); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupted, what, err)
	}
	params, _, err := Parameters()
	if err != nil {
		return nil, err
	}
	for _, v := range in.Value {
		if !checkReduced(v, params.Q()) {
			return nil, fmt.Errorf("%w: %s has coefficients out of range", ErrCorrupted, what)
		}
	}
	ct, err := canonicalCiphertext(level, logScale)
	if err != nil {
		return nil, err
	}
	for i := range ct.Value {
		ct.Value[i].CopyLvl(level, in.Value[i])
	}
	return ct, nil
}

// PeekModelHeader checks an encrypted model's envelope (magic, length, checksum, kind,
// parameters) and reads its public header, without parsing a ciphertext: safe on untrusted
// input of any shape. UnmarshalEncryptedModel does the full parse.
func PeekModelHeader(blob []byte) (ModelHeader, error) {
	sections, err := openEnvelope(blob, kindEncryptedModel)
	if err != nil {
		return ModelHeader{}, err
	}
	return readModelHeader(sections)
}
