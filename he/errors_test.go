package he

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"
)

func wantErr(t *testing.T, err error, sentinel error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected an error wrapping %v, got nil", sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("expected an error wrapping %v, got %v", sentinel, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not mention %q", err, p)
		}
	}
}

// smallSums returns flooded sums over a few rows, and the blob.
func smallSums(t *testing.T, kind string) (*EncryptedSums, []byte) {
	t.Helper()
	_, pub := testKeys(t)
	rng := rand.New(rand.NewSource(3))
	m := makeModel(kind, 3, rng)
	em, err := EncryptModel(pub, m)
	if err != nil {
		t.Fatal(err)
	}
	d := makeData(m, 200, 5, rng)
	s := score(t, pub, em, d, d.scaled(m), 5, 64)
	if err := s.Flood(); err != nil {
		t.Fatal(err)
	}
	blob, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return s, blob
}

// reseal rewrites the fingerprint of a blob and fixes its checksum, as a
// blob made under other parameters would look.
func reseal(blob []byte, fp [32]byte) []byte {
	out := append([]byte(nil), blob...)
	copy(out[8:40], fp[:])
	body := out[:len(out)-checksumSize]
	sum := sha256.Sum256(body)
	copy(out[len(out)-checksumSize:], sum[:])
	return out
}

func TestEnvelopeErrors(t *testing.T) {
	sk, pub := testKeys(t)
	_, blob := smallSums(t, KindLinear)

	_, err := UnmarshalSums([]byte("PAR1 this is a parquet file, not a key"))
	wantErr(t, err, ErrNotVeilHE, "not a Veil HE blob")
	_, err = UnmarshalSums(nil)
	wantErr(t, err, ErrNotVeilHE)

	_, err = UnmarshalSums(blob[:len(blob)-100])
	wantErr(t, err, ErrTruncated, fmt.Sprintf("truncated: expected %d bytes, got %d", len(blob), len(blob)-100))
	_, err = UnmarshalSums(blob[:20])
	wantErr(t, err, ErrTruncated, "got 20")

	bad := append([]byte(nil), blob...)
	bad[len(bad)/2] ^= 0x40
	_, err = UnmarshalSums(bad)
	wantErr(t, err, ErrCorrupted, "corrupted: checksum mismatch")

	_, err = UnmarshalSums(append(append([]byte(nil), blob...), 0))
	wantErr(t, err, ErrCorrupted, "1 unexpected bytes")

	bad = append([]byte(nil), blob...)
	bad[6] = 9
	_, err = UnmarshalSums(bad)
	wantErr(t, err, ErrVersion, "version 9")

	other := sha256.Sum256([]byte("LogN=15 parameters"))
	_, fp, _ := Parameters()
	_, err = UnmarshalSums(reseal(blob, other))
	wantErr(t, err, ErrOtherParameters, "encrypted sums made under other parameters",
		fmt.Sprintf("(fingerprint %s, expected %s)", shortHex(other), shortHex(fp)))

	skBlob, err := sk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	_, err = UnmarshalPublicBundle(skBlob)
	wantErr(t, err, ErrWrongKind, "this is a secret key; upload the public bundle instead")
	_, err = UnmarshalEncryptedModel(skBlob)
	wantErr(t, err, ErrWrongKind, "this is a secret key")
	pubBlob, err := pub.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	_, err = UnmarshalEncryptedModel(pubBlob)
	wantErr(t, err, ErrWrongKind, "this is a public bundle, expected a encrypted model")

	back, err := UnmarshalSecretKey(skBlob)
	if err != nil || back.KeyID() != sk.KeyID() {
		t.Fatalf("secret key round trip: %v", err)
	}
}

