package he

import (
	"math"
	"math/rand"
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
