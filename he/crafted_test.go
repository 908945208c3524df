package he

import (
	"errors"
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// These tests play a malicious vendor: it holds its own secret key and sends model
// ciphertexts that the honest tool would never produce, to learn more than per-group
// aggregates (issue #12, item 9). The platform must treat every row of a group alike
// whatever the ciphertexts hold.

// craftedModel returns an encrypted model whose header is that of an honest model of the
// same shape but whose bias and weight ciphertexts encrypt, under the vendor's secret key,
// the given slot vectors (nil: all zero). It goes through MarshalBinary and
// UnmarshalEncryptedModel, the path an upload takes.
func craftedModel(t *testing.T, sk *SecretKey, honest *EncryptedModel, bias []float64, weights [][]float64) *EncryptedModel {
	t.Helper()
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	level, logScale := modelLevelScale(honest.header.Kind)
	scale := rlwe.NewScale(math.Exp2(float64(logScale)))
	ecd := hefloat.NewEncoder(params)
	enc := rlwe.NewEncryptor(params, sk.sk)
	encrypt := func(v []float64) *rlwe.Ciphertext {
		if v == nil {
			v = make([]float64, params.MaxSlots())
		}
		pt := hefloat.NewPlaintext(params, level)
		pt.Scale = scale
		if err := ecd.Encode(v, pt); err != nil {
			t.Fatal(err)
		}
		ct, err := enc.EncryptNew(pt)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	m := &EncryptedModel{header: honest.header, bias: encrypt(bias)}
	for j := range honest.weights {
		var v []float64
		if j < len(weights) {
			v = weights[j]
		}
		m.weights = append(m.weights, encrypt(v))
	}
	return roundTripModel(t, m)
}

// constSlots is an honest (replicated) slot vector.
func constSlots(v float64) []float64 {
	params, _, _ := Parameters()
	out := make([]float64, params.MaxSlots())
	for i := range out {
		out[i] = v
	}
	return out
}

// scoreRows scores z (already in [-1, 1]) per group with the platform's code, floods the
// sums as before export and decrypts them with the vendor's key.
func scoreRows(t *testing.T, sk *SecretKey, pub *PublicBundle, em *EncryptedModel, group []int32, z [][]float64, groups int) ([]float64, float64) {
	t.Helper()
	sc, err := NewScorer(pub, em, groups)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Add(group, z); err != nil {
		t.Fatal(err)
	}
	sums, err := sc.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := sums.Flood(); err != nil {
		t.Fatal(err)
	}
	return decryptOrFail(t, sk, sums), sums.SumErrorStd()
}

// targetData is `groups` groups of `perGroup` rows over nf features; rows arrive group by
// group, so the first row of group g is the one the scorer puts in slot g of the first
// ciphertext.
func targetData(rng *rand.Rand, groups, perGroup, nf int) ([]int32, [][]float64) {
	var group []int32
	z := make([][]float64, nf)
	for g := 0; g < groups; g++ {
		for i := 0; i < perGroup; i++ {
			group = append(group, int32(g))
			for j := range z {
				z[j] = append(z[j], 2*rng.Float64()-1)
			}
		}
	}
	return group, z
}

// rotateGroup moves the first row of group g to the end of that group's rows, so that
// another of its rows arrives first; the group's multiset of rows is unchanged.
func rotateGroup(group []int32, z [][]float64, g int32) [][]float64 {
	lo, hi := -1, -1
	for i, gi := range group {
		if gi == g {
			if lo < 0 {
				lo = i
			}
			hi = i + 1
		}
	}
	out := make([][]float64, len(z))
	for j := range z {
		out[j] = append([]float64(nil), z[j]...)
		seg := out[j][lo:hi]
		first := seg[0]
		copy(seg, seg[1:])
		seg[len(seg)-1] = first
	}
	return out
}

// TestCraftedWeightCannotIsolateARow is the attack of issue #12 item 9: a logistic model
// whose first weight is 1 in the slot of one target row and 0 in every other slot, bias 0.
// If the platform used the weights slot by slot, every row but the target would score
// sigmoid(0) and the decrypted sum of the target's group (>= k rows) would give away the
// target's feature value. The platform must treat every row of the group alike: the sum
// may not change when another row of the group takes the target's place, and it must be
// what an honest replicated model with the lane's mean weight gives.
func TestCraftedWeightCannotIsolateARow(t *testing.T) {
	sk, pub := testKeys(t)
	rng := rand.New(rand.NewSource(21))
	honest, err := EncryptModel(pub, makeModel(KindLogistic, 3, rng))
	if err != nil {
		t.Fatal(err)
	}
	const groups, perGroup, target = 5, 60, 2
	group, z := targetData(rng, groups, perGroup, 3)
	sc, err := NewScorer(pub, honest, groups)
	if err != nil {
		t.Fatal(err)
	}
	rowsPerLane := sc.rowsPerLane
	if _, err := sc.Finish(); err != nil {
		t.Fatal(err)
	}

	const c = 0.125 // small enough that the sigmoid is far from saturation, so it inverts well
	oneHot := make([]float64, len(constSlots(0)))
	oneHot[target] = c // the slot of the first row of group `target`
	crafted := craftedModel(t, sk, honest, nil, [][]float64{oneHot})

	got, errStd := scoreRows(t, sk, pub, crafted, group, z, groups)
	moved, _ := scoreRows(t, sk, pub, crafted, group, rotateGroup(group, z, target), groups)

	// What the vendor would read off the sum if the weights were used slot by slot.
	R := honest.header.InputRange
	p := func(x float64) float64 { return 1/(1+math.Exp(-R*x)) - 0.5 }
	excess := got[target] - 0.5*perGroup
	recovered := 0.0
	if q := excess + 0.5; q > 0 && q < 1 {
		recovered = math.Log(q/(1-q)) / (R * c)
	}
	row := perGroup * target
	t.Logf("target row's feature: %.6f; read off the decrypted group sum: %.6f (sum - n/2 = %.6f, sigmoid(R c z)-1/2 = %.6f)",
		z[0][row], recovered, excess, p(c*z[0][row]))

	tol := 8 * errStd
	if d := math.Abs(got[target] - moved[target]); d > tol {
		t.Errorf("the group's sum changed by %.3g (> %.1g) when another row of the group took the target's slot: the crafted weight singles out one row", d, tol)
	}
	// The same sum as an honest model replicating the lane's mean weight, c/rowsPerLane.
	uniform := craftedModel(t, sk, honest, nil, [][]float64{constSlots(c / float64(rowsPerLane))})
	want, _ := scoreRows(t, sk, pub, uniform, group, z, groups)
	if d := math.Abs(got[target] - want[target]); d > tol {
		t.Errorf("crafted model gives %.6f for the target's group, the uniform model with the lane's mean weight %.6f", got[target], want[target])
	}
	// The other lanes carried weight 0: their groups score sigmoid(0) on every row.
	for g := 0; g < groups; g++ {
		if g != target && math.Abs(got[g]-0.5*perGroup) > tol {
			t.Errorf("group %d: %.6f, want %.6f (weight 0 in its lane)", g, got[g], 0.5*perGroup)
		}
	}
}

// TestCraftedModelsGetPerGroupAggregatesOnly plays further crafted ciphertexts. Each must
// give exactly what an honest model with the lane averages of its weights gives, and no
// group's sum may move when another of its rows takes a given slot.
func TestCraftedModelsGetPerGroupAggregatesOnly(t *testing.T) {
	sk, pub := testKeys(t)
	rng := rand.New(rand.NewSource(23))
	honest, err := EncryptModel(pub, makeModel(KindLogistic, 2, rng))
	if err != nil {
		t.Fatal(err)
	}
	const groups, perGroup, target = 4, 50, 1
	group, z := targetData(rng, groups, perGroup, 2)
	moved := rotateGroup(group, z, target)
	sc, err := NewScorer(pub, honest, groups)
	if err != nil {
		t.Fatal(err)
	}
	lanes, n := sc.lanes, float64(sc.rowsPerLane)
	if _, err := sc.Finish(); err != nil {
		t.Fatal(err)
	}
	slots := len(constSlots(0))
	oneAt := func(slot int, v float64) []float64 {
		x := make([]float64, slots)
		x[slot] = v
		return x
	}
	lane := func(l int, v float64) []float64 {
		x := make([]float64, slots)
		for s := l; s < slots; s += lanes {
			x[s] = v
		}
		return x
	}
	cases := []struct {
		name            string
		bias            []float64
		weights         [][]float64
		uniformBias     float64 // in the target's lane, after averaging
		uniformWeights  []float64
		otherGroupsHalf bool // the other groups score sigmoid(0) on every row
	}{
		// the bias, not a weight, singles out the target row
		{name: "one-hot bias", bias: oneAt(target, 0.5), uniformBias: 0.5 / n, otherGroupsHalf: true},
		// a weight so large in one slot that the target row alone leaves the sigmoid's
		// range: on the averaged model it is a moderate weight for the whole group
		{name: "huge weight in one slot", weights: [][]float64{oneAt(target, 0.5*n)}, uniformWeights: []float64{0.5}, otherGroupsHalf: true},
		// different weights in every slot of the target's lane
		{name: "weights that differ slot by slot", weights: [][]float64{func() []float64 {
			x := make([]float64, slots)
			for s := target; s < slots; s += lanes {
				x[s] = float64((s/lanes)%5) / 4 // 0, 1/4, ..., 1, repeating
			}
			return x
		}()}, uniformWeights: []float64{meanOfCycle(int(n), 5) / 4}, otherGroupsHalf: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			crafted := craftedModel(t, sk, honest, c.bias, c.weights)
			got, errStd := scoreRows(t, sk, pub, crafted, group, z, groups)
			again, _ := scoreRows(t, sk, pub, crafted, group, moved, groups)
			var uw [][]float64
			for _, w := range c.uniformWeights {
				uw = append(uw, constSlots(w))
			}
			uniform := craftedModel(t, sk, honest, constSlots(c.uniformBias), uw)
			want, _ := scoreRows(t, sk, pub, uniform, group, z, groups)
			tol := 8 * errStd
			if d := math.Abs(got[target] - again[target]); d > tol {
				t.Errorf("the target group's sum moved by %.3g (> %.1g) when another of its rows took the target's slot", d, tol)
			}
			if d := math.Abs(got[target] - want[target]); d > tol {
				t.Errorf("target group: crafted model %.6f, honest model with the lane's averages %.6f", got[target], want[target])
			}
			for g := 0; g < groups && c.otherGroupsHalf; g++ {
				if g != target && math.Abs(got[g]-0.5*perGroup) > tol {
					t.Errorf("group %d: %.6f, want %.6f (nothing in its lane)", g, got[g], 0.5*perGroup)
				}
			}
		})
	}

	// Values only in a lane no group uses: every real group sees weight 0, and the unused
	// lane's sum, which the vendor can decrypt too, holds nothing but noise.
	t.Run("unused lane", func(t *testing.T) {
		unused := groups + 1
		crafted := craftedModel(t, sk, honest, lane(unused, 3), [][]float64{lane(unused, 1e3)})
		sc, err := NewScorer(pub, crafted, groups)
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.Add(group, z); err != nil {
			t.Fatal(err)
		}
		sums, err := sc.Finish()
		if err != nil {
			t.Fatal(err)
		}
		if err := sums.Flood(); err != nil {
			t.Fatal(err)
		}
		all := make([]float64, slots)
		if err := newEncoder().Decode(decryptAll(sk, sums), all); err != nil {
			t.Fatal(err)
		}
		tol := 8 * sums.SumErrorStd()
		for g := 0; g < groups; g++ {
			if math.Abs(all[g]-0.5*perGroup) > tol {
				t.Errorf("group %d: %.6f, want %.6f", g, all[g], 0.5*perGroup)
			}
		}
		if math.Abs(all[unused]) > tol {
			t.Errorf("the unused lane's sum is %.3g, more than the flooding noise (%.1g)", all[unused], tol)
		}
	})
}

// meanOfCycle is the mean of (r mod m) for r = 0..n-1.
func meanOfCycle(n, m int) float64 {
	s := 0
	for r := 0; r < n; r++ {
		s += r % m
	}
	return float64(s) / float64(n)
}

// TestCraftedLinearWeightsSeeOnlyGroupSums: a linear scorer never lets a row meet a
// weight, only the clear per-group sums. Whatever a crafted weight holds slot by slot, two
// data sets with the same per-group sums (here: a feature moved from one row to another in
// each group) decrypt to the same values in every slot.
func TestCraftedLinearWeightsSeeOnlyGroupSums(t *testing.T) {
	sk, pub := testKeys(t)
	rng := rand.New(rand.NewSource(29))
	honest, err := EncryptModel(pub, makeModel(KindLinear, 2, rng))
	if err != nil {
		t.Fatal(err)
	}
	const groups, perGroup = 3, 40
	group, z := targetData(rng, groups, perGroup, 2)
	z2 := [][]float64{append([]float64(nil), z[0]...), append([]float64(nil), z[1]...)}
	for g := 0; g < groups; g++ {
		a, b := g*perGroup, g*perGroup+1
		d := math.Min(1-z2[0][a], z2[0][b]+1) / 2
		z2[0][a] += d
		z2[0][b] -= d
	}
	slots := len(constSlots(0))
	craft := make([]float64, slots)
	for s := range craft {
		craft[s] = float64(s%7) - 3
	}
	crafted := craftedModel(t, sk, honest, nil, [][]float64{craft, nil})
	decryptAllSlots := func(z [][]float64) ([]float64, float64) {
		sc, err := NewScorer(pub, crafted, groups)
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.Add(group, z); err != nil {
			t.Fatal(err)
		}
		sums, err := sc.Finish()
		if err != nil {
			t.Fatal(err)
		}
		if err := sums.Flood(); err != nil {
			t.Fatal(err)
		}
		all := make([]float64, slots)
		if err := newEncoder().Decode(decryptAll(sk, sums), all); err != nil {
			t.Fatal(err)
		}
		return all, sums.SumErrorStd()
	}
	a, errStd := decryptAllSlots(z)
	b, _ := decryptAllSlots(z2)
	for s := range a {
		if d := math.Abs(a[s] - b[s]); d > 8*errStd {
			t.Fatalf("slot %d: %.6g vs %.6g: the output depends on more than the per-group sums", s, a[s], b[s])
		}
	}
}

// TestCraftedCiphertextShapesRefused: a model ciphertext at another level or scale, with
// unreduced coefficients, or with any other layout is refused when the model is read,
// before it reaches an evaluation; the honest one passes.
func TestCraftedCiphertextShapesRefused(t *testing.T) {
	_, pub := testKeys(t)
	honest, err := EncryptModel(pub, makeModel(KindLogistic, 2, rand.New(rand.NewSource(31))))
	if err != nil {
		t.Fatal(err)
	}
	reencode := func(mutate func(m *EncryptedModel)) error {
		m := &EncryptedModel{header: honest.header, bias: honest.bias.CopyNew()}
		for _, w := range honest.weights {
			m.weights = append(m.weights, w.CopyNew())
		}
		mutate(m)
		blob, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		_, err = UnmarshalEncryptedModel(blob)
		return err
	}
	if err := reencode(func(*EncryptedModel) {}); err != nil {
		t.Fatalf("the honest model: %v", err)
	}
	params, _, _ := Parameters()
	cases := map[string]func(m *EncryptedModel){
		"another scale":      func(m *EncryptedModel) { m.weights[0].Scale = m.weights[0].Scale.Mul(rlwe.NewScale(1 << 20)) },
		"a lower level":      func(m *EncryptedModel) { hefloat.NewEvaluator(params, nil).DropLevel(m.weights[1], 1) },
		"not in NTT form":    func(m *EncryptedModel) { m.bias.IsNTT = false },
		"fewer slots":        func(m *EncryptedModel) { m.weights[0].LogDimensions.Cols-- },
		"degree 2":           func(m *EncryptedModel) { m.bias.Resize(2, m.bias.Level()) },
		"unreduced":          func(m *EncryptedModel) { m.weights[0].Value[1].Coeffs[3][17] = params.Q()[3] },
		"unreduced (2^64-1)": func(m *EncryptedModel) { m.bias.Value[0].Coeffs[0][0] = ^uint64(0) },
	}
	for name, mutate := range cases {
		err := reencode(mutate)
		if !errors.Is(err, ErrCorrupted) {
			t.Errorf("%s: got %v, want a refusal wrapping ErrCorrupted", name, err)
			continue
		}
		if !strings.Contains(err.Error(), "model ciphertext") {
			t.Errorf("%s: the error does not say which ciphertext: %v", name, err)
		}
	}
}
