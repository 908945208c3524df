package he

import (
	"math"
	"math/rand"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// TestRelinRescaleMatchesLattigo: at every level the sigmoid rescales a product from, the
// fused relinearize-and-rescale gives the level, scale and (decrypted) values of lattigo's
// Relinearize followed by Rescale, within a hair of CKKS noise.
func TestRelinRescaleMatchesLattigo(t *testing.T) {
	sk, pub := testKeys(t)
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	eval := hefloat.NewEvaluator(params, pub.evaluationKeys())
	rr, err := newRelinRescaler(params, eval)
	if err != nil {
		t.Fatal(err)
	}
	ecd := hefloat.NewEncoder(params)
	enc := rlwe.NewEncryptor(params, sk.sk)
	dec := rlwe.NewDecryptor(params, sk.sk)
	rng := rand.New(rand.NewSource(7))
	values := make([]float64, params.MaxSlots())
	for i := range values {
		values[i] = 2*rng.Float64() - 1
	}
	for level := outLevel + 1; level <= polyLevel; level++ {
		pt := hefloat.NewPlaintext(params, level)
		if err := ecd.Encode(values, pt); err != nil {
			t.Fatal(err)
		}
		ct, err := enc.EncryptNew(pt)
		if err != nil {
			t.Fatal(err)
		}
		prod, err := eval.MulNew(ct, ct)
		if err != nil {
			t.Fatal(err)
		}
		if !rr.handles(prod) {
			t.Fatalf("level %d: the fused rescale does not take a product", level)
		}
		want := prod.CopyNew()
		if err := eval.Relinearize(want, want); err != nil {
			t.Fatal(err)
		}
		if err := eval.Rescale(want, want); err != nil {
			t.Fatal(err)
		}
		got := prod.CopyNew()
		rr.relinRescale(got, got)
		if got.Level() != want.Level() || got.Degree() != 1 || got.Scale.Cmp(want.Scale) != 0 {
			t.Fatalf("level %d: got level %d degree %d scale %v, lattigo level %d scale %v", level, got.Level(), got.Degree(), got.Scale.Float64(), want.Level(), want.Scale.Float64())
		}
		a, b := make([]float64, len(values)), make([]float64, len(values))
		if err := ecd.Decode(dec.DecryptNew(got), a); err != nil {
			t.Fatal(err)
		}
		if err := ecd.Decode(dec.DecryptNew(want), b); err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range a {
			worst = math.Max(worst, math.Max(math.Abs(a[i]-b[i]), math.Abs(a[i]-values[i]*values[i])))
		}
		if worst > 1e-8 {
			t.Fatalf("level %d: fused and lattigo's results differ by %.3g (or from x^2)", level, worst)
		}
	}
}