func TestOtherKeyRefused(t *testing.T) {
	_, pub := testKeys(t)
	m := makeModel(KindLinear, 3, rand.New(rand.NewSource(1)))
	em, err := EncryptModel(otherPub, m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewScorer(pub, em, 5)
	wantErr(t, err, ErrOtherKey, otherPub.KeyID(), pub.KeyID())

	s, blob := smallSums(t, KindLinear)
	_ = s
	sums, err := UnmarshalSums(blob)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decrypt(otherSK, sums)
	wantErr(t, err, ErrOtherKey, "use the secret key of that key set")
}

func TestMissingGaloisKey(t *testing.T) {
	_, pub := testKeys(t)
	em, err := EncryptModel(pub, makeModel(KindLogistic, 3, rand.New(rand.NewSource(1))))
	if err != nil {
		t.Fatal(err)
	}
	cut := *pub
	cut.gks = pub.gks[:len(pub.gks)-1] // drop the largest rotation
	rots := pub.Rotations()
	_, err = NewScorer(&cut, em, testGroups)
	wantErr(t, err, ErrMissingKey, fmt.Sprintf("the public bundle has no Galois key for rotation %d; regenerate keys with groups >= %d", rots[len(rots)-1], testGroups))

	// a bundle made for many groups lacks the small rotations a scorer
	// with few groups would prefer, but the scorer then uses the bundle's
	// lane width and needs nothing more
	if _, err := NewScorer(pub, em, 2); err != nil {
		t.Fatal(err)
	}
}

func TestUnfloodedExportRefused(t *testing.T) {
	_, pub := testKeys(t)
	em, err := EncryptModel(pub, makeModel(KindLinear, 2, rand.New(rand.NewSource(1))))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := NewScorer(pub, em, 3)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := sc.Finish()
	if err != nil {
		t.Fatal(err)
	}
	_, err = sums.MarshalBinary()
	wantErr(t, err, ErrState, "call Flood before export")
	if err := sums.Flood(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, sums.Flood(), ErrState, "already flooded")
	wantErr(t, sc.Add(nil, [][]float64{nil, nil}), ErrState, "Add after Finish")
}

func TestOutOfRangeInputRefused(t *testing.T) {
	_, pub := testKeys(t)
	m := makeModel(KindLogistic, 3, rand.New(rand.NewSource(1)))
	em, err := EncryptModel(pub, m)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := NewScorer(pub, em, 4)
	if err != nil {
		t.Fatal(err)
	}
	col := func(v ...float64) []float64 { return v }
	group := []int32{0, 1, 2}
	for _, bad := range []float64{1.2345678, -1.0000001, math.NaN(), math.Inf(1)} {
		err := sc.Add(group, [][]float64{col(0, 0, 0), col(0.5, bad, 0), col(0, 0, 0)})
		wantErr(t, err, ErrInvalidInput, `feature "fb"`, "outside [-1, 1]")
		if strings.Contains(err.Error(), "1.2345678") || strings.Contains(err.Error(), "1.0000001") || strings.Contains(err.Error(), "Inf") {
			t.Fatalf("error leaks the value: %v", err)
		}
	}
	err = sc.Add(group, [][]float64{col(0, 0, 0), col(0, 0, 0)})
	wantErr(t, err, ErrInvalidInput, "got 2 feature columns, the model has 3")
	err = sc.Add([]int32{0, 9, 1}, [][]float64{col(0, 0, 0), col(0, 0, 0), col(0, 0, 0)})
	wantErr(t, err, ErrInvalidInput, "group 9")
	if sc.totalRows != 0 {
		t.Fatalf("refused batches must not be scored, %d rows were", sc.totalRows)
	}
	if _, err := sc.Finish(); err != nil {
		t.Fatal(err)
	}
}

func TestNoSecretKeyInPublicBlobs(t *testing.T) {
	sk, pub := testKeys(t)
	skBytes, err := sk.sk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	pubBlob, err := pub.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	em, err := EncryptModel(pub, makeModel(KindLogistic, 4, rand.New(rand.NewSource(2))))
	if err != nil {
		t.Fatal(err)
	}
	emBlob, err := em.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	_, sumsBlob := smallSums(t, KindLogistic)
	// The secret key polynomial as serialized, and 64-byte windows of it.
	for name, blob := range map[string][]byte{"public bundle": pubBlob, "encrypted model": emBlob, "encrypted sums": sumsBlob} {
		if bytes.Contains(blob, skBytes) {
			t.Fatalf("%s contains the secret key", name)
		}
		for off := 64; off+64 <= len(skBytes); off += len(skBytes) / 16 {
			if bytes.Contains(blob, skBytes[off:off+64]) {
				t.Fatalf("%s contains 64 bytes of the secret key at offset %d", name, off)
			}
		}
	}
	if s := fmt.Sprintf("%v %+v %#v", sk, sk, sk); strings.Count(s, "key_id="+sk.KeyID()) != 3 || len(s) > 200 {
		t.Fatalf("secret key prints more than its ID: %.200s", s)
	}
	// the public header of the model carries no weights or standardization
	h := em.Header()
	if h.Degree == 0 || h.KeyID != pub.KeyID() || len(h.Features) != 4 {
		t.Fatalf("unexpected header %+v", h)
	}
	sections, err := openEnvelope(emBlob, kindEncryptedModel)
	if err != nil {
		t.Fatal(err)
	}
	for _, word := range []string{"weight", "bias", "mean", "scale"} {
		if strings.Contains(string(sections[0]), word) {
			t.Fatalf("model header mentions %q: %s", word, sections[0])
		}
	}
}

func TestModelValidation(t *testing.T) {
	good := func() *Model { return makeModel(KindLinear, 2, rand.New(rand.NewSource(5))) }
	cases := []struct {
		name   string
		change func(m *Model)
		want   string
	}{
		{"unknown kind", func(m *Model) { m.Kind = "tree" }, `unknown kind "tree"`},
		{"length mismatch", func(m *Model) { m.Weights = m.Weights[:1] }, "1 weights for 2 features"},
		{"bounds", func(m *Model) { m.Features[1].Lower = m.Features[1].Upper }, "lower >= upper"},
		{"scale", func(m *Model) { m.Features[0].Scale = 0 }, "scale <= 0"},
		{"nan weight", func(m *Model) { m.Weights[0] = math.NaN() }, "weight 0"},
		{"inf bias", func(m *Model) { m.Bias = math.Inf(-1) }, "bias is not a finite number"},
		{"nan bound", func(m *Model) { m.Features[0].Upper = math.NaN() }, "non-finite"},
		{"duplicate", func(m *Model) { m.Features[1].Name = m.Features[0].Name }, "appears twice"},
		{"no features", func(m *Model) { m.Features, m.Weights = nil, nil }, "0 features"},
		{"too many", func(m *Model) {
			for len(m.Features) <= MaxFeatures {
				m.Features = append(m.Features, Feature{Name: fmt.Sprint("x", len(m.Features)), Lower: 0, Upper: 1, Scale: 1})
				m.Weights = append(m.Weights, 0)
			}
		}, "257 features"},
		{"range on linear", func(m *Model) { m.InputRange = 4 }, "logistic models only"},
		{"logistic without range", func(m *Model) { m.Kind = KindLogistic }, "input_range must be"},
		{"range too small", func(m *Model) {
			m.Kind, m.InputRange = KindLogistic, 8
			m.Weights[0] = 1e4
		}, "raise input_range"},
	}
	for _, c := range cases {
		m := good()
		c.change(m)
		wantErr(t, m.Validate(), ErrInvalidModel, c.want)
	}
	_, err := ParseModel([]byte(`{"kind":"linear","features":[{"name":"a","lower":0,"upper":1,"mean":0,"scale":1}],"weights":[1],"bias":0,"colour":"red"}`))
	wantErr(t, err, ErrInvalidModel, "colour")
	m, err := ParseModel([]byte(`{"kind":"logistic","features":[{"name":"income","lower":0,"upper":200000,"mean":50000,"scale":20000}],"weights":[0.5],"bias":0.1,"input_range":8}`))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := chooseSigmoidDegree(m.InputRange); err != nil || d > maxSigmoidDegree {
		t.Fatalf("degree %d, %v", d, err)
	}
	if _, err := chooseSigmoidDegree(12); err == nil {
		t.Fatal("input_range 12 should be refused")
	}
	if _, err := chooseSigmoidDegree(MaxInputRange); err != nil {
		t.Fatalf("MaxInputRange must be supported: %v", err)
	}
}

// TestSkewedGroups exercises the packing when one group dominates (batches
// flushed half-empty once maxOpenBatches are open) and groups with no rows.
func TestSkewedGroups(t *testing.T) {
	sk, pub := testKeys(t)
	rng := rand.New(rand.NewSource(11))
	m := makeModel(KindLogistic, 4, rng)
	em, err := EncryptModel(pub, m)
	if err != nil {
		t.Fatal(err)
	}
	const groups = 6
	rows := 2000
	d := makeData(m, rows, groups, rng)
	for i := range d.group {
		switch {
		case i%10 != 0:
			d.group[i] = 0
		case d.group[i] == 4:
			d.group[i] = 3 // group 4 stays empty
		}
	}
	sums := score(t, pub, em, d, d.scaled(m), groups, 999)
	if err := sums.Flood(); err != nil {
		t.Fatal(err)
	}
	got := decryptOrFail(t, sk, sums)
	want, mass := d.expected(m, groups)
	// empty groups are judged on the absolute flooding error
	for g := range want {
		if math.Abs(got[g]-want[g]) > math.Max(relTol*mass[g], 6*sums.SumErrorStd()) {
			t.Errorf("group %d: got %.6f want %.6f", g, got[g], want[g])
		}
	}
	t.Logf("sum error std after flooding %.2e", sums.SumErrorStd())
}

func TestAddNoise(t *testing.T) {
	sk, pub := testKeys(t)
	rng := rand.New(rand.NewSource(12))
	m := makeModel(KindLogistic, 3, rng)
	em, err := EncryptModel(pub, m)
	if err != nil {
		t.Fatal(err)
	}
	d := makeData(m, 500, 3, rng)
	sums := score(t, pub, em, d, d.scaled(m), 3, 500)
	noise := []float64{10, -20.5, 3}
	wantErr(t, sums.AddNoise(noise[:2]), ErrInvalidInput, "2 noise values for 3 groups")
	if err := sums.AddNoise(noise); err != nil {
		t.Fatal(err)
	}
	if err := sums.Flood(); err != nil {
		t.Fatal(err)
	}
	// every copy of a group's sum carries the noise: decrypt all slots
	params := sums.params
	all := make([]float64, params.MaxSlots())
	pt := decryptAll(sk, sums)
	if err := newEncoder().Decode(pt, all); err != nil {
		t.Fatal(err)
	}
	want, _ := d.expected(m, 3)
	for s, v := range all {
		g := s % sums.lanes
		exp := 0.0
		if g < 3 {
			exp = want[g] + noise[g]
		}
		if math.Abs(v-exp) > 1e-2 {
			t.Fatalf("slot %d (group %d): got %.4f want %.4f", s, g, v, exp)
		}
	}
}
