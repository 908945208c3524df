package he

import (
	"math"
	"math/rand"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// TestPlainEncoderMatchesLattigo: without randomized rounding the encoder writes the very
// plaintext lattigo's hefloat.Encoder writes; with it, the plaintext decodes to the same
// values within the documented precision.
func TestPlainEncoderMatchesLattigo(t *testing.T) {
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(5))
	values := make([]float64, params.MaxSlots())
	for i := range values {
		values[i] = 2*rng.Float64() - 1
	}
	values[7], values[8] = 0, -1e-30 // exact and rounded-to-zero coefficients
	for _, level := range []int{topLevel, linearLevel} {
		scale := rlwe.NewScale(params.Q()[level]).Div(rlwe.NewScale(256))
		want := hefloat.NewPlaintext(params, level)
		want.Scale = scale
		if err := hefloat.NewEncoder(params).Encode(values, want); err != nil {
			t.Fatal(err)
		}
		enc, err := newPlainEncoder(params)
		if err != nil {
			t.Fatal(err)
		}
		got := hefloat.NewPlaintext(params, level)
		got.Scale = scale
		if err := enc.encode(values, got, false); err != nil {
			t.Fatal(err)
		}
		if !got.Value.Equal(&want.Value) {
			t.Fatalf("level %d: the plaintext differs from lattigo's encoding", level)
		}
		if err := enc.encode(values, got, true); err != nil {
			t.Fatal(err)
		}
		back := make([]float64, len(values))
		if err := hefloat.NewEncoder(params).Decode(got, back); err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range back {
			worst = math.Max(worst, math.Abs(back[i]-values[i]))
		}
		if bound := 8 * roundingSigma * math.Sqrt(2*float64(params.N())) / scale.Float64(); worst > bound || worst == 0 {
			t.Fatalf("level %d: randomized encoding is off by %.3g, expected within (0, %.3g]", level, worst, bound)
		}
	}
}
