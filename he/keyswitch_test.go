package he

import (
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
)

func randomPoly(rng *rand.Rand, r *ring.Ring, level int) ring.Poly {
	p := r.AtLevel(level).NewPoly()
	for i, s := range r.SubRings[:level+1] {
		for j := range p.Coeffs[i] {
			p.Coeffs[i][j] = rng.Uint64N(s.Modulus)
		}
	}
	return p
}

func equalPolys(t *testing.T, what string, got, want ring.Poly) {
	t.Helper()
	for i := range want.Coeffs {
		for j := range want.Coeffs[i] {
			if got.Coeffs[i][j] != want.Coeffs[i][j] {
				t.Fatalf("%s: prime %d, coefficient %d: %d, lattigo %d", what, i, j, got.Coeffs[i][j], want.Coeffs[i][j])
			}
		}
	}
}

// TestModDownMatchesLattigo: modDowner gives lattigo's ModDownQPtoQNTT bit for bit, for
// the evaluator's basis extender (Galois keys: one special prime, every level) and for the
// fused rescale's ({q_L, p0, p1} down to q_0..q_(L-1)).
func TestModDownMatchesLattigo(t *testing.T) {
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	be := ring.NewBasisExtender(params.RingQ(), params.RingP())
	d := newModDowner(be.ShallowCopy(), params.RingQ(), params.RingP())
	for _, levelP := range []int{0, 1} {
		for _, levelQ := range []int{1, topLevel} {
			pQ, pP := randomPoly(rng, params.RingQ(), levelQ), randomPoly(rng, params.RingP(), levelP)
			want, got := params.RingQ().AtLevel(levelQ).NewPoly(), params.RingQ().AtLevel(levelQ).NewPoly()
			be.ModDownQPtoQNTT(levelQ, levelP, pQ, pP, want)
			d.modDown(levelQ, levelP, pQ, pP, got)
			equalPolys(t, "evaluator's extender", got, want)
		}
	}
	bes, _, err := fusedExtenders(params)
	if err != nil {
		t.Fatal(err)
	}
	for l := outLevel + 1; l <= polyLevel; l++ {
		rq, rp := fusedShared.rq[l], fusedShared.rp[l]
		d := newModDowner(bes[l].ShallowCopy(), rq, rp)
		pQ, pP := randomPoly(rng, rq, l-1), randomPoly(rng, rp, 2)
		want, got := rq.NewPoly(), rq.NewPoly()
		bes[l].ShallowCopy().ModDownQPtoQNTT(l-1, 2, pQ, pP, want)
		d.modDown(l-1, 2, pQ, pP, got)
		equalPolys(t, "fused rescale's extender", got, want)
	}
}

// TestGadgetProductMatchesLattigo: gadgetProducer gives lattigo's GadgetProductLazy bit for
// bit with the bundle's relinearization key at every level the sigmoid relinearizes at.
func TestGadgetProductMatchesLattigo(t *testing.T) {
	_, pub := testKeys(t)
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	eval := hefloat.NewEvaluator(params, pub.evaluationKeys())
	rlk, err := eval.CheckAndGetRelinearizationKey()
	if err != nil {
		t.Fatal(err)
	}
	g := newGadgetProducer(params.Parameters.Parameters, eval.Decomposer)
	rng := rand.New(rand.NewPCG(5, 6))
	for l := outLevel + 1; l <= polyLevel; l++ {
		cx := randomPoly(rng, params.RingQ(), l)
		want := rlwe.NewElementExtended(params, 1, l, rlk.LevelP())
		want.IsNTT = true
		got := rlwe.NewElementExtended(params, 1, l, rlk.LevelP())
		eval.GadgetProductLazy(l, cx, &rlk.GadgetCiphertext, want)
		g.product(l, cx, &rlk.GadgetCiphertext, got)
		for k := 0; k < 2; k++ {
			equalPolys(t, "Q part", got.Value[k].Q, want.Value[k].Q)
			equalPolys(t, "P part", got.Value[k].P, want.Value[k].P)
		}
	}
}
