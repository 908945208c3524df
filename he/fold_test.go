package he

import (
	"math"
	"math/rand"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// TestFoldMatchesRotations: the folder's sum of rotations decrypts to the same slots as
// lattigo's rotations, at the model's level and at the output level, on a ciphertext whose
// slots all differ (so a wrong rotation or a lost digit shows), and the fast path is the one
// taken with the bundle's keys.
func TestFoldMatchesRotations(t *testing.T) {
	sk, pub := testKeys(t)
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	eval := hefloat.NewEvaluator(params, pub.evaluationKeys())
	f := newFolder(eval)
	lanes := pub.lanes
	n := params.MaxSlots() / lanes
	if !f.usable(lanes, n, topLevel) {
		t.Fatal("the bundle's Galois keys do not take the folder's fast path")
	}
	rng := rand.New(rand.NewSource(7))
	values := make([]float64, params.MaxSlots())
	for i := range values {
		values[i] = 2*rng.Float64() - 1
	}
	want := make([]float64, len(values))
	for s := range want {
		for r := 0; r < n; r++ {
			want[s] += values[(s+r*lanes)%len(values)]
		}
	}
	ecd := hefloat.NewEncoder(params)
	enc := rlwe.NewEncryptor(params, sk.sk)
	dec := rlwe.NewDecryptor(params, sk.sk)
	for _, level := range []int{topLevel, outLevel} {
		pt := hefloat.NewPlaintext(params, level)
		if err := ecd.Encode(values, pt); err != nil {
			t.Fatal(err)
		}
		ct, err := enc.EncryptNew(pt)
		if err != nil {
			t.Fatal(err)
		}
		fast := hefloat.NewCiphertext(params, 1, level)
		if err := foldLanes(eval, f, ct, lanes, n, fast); err != nil {
			t.Fatal(err)
		}
		slow := hefloat.NewCiphertext(params, 1, level)
		if err := rotateFold(eval, ct, lanes, n, slow); err != nil {
			t.Fatal(err)
		}
		got := [2][]float64{make([]float64, len(values)), make([]float64, len(values))}
		for k, c := range []*rlwe.Ciphertext{fast, slow} {
			if err := ecd.Decode(dec.DecryptNew(c), got[k]); err != nil {
				t.Fatal(err)
			}
		}
		var worst [2]float64
		for s := range want {
			for k := range got {
				worst[k] = math.Max(worst[k], math.Abs(got[k][s]-want[s]))
			}
		}
		t.Logf("level %d: largest slot error, folder %.2e, lattigo's rotations %.2e", level, worst[0], worst[1])
		if worst[0] > 1e-6 || worst[0] > 2*worst[1]+1e-9 {
			t.Errorf("level %d: the folder is off by %.2e (lattigo's rotations by %.2e)", level, worst[0], worst[1])
		}
	}
}
