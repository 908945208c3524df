package he

import (
	"fmt"
	"math"
	"math/big"
	"math/rand"
	"sync"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// Tolerance asserted on every decrypted group sum, after AddNoise-free
// scoring and Flood: |got - want| <= relTol * mass, where mass is
// sum_i |score_i| over the group's rows (the group sum itself for logistic
// scores, which are positive). want uses the exact sigmoid.
const relTol = 1e-4

var (
	keysOnce sync.Once
	keysErr  error
	testSK   *SecretKey
	testPub  *PublicBundle
	otherSK  *SecretKey
	otherPub *PublicBundle
)

const testGroups = 37

func testKeys(t testing.TB) (*SecretKey, *PublicBundle) {
	t.Helper()
	keysOnce.Do(func() {
		if testSK, testPub, keysErr = GenerateKeys(testGroups); keysErr != nil {
			return
		}
		otherSK, otherPub, keysErr = GenerateKeys(testGroups)
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	return testSK, testPub
}

// testData is a generated data set with raw values partly outside the public
// bounds (so clamping matters) and groups of unequal sizes.
type testData struct {
	group []int32
	raw   [][]float64 // [feature][row]
}

func makeModel(kind string, nf int, rng *rand.Rand) *Model {
	m := &Model{Kind: kind, Bias: 0.3}
	for j := 0; j < nf; j++ {
		lo := rng.Float64()*100 - 50
		hi := lo + 1 + rng.Float64()*200
		m.Features = append(m.Features, Feature{
			Name: "f" + string(rune('a'+j)), Lower: lo, Upper: hi,
			Mean: lo + (hi-lo)*rng.Float64(), Scale: (hi - lo) * (0.2 + rng.Float64()),
		})
		m.Weights = append(m.Weights, rng.NormFloat64()*0.4)
	}
	if kind == KindLogistic {
		w, b := m.folded()
		bound := math.Abs(b)
		for _, v := range w {
			bound += math.Abs(v)
		}
		m.InputRange = 8
		if bound > 8 { // shrink the model so its scores stay within [-8, 8]
			f := 8 / bound
			for j := range m.Weights {
				m.Weights[j] *= f
			}
			m.Bias *= f
		}
	}
	return m
}

func makeData(m *Model, rows, groups int, rng *rand.Rand) *testData {
	d := &testData{group: make([]int32, rows), raw: make([][]float64, len(m.Features))}
	// unequal sizes: group g has weight (g%7+1)
	var cum []int
	total := 0
	for g := 0; g < groups; g++ {
		total += g%7 + 1
		cum = append(cum, total)
	}
	for i := range d.group {
		r := rng.Intn(total)
		g := 0
		for cum[g] <= r {
			g++
		}
		d.group[i] = int32(g)
	}
	for j, f := range m.Features {
		d.raw[j] = make([]float64, rows)
		for i := range d.raw[j] {
			span := f.Upper - f.Lower
			d.raw[j][i] = f.Lower - 0.1*span + 1.2*span*rng.Float64()
		}
	}
	return d
}

// scaled is the platform's DuckDB step: z = (clamp(x) - c) / h.
func (d *testData) scaled(m *Model) [][]float64 {
	z := make([][]float64, len(m.Features))
	for j, f := range m.Features {
		c, h := (f.Lower+f.Upper)/2, (f.Upper-f.Lower)/2
		z[j] = make([]float64, len(d.group))
		for i, x := range d.raw[j] {
			v := (math.Min(math.Max(x, f.Lower), f.Upper) - c) / h
			z[j][i] = math.Max(-1, math.Min(1, v))
		}
	}
	return z
}

// expected computes the model in the clear on clamped raw values.
func (d *testData) expected(m *Model, groups int) (sums, mass []float64) {
	sums, mass = make([]float64, groups), make([]float64, groups)
	for i, g := range d.group {
		s := m.Bias
		for j, f := range m.Features {
			x := math.Min(math.Max(d.raw[j][i], f.Lower), f.Upper)
			s += m.Weights[j] * (x - f.Mean) / f.Scale
		}
		if m.Kind == KindLogistic {
			s = 1 / (1 + math.Exp(-s))
		}
		sums[g] += s
		mass[g] += math.Abs(s)
	}
	return sums, mass
}

func score(t testing.TB, pub *PublicBundle, em *EncryptedModel, d *testData, z [][]float64, groups, chunk int) *EncryptedSums {
	t.Helper()
	sums, _ := scoreWith(t, pub, em, d, z, groups, chunk, false)
	return sums
}

// scoreWith is score, also returning the scorer (whose lane averages the noise
// measurement decrypts); exact turns the randomized rounding off.
func scoreWith(t testing.TB, pub *PublicBundle, em *EncryptedModel, d *testData, z [][]float64, groups, chunk int, exact bool) (*EncryptedSums, *Scorer) {
	t.Helper()
	sc, err := NewScorer(pub, em, groups)
	if err != nil {
		t.Fatal(err)
	}
	sc.exactRounding = exact
	for lo := 0; lo < len(d.group); lo += chunk {
		hi := min(lo+chunk, len(d.group))
		cols := make([][]float64, len(z))
		for j := range z {
			cols[j] = z[j][lo:hi]
		}
		if err := sc.Add(d.group[lo:hi], cols); err != nil {
			t.Fatal(err)
		}
	}
	sums, err := sc.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return sums, sc
}

// testRows is not reduced under -short: the smallest of the 37 groups must
// keep ~140 rows for the 1e-4 relative tolerance to hold after flooding
// (the flooding error is absolute, ~1.5e-3 per sum), and the whole file runs
// in ~10 s on 2 cores anyway.
func testRows() int { return 20000 }

func runModel(t *testing.T, kind string) {
	sk, pub := testKeys(t)
	rng := rand.New(rand.NewSource(7))
	m := makeModel(kind, 16, rng)
	em, err := EncryptModel(pub, m)
	if err != nil {
		t.Fatal(err)
	}
	// round-trip the model and the bundle through their envelopes
	em = roundTripModel(t, em)
	pub = roundTripBundle(t, pub)

	d := makeData(m, testRows(), testGroups, rng)
	sums := score(t, pub, em, d, d.scaled(m), testGroups, 3000)
	want, mass := d.expected(m, testGroups)

	pre := decryptOrFail(t, sk, sums)
	// The flooding must cover the noise that depends on the data. Scored with exact
	// rounding, every noise term does (the rounding of the feature plaintexts too, which
	// in production is randomized and so independent of the data, see roundingSigma): the
	// measurement bounds the production noise the flooding is sized for.
	exact, sc := scoreWith(t, pub, em, d, d.scaled(m), testGroups, 3000, true)
	noiseStd := coeffNoiseStd(coeffNoise(t, sk, exact, sc, d, m))
	if noiseStd > sums.evalNoise {
		t.Errorf("measured evaluation noise std %.3g exceeds the flooding estimate %.3g", noiseStd, sums.evalNoise)
	}
	if err := sums.Flood(); err != nil {
		t.Fatal(err)
	}
	blob, err := sums.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalSums(blob)
	if err != nil {
		t.Fatal(err)
	}
	got := decryptOrFail(t, sk, back)
	worstPre, worstPost := 0.0, 0.0
	for g := range want {
		if mass[g] == 0 {
			continue
		}
		worstPre = math.Max(worstPre, math.Abs(pre[g]-want[g])/mass[g])
		rel := math.Abs(got[g]-want[g]) / mass[g]
		worstPost = math.Max(worstPost, rel)
		if rel > relTol {
			t.Errorf("group %d: relative error %.2e > %.0e", g, rel, relTol)
		}
	}
	t.Logf("%s: %d rows, eval noise std with exact rounding %.3g (estimate %.3g), flood sigma %.3g (sum error std %.2e); worst relative error before flooding %.2e, after %.2e; output %d bytes",
		kind, len(d.group), noiseStd, sums.evalNoise, sums.FloodSigma(), sums.SumErrorStd(), worstPre, worstPost, len(blob))
}

func TestLinearModelSums(t *testing.T)   { runModel(t, KindLinear) }
func TestLogisticModelSums(t *testing.T) { runModel(t, KindLogistic) }

func decryptOrFail(t testing.TB, sk *SecretKey, s *EncryptedSums) []float64 {
	t.Helper()
	v, err := Decrypt(sk, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// coeffNoise measures (with the secret key, test only) the evaluation noise in coefficient
// units: decrypt, subtract the encoding of the exact expected slots (the polynomial, not the
// sigmoid, for logistic models, so the approximation error is excluded), and lift the
// difference to centered integers (it is far below the first prime). The expected slots use
// the weights the scorer really used, its lane averages: their difference from the model's
// weights is the vendor's own encryption noise averaged over the lane, the same for every
// row of a group, which the vendor knows and which is not evaluation noise.
func coeffNoise(t testing.TB, sk *SecretKey, sums *EncryptedSums, sc *Scorer, d *testData, m *Model) []float64 {
	t.Helper()
	params := sums.params
	want := make([]float64, sums.groups)
	laneWts, laneBias := laneWeights(t, sk, sc, m)
	var coeffs []float64
	if m.Kind == KindLogistic {
		p := sigmoidOdd(m.InputRange, sums.degree)
		for _, c := range p.Coeffs {
			v := 0.0
			if c != nil {
				v, _ = c[0].Float64()
			}
			coeffs = append(coeffs, v)
		}
	}
	z := d.scaled(m)
	for i, g := range d.group {
		if m.Kind == KindLinear {
			break
		}
		s := laneBias[g]
		for j := range laneWts {
			s += laneWts[j][g] * z[j][i]
		}
		if m.Kind == KindLogistic {
			s = 0.5 + chebyshevEval(coeffs, s)
		}
		want[g] += s
	}
	// At scale 2^60 a sum's coefficients have ~75 bits: encode at 128-bit precision so that
	// the measurement is not float64's rounding.
	precise := make([]*big.Float, params.MaxSlots())
	for i := range precise {
		precise[i] = new(big.Float)
		if g := i % sums.lanes; g < sums.groups {
			precise[i].SetPrec(128).SetFloat64(want[g])
		}
	}
	if m.Kind == KindLinear {
		// The clear sums as encoded: their rounding is a function of the sums, which the
		// vendor may learn, not evaluation noise.
		precise = linearEncoded(t, sc, laneWts, laneBias)
	}
	ptWant := hefloat.NewPlaintext(params, sums.ct.Level())
	ptWant.Scale = sums.ct.Scale
	if err := hefloat.NewEncoder(params, 128).Encode(precise, ptWant); err != nil {
		t.Fatal(err)
	}
	pt := rlwe.NewDecryptor(params, sk.sk).DecryptNew(sums.ct)
	ringQ := params.RingQ().AtLevel(pt.Level())
	ringQ.Sub(pt.Value, ptWant.Value, pt.Value)
	ringQ.INTT(pt.Value, pt.Value)
	q := ringQ.SubRings[0].Modulus
	out := make([]float64, len(pt.Value.Coeffs[0]))
	for i, c := range pt.Value.Coeffs[0] {
		if c > q/2 {
			out[i] = -float64(q - c)
		} else {
			out[i] = float64(c)
		}
	}
	return out
}

// linearEncoded is what a linear scorer's output holds exactly, slot by slot, for its
// plaintexts as encoded (rounded), in 128-bit arithmetic: at scale 2^60 a float64 sum would
// be off by more than the noise it measures.
func linearEncoded(t testing.TB, sc *Scorer, w [][]float64, b []float64) []*big.Float {
	t.Helper()
	vecs, div, _ := sc.linearInputs()
	ecd := hefloat.NewEncoder(sc.params, 128)
	pt := hefloat.NewPlaintext(sc.params, linearLevel)
	pt.Scale = rlwe.NewScale(sc.params.Q()[linearLevel])
	out := make([]*big.Float, sc.params.MaxSlots())
	for i := range out {
		out[i] = new(big.Float).SetPrec(128)
	}
	dec := make([]*big.Float, sc.params.MaxSlots())
	for j, v := range vecs {
		if err := hefloat.NewEncoder(sc.params).Encode(v, pt); err != nil {
			t.Fatal(err)
		}
		if err := ecd.Decode(pt, dec); err != nil {
			t.Fatal(err)
		}
		for i := range out {
			g := i % sc.lanes
			if g >= sc.groups {
				g = 0 // the slot holds 0 whatever the weight
			}
			c := b[g]
			if j < len(w) {
				c = w[j][g]
			}
			term := new(big.Float).SetPrec(128).SetFloat64(c * div)
			out[i].Add(out[i], term.Mul(term, dec[i]))
		}
	}
	return out
}

// laneWeights decrypts the scorer's lane averages: laneWts[j][g] is weight j in lane g. A
// linear scorer uses the model's weights as they are.
func laneWeights(t testing.TB, sk *SecretKey, sc *Scorer, m *Model) ([][]float64, []float64) {
	t.Helper()
	if sc.rep == nil {
		w, b := m.foldedForCircuit()
		lw := make([][]float64, len(w))
		lb := make([]float64, sc.lanes)
		for j := range w {
			lw[j] = make([]float64, sc.lanes)
			for g := range lw[j] {
				lw[j][g], lb[g] = w[j], b
			}
		}
		return lw, lb
	}
	if err := sc.rep.wait(); err != nil {
		t.Fatal(err)
	}
	dec := rlwe.NewDecryptor(sc.params, sk.sk)
	ecd := hefloat.NewEncoder(sc.params)
	lane := func(ct *rlwe.Ciphertext) []float64 {
		v := make([]float64, sc.params.MaxSlots())
		if err := ecd.Decode(dec.DecryptNew(ct), v); err != nil {
			t.Fatal(err)
		}
		return v[:sc.lanes]
	}
	var w [][]float64
	for _, ct := range sc.rep.weights {
		w = append(w, lane(ct))
	}
	return w, lane(sc.rep.bias)
}

func coeffNoiseStd(noise []float64) float64 {
	var v float64
	for _, x := range noise {
		v += x * x
	}
	return math.Sqrt(v / float64(len(noise)))
}

func roundTripModel(t testing.TB, em *EncryptedModel) *EncryptedModel {
	t.Helper()
	blob, err := em.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalEncryptedModel(blob)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

func roundTripBundle(t testing.TB, pub *PublicBundle) *PublicBundle {
	t.Helper()
	blob, err := pub.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalPublicBundle(blob)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

func decryptAll(sk *SecretKey, s *EncryptedSums) *rlwe.Plaintext {
	return rlwe.NewDecryptor(s.params, sk.sk).DecryptNew(s.ct)
}

func newEncoder() *hefloat.Encoder {
	p, _, _ := Parameters()
	return hefloat.NewEncoder(p)
}

// TestKeyModuliWithinBound: every RLWE sample the vendor publishes is modulo at most 438
// bits (the HomomorphicEncryption.org bound for dimension 2^14 at 128 bits), although the
// parameter set's whole Q*P is larger: the public key and the Galois keys use the first
// special prime only.
func TestKeyModuliWithinBound(t *testing.T) {
	_, pub := testKeys(t)
	pub = roundTripBundle(t, pub)
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	bits := func(levelQ, levelP int) int {
		m := big.NewInt(1)
		for _, q := range append(append([]uint64(nil), params.Q()[:levelQ+1]...), params.P()[:levelP+1]...) {
			m.Mul(m, new(big.Int).SetUint64(q))
		}
		return m.BitLen()
	}
	check := func(what string, levelQ, levelP int) {
		if b := bits(levelQ, levelP); b > 438 {
			t.Errorf("%s is modulo a %d-bit number, more than 438 bits", what, b)
		}
	}
	check("the public key", pub.pk.LevelQ(), pub.pk.LevelP())
	check("the relinearization key", pub.rlk.LevelQ(), pub.rlk.LevelP())
	for _, gk := range pub.gks {
		check(fmt.Sprintf("the Galois key %d", gk.GaloisElement), gk.LevelQ(), gk.LevelP())
	}
	if pub.rlk.LevelP() != 1 || len(pub.gks) == 0 || pub.gks[0].LevelQ() != topLevel {
		t.Fatalf("unexpected key levels: rlk P level %d", pub.rlk.LevelP())
	}
}
