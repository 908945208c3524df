package he

import (
	"math"
	"math/bits"
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

// TestRescaleMatchesLattigo: rescaler gives lattigo's Rescale's level and scale, and its
// decrypted values within a hair of CKKS noise, at every level (in place and not), and
// lattigo's ciphertext bit for bit but where lattigo's lazy inverse NTT rounds one unit off.
func TestRescaleMatchesLattigo(t *testing.T) {
	sk, _ := testKeys(t)
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	eval := hefloat.NewEvaluator(params, nil)
	r := newRescaler(params.Parameters.Parameters)
	ecd := hefloat.NewEncoder(params)
	enc := rlwe.NewEncryptor(params, sk.sk)
	dec := rlwe.NewDecryptor(params, sk.sk)
	rng := rand.New(rand.NewPCG(7, 8))
	values := make([]float64, params.MaxSlots())
	for i := range values {
		values[i] = 2*rng.Float64() - 1
	}
	for level := 1; level <= topLevel; level++ {
		pt := hefloat.NewPlaintext(params, level)
		pt.Scale = rlwe.NewScale(params.Q()[level]).Mul(params.DefaultScale())
		if err := ecd.Encode(values, pt); err != nil {
			t.Fatal(err)
		}
		ct, err := enc.EncryptNew(pt)
		if err != nil {
			t.Fatal(err)
		}
		want := ct.CopyNew()
		if err := eval.Rescale(want, want); err != nil {
			t.Fatal(err)
		}
		got := hefloat.NewCiphertext(params, 1, level)
		if err := r.rescale(ct, got); err != nil {
			t.Fatal(err)
		}
		inPlace := ct.CopyNew()
		if err := r.rescale(inPlace, inPlace); err != nil {
			t.Fatal(err)
		}
		diff := 0
		for _, c := range []*rlwe.Ciphertext{got, inPlace} {
			if c.Level() != want.Level() || c.Degree() != 1 || c.Scale.Cmp(want.Scale) != 0 {
				t.Fatalf("level %d: got level %d degree %d scale %v, lattigo level %d scale %v", level, c.Level(), c.Degree(), c.Scale.Float64(), want.Level(), want.Scale.Float64())
			}
			for k := range want.Value {
				for i := range want.Value[k].Coeffs {
					for j := range want.Value[k].Coeffs[i] {
						if c.Value[k].Coeffs[i][j] != want.Value[k].Coeffs[i][j] {
							diff++
						}
					}
				}
			}
			a, b := make([]float64, len(values)), make([]float64, len(values))
			if err := ecd.Decode(dec.DecryptNew(c), a); err != nil {
				t.Fatal(err)
			}
			if err := ecd.Decode(dec.DecryptNew(want), b); err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i := range a {
				worst = math.Max(worst, math.Max(math.Abs(a[i]-b[i]), math.Abs(a[i]-values[i])))
			}
			if worst > 1e-8 {
				t.Fatalf("level %d: rescaler and lattigo's results differ by %.3g (or from the input)", level, worst)
			}
		}
		t.Logf("level %d: %d of %d coefficients differ from lattigo's", level, diff, 2*2*level*params.N())
	}
}

// TestShoupCompanionIsExact: shoupCompanion is floor(k * 2^52 / q) (bits.Div64) for every
// prime fastNTT takes, at the ends of [0, q) and at random values.
func TestShoupCompanionIsExact(t *testing.T) {
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, r := range []*ring.Ring{params.RingQ(), params.RingP()} {
		for _, s := range r.SubRings {
			if fastNTTOf(s) == nil {
				continue
			}
			q := s.Modulus
			f := 0x1p52 / float64(q)
			row := []uint64{0, 1, 2, q / 2, q - 2, q - 1}
			for range 1 << 16 {
				row = append(row, rng.Uint64N(q))
			}
			for _, k := range row {
				if want, _ := bits.Div64(k>>12, k<<52, q); shoupCompanion(k, q, f) != want {
					t.Fatalf("q=%d, k=%d: companion %d, want %d", q, k, shoupCompanion(k, q, f), want)
				}
			}
		}
	}
}
