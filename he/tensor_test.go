package he

import (
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// TestTensorMatchesLattigo: tensorer's product of two ciphertexts is lattigo's Mul bit for
// bit (values, level, scale, degree), at every level the sigmoid multiplies at, with the
// output distinct from the operands, equal to either, and for a square.
func TestTensorMatchesLattigo(t *testing.T) {
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	eval := hefloat.NewEvaluator(params, nil)
	tn := newTensorer(eval)
	randCt := func(level int) *rlwe.Ciphertext {
		ct := hefloat.NewCiphertext(params, 1, level)
		for i := range ct.Value {
			ct.Value[i] = randomPoly(rng, params.RingQ(), level)
		}
		ct.Scale = rlwe.NewScale(float64(rng.Uint64N(1<<40) + 1))
		return ct
	}
	for level := outLevel + 1; level <= polyLevel; level++ {
		for _, tc := range []string{"distinct", "out is op0", "out is op1", "square", "square in place", "lower op1"} {
			a, b := randCt(level), randCt(level)
			if tc == "lower op1" {
				b = randCt(level - 1)
			}
			if tc == "square" || tc == "square in place" {
				b = a
			}
			a2, b2 := a.CopyNew(), b.CopyNew()
			if b == a {
				b2 = a2
			}
			want := hefloat.NewCiphertext(params, 2, level)
			got := hefloat.NewCiphertext(params, 2, level)
			switch tc {
			case "out is op0", "square in place":
				want, got = a, a2
			case "out is op1":
				want, got = b, b2
			}
			if err := eval.Mul(a, b, want); err != nil {
				t.Fatal(err)
			}
			done, err := tn.mul(a2, b2, got)
			if err != nil {
				t.Fatal(err)
			}
			if !done {
				if haveIFMA {
					t.Fatalf("level %d, %s: not taken with IFMA", level, tc)
				}
				continue
			}
			if got.Degree() != want.Degree() || got.Level() != want.Level() || !got.Scale.Equal(want.Scale) || got.IsNTT != want.IsNTT {
				t.Fatalf("level %d, %s: degree %d level %d scale %v, lattigo %d %d %v", level, tc, got.Degree(), got.Level(), &got.Scale.Value, want.Degree(), want.Level(), &want.Scale.Value)
			}
			for i := range want.Value {
				equalPolys(t, tc, got.Value[i], want.Value[i])
			}
		}
	}
}
