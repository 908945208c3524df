package he

import (
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// TestShoupCompanionsAreExact: shoupCompanions is floor(k * 2^52 / q) (bits.Div64) for every
// prime of the job's top level, at the ends of [0, q) and at random values.
func TestShoupCompanionsAreExact(t *testing.T) {
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range params.RingQ().SubRings[:topLevel+1] {
		q := s.Modulus
		row := []uint64{0, 1, 2, q / 2, q - 2, q - 1}
		for range 1 << 14 {
			row = append(row, rng.Uint64N(q))
		}
		got := shoupCompanions(row, q)
		for j, k := range row {
			if want, _ := bits.Div64(k>>12, k<<52, q); got[j] != want {
				t.Fatalf("q=%d, k=%d: companion %d, want %d", q, k, got[j], want)
			}
		}
	}
}

// TestModelProductsMatchLattigo: the workers' multiply-adds of plaintexts by a model
// operand (mulAddShoup on IFMA, else lattigo's) give, once reduced, lattigo's lazy Montgomery
// products of the same plaintexts by the ciphertext in Montgomery form, bit for bit.
func TestModelProductsMatchLattigo(t *testing.T) {
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	ringQ := params.RingQ().AtLevel(topLevel)
	ct := hefloat.NewCiphertext(params, 1, topLevel)
	ct.Value[0], ct.Value[1] = randomPoly(rng, params.RingQ(), topLevel), randomPoly(rng, params.RingQ(), topLevel)
	op := newModelOperand(ringQ, ct)
	if haveIFMA && op.k[0][0] == nil {
		t.Fatal("with IFMA the top level's primes take the Shoup path")
	}
	var mont [2]rlwe.Ciphertext
	for c := range mont {
		mont[c].Value = append(mont[c].Value, ringQ.NewPoly())
		ringQ.MForm(ct.Value[c], mont[c].Value[0])
	}
	for _, set := range []bool{true, false} {
		for c := 0; c < 2; c++ {
			first := set
			got, want := ringQ.NewPoly(), ringQ.NewPoly()
			if !first {
				got, want = randomPoly(rng, params.RingQ(), topLevel), ringQ.NewPoly()
				want.Copy(got)
			}
			for range 17 {
				x := randomPoly(rng, params.RingQ(), topLevel)
				ringQ.Add(x, x, x) // lazy NTT outputs: below 2q
				ringQ.Reduce(x, x)
				for u, s := range ringQ.SubRings {
					for j := range x.Coeffs[u] {
						if rng.IntN(2) == 0 {
							x.Coeffs[u][j] += s.Modulus
						}
					}
				}
				op.mulAdd(ringQ, c, x, got, first)
				if first {
					ringQ.MulCoeffsMontgomeryLazy(mont[c].Value[0], x, want)
				} else {
					ringQ.MulCoeffsMontgomeryLazyThenAddLazy(mont[c].Value[0], x, want)
				}
				first = false
			}
			ringQ.Reduce(got, got)
			ringQ.Reduce(want, want)
			equalPolys(t, "model products", got, want)
		}
	}
}
