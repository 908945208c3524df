package he

import (
	"errors"
	"math"
	"math/rand"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// prepareRoundTrip prepares em with pub as the platform does at upload (digests of the
// blobs, MarshalBinary, UnmarshalPreparedModel) and returns the parsed prepared model and
// the two digests.
func prepareRoundTrip(t *testing.T, pub *PublicBundle, em *EncryptedModel) (*PreparedModel, string, string) {
	t.Helper()
	mb, err := em.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	bb, err := pub.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	md, bd := Digest(mb), Digest(bb)
	p, err := PrepareModel(pub, em, md, bd)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if k, err := BlobKind(blob); err != nil || k != BlobPreparedModel {
		t.Fatalf("BlobKind of a prepared model = %q, %v", k, err)
	}
	back, err := UnmarshalPreparedModel(blob)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.CheckBinding(md, bd); err != nil {
		t.Fatal(err)
	}
	return back, md, bd
}

// TestPreparedModelIsTheScorersOwnAverage: the averages prepared once per model are, bit for
// bit, those a scorer computes itself, and a scorer of the same lane width takes them.
func TestPreparedModelIsTheScorersOwnAverage(t *testing.T) {
	_, pub := testKeys(t)
	em, err := EncryptModel(pub, makeModel(KindLogistic, 3, rand.New(rand.NewSource(5))))
	if err != nil {
		t.Fatal(err)
	}
	prep, _, _ := prepareRoundTrip(t, pub, em)
	own, err := NewScorer(pub, em, testGroups)
	if err != nil {
		t.Fatal(err)
	}
	if err := own.rep.wait(); err != nil {
		t.Fatal(err)
	}
	for i, ct := range append([]*rlwe.Ciphertext{own.rep.bias}, own.rep.weights...) {
		got := append([]*rlwe.Ciphertext{prep.bias}, prep.weights...)[i]
		if !ct.Value[0].Equal(&got.Value[0]) || !ct.Value[1].Equal(&got.Value[1]) || ct.Scale.Cmp(got.Scale) != 0 {
			t.Fatalf("prepared ciphertext %d differs from the scorer's own lane average", i)
		}
	}
	own.Finish()
	sc, err := NewPreparedScorer(pub, em, prep, testGroups)
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Prepared() {
		t.Fatal("a scorer of the prepared lane width did not take the prepared averages")
	}
	sc.Finish()
	// More groups than the bundle's lanes: another layout, computed by the scorer.
	wide, err := NewPreparedScorer(pub, em, prep, 2*testGroups)
	if err != nil {
		t.Fatal(err)
	}
	if wide.Prepared() || wide.lanes == prep.binding.Lanes {
		t.Fatalf("a scorer of %d lanes took averages prepared over %d", wide.lanes, prep.binding.Lanes)
	}
	wide.Finish()
	// Another model of the same key set and shape is not this one: the binding says so.
	other, err := EncryptModel(pub, makeModel(KindLogistic, 3, rand.New(rand.NewSource(6))))
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := other.MarshalBinary()
	if err := prep.CheckBinding(Digest(ob), prep.binding.Bundle); !errors.Is(err, ErrOtherKey) {
		t.Fatalf("binding check with another model's digest: %v", err)
	}
	// Another key set or another shape is refused by the scorer itself.
	opub := otherPub
	oem, err := EncryptModel(opub, makeModel(KindLogistic, 3, rand.New(rand.NewSource(5))))
	if err != nil {
		t.Fatal(err)
	}
	if sc, err := NewPreparedScorer(opub, oem, prep, testGroups); err != nil || sc.Prepared() {
		t.Fatalf("a scorer of another key set: err %v, took the prepared averages %v", err, err == nil && sc.Prepared())
	} else {
		sc.Finish()
	}
	four, err := EncryptModel(pub, makeModel(KindLogistic, 4, rand.New(rand.NewSource(5))))
	if err != nil {
		t.Fatal(err)
	}
	if sc, err := NewPreparedScorer(pub, four, prep, testGroups); err != nil || sc.Prepared() {
		t.Fatalf("a scorer of a 4-feature model with 3 prepared weights: err %v", err)
	} else {
		sc.Finish()
	}
}

// TestPreparedModelRefusesWhatItDidNotWrite: a prepared model is parsed against its exact
// layout; a model blob is not a prepared model, and a header that lies about its lanes
// does not fit its ciphertexts.
func TestPreparedModelRefusesWhatItDidNotWrite(t *testing.T) {
	_, pub := testKeys(t)
	em, err := EncryptModel(pub, makeModel(KindLogistic, 2, rand.New(rand.NewSource(7))))
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := em.MarshalBinary()
	if _, err := UnmarshalPreparedModel(mb); !errors.Is(err, ErrWrongKind) {
		t.Fatalf("an encrypted model parsed as a prepared model: %v", err)
	}
	prep, _, _ := prepareRoundTrip(t, pub, em)
	lying := *prep
	lying.binding.Lanes *= 2
	blob, err := lying.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UnmarshalPreparedModel(blob); !errors.Is(err, ErrCorrupted) {
		t.Fatalf("a prepared model whose header claims other lanes than its scale: %v", err)
	}
	good, _ := prep.MarshalBinary()
	good[len(good)/2] ^= 1
	if _, err := UnmarshalPreparedModel(good); !errors.Is(err, ErrCorrupted) {
		t.Fatalf("a damaged prepared model: %v", err)
	}
	lin, err := EncryptModel(pub, makeModel(KindLinear, 2, rand.New(rand.NewSource(7))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareModel(pub, lin, prep.binding.Model, prep.binding.Bundle); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("preparing a linear model: %v", err)
	}
	h, err := PeekPrefix(mb[:4096])
	if err != nil || h.Kind != BlobEncryptedModel || h.KeyID != pub.KeyID() || h.Model != KindLogistic {
		t.Fatalf("PeekPrefix of a model: %+v, %v", h, err)
	}
}

// TestCraftedWeightNeutralisedThroughPreparation plays TestCraftedWeightCannotIsolateARow's
// crafted model through the upload-time path: prepared by the platform, then scored with the
// prepared averages. The target's group sum does not depend on which of its rows takes the
// crafted slot and equals that of the honest model with the lane's mean weight; the other
// groups see weight 0.
func TestCraftedWeightNeutralisedThroughPreparation(t *testing.T) {
	sk, pub := testKeys(t)
	rng := rand.New(rand.NewSource(21))
	honest, err := EncryptModel(pub, makeModel(KindLogistic, 3, rng))
	if err != nil {
		t.Fatal(err)
	}
	const groups, perGroup, target = 5, 60, 2
	group, z := targetData(rng, groups, perGroup, 3)
	params, _, _ := Parameters()
	rowsPerLane := params.MaxSlots() / max(lanesFor(groups), pub.Lanes())

	const c = 0.125
	oneHot := make([]float64, params.MaxSlots())
	oneHot[target] = c
	crafted := craftedModel(t, sk, honest, nil, [][]float64{oneHot})
	prep, _, _ := prepareRoundTrip(t, pub, crafted)

	score := func(z [][]float64) ([]float64, float64) {
		sc, err := NewPreparedScorer(pub, crafted, prep, groups)
		if err != nil {
			t.Fatal(err)
		}
		if !sc.Prepared() {
			t.Fatal("the scorer did not take the prepared averages")
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
	got, errStd := score(z)
	moved, _ := score(rotateGroup(group, z, target))
	tol := 8 * errStd
	if d := math.Abs(got[target] - moved[target]); d > tol {
		t.Errorf("the group's sum changed by %.3g (> %.1g) when another row took the target's slot: the prepared averages let the crafted weight single out a row", d, tol)
	}
	uniform := craftedModel(t, sk, honest, nil, [][]float64{constSlots(c / float64(rowsPerLane))})
	want, _ := scoreRows(t, sk, pub, uniform, group, z, groups)
	if d := math.Abs(got[target] - want[target]); d > tol {
		t.Errorf("the target's group: %.6f through the prepared averages, %.6f with the uniform model of the lane's mean weight", got[target], want[target])
	}
	// The other lanes carried weight 0: their groups score sigmoid(0) on every row.
	for g := 0; g < groups; g++ {
		if g != target && math.Abs(got[g]-0.5*perGroup) > tol {
			t.Errorf("group %d: %.6f, want %.6f (weight 0 in its lane)", g, got[g], 0.5*perGroup)
		}
	}
}

// TestUnmarshalDigestIsDigest: the parsers that also return the blob's digest (one hash for
// the checksum and the digest) return Digest of the blob, and refuse a damaged blob as the
// plain parsers do.
func TestUnmarshalDigestIsDigest(t *testing.T) {
	_, pub := testKeys(t)
	em, err := EncryptModel(pub, makeModel(KindLogistic, 3, rand.New(rand.NewSource(2))))
	if err != nil {
		t.Fatal(err)
	}
	pb, err := pub.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	mb, err := em.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, d, err := UnmarshalPublicBundleDigest(pb); err != nil || d != Digest(pb) {
		t.Fatalf("bundle: digest %q, error %v; want %q", d, err, Digest(pb))
	}
	if _, d, err := UnmarshalEncryptedModelDigest(mb); err != nil || d != Digest(mb) {
		t.Fatalf("model: digest %q, error %v; want %q", d, err, Digest(mb))
	}
	pb[len(pb)/2] ^= 1
	if _, _, err := UnmarshalPublicBundleDigest(pb); !errors.Is(err, ErrCorrupted) {
		t.Fatalf("damaged bundle: %v", err)
	}
	mb[len(mb)-1] ^= 1
	if _, _, err := UnmarshalEncryptedModelDigest(mb); !errors.Is(err, ErrCorrupted) {
		t.Fatalf("damaged model: %v", err)
	}
}
