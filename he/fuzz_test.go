package he

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand"
	"runtime"
	"sync"
	"testing"
)

// Fuzz targets for everything in this package that reads untrusted bytes. Each must never
// panic and must allocate at most a small multiple of its input: a length field claiming
// terabytes is refused before anything allocates it. Run one with, for example,
//
//	go test -tags duckdb_arrow,seccomp -run XXX -fuzz FuzzUnmarshalPublicBundle -fuzztime 60s ./he/
//
// The envelope targets take raw bytes; the others take a payload (the sections) and seal it
// with a valid envelope, so that the fuzzer gets past the checksum to the parsers.

// maxAlloc bounds what a parse may allocate for an input of n bytes: the keys and
// ciphertexts it builds are about the size of the input (the Galois keys twice, with their
// expanded uniform halves), plus fixed buffers.
func maxAlloc(n int) uint64 { return 4*uint64(n) + 16<<20 }

// bounded runs parse and fails the test if it allocated more than maxAlloc(n).
func bounded(t *testing.T, n int, parse func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	parse()
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > maxAlloc(n) {
		t.Fatalf("parsing %d bytes allocated %d bytes (more than %d)", n, got, maxAlloc(n))
	}
}

var fuzzSeeds struct {
	once                sync.Once
	bundle, model, sums []byte
	lin                 []byte
	err                 error
}

// seedBlobs returns valid blobs: a bundle with the fewest keys (MaxGroups lanes), a
// logistic and a linear model of one feature, and flooded sums. It also warms the layout
// cache, whose templates are built once per process and are not the parse's allocation.
func seedBlobs(f *testing.F) (bundle, model, linear, sums []byte) {
	f.Helper()
	s := &fuzzSeeds
	s.once.Do(func() {
		_, pub, err := GenerateKeys(MaxGroups)
		if err != nil {
			s.err = err
			return
		}
		if s.bundle, s.err = pub.MarshalBinary(); s.err != nil {
			return
		}
		rng := rand.New(rand.NewSource(1))
		em, err := EncryptModel(pub, makeModel(KindLogistic, 1, rng))
		if err != nil {
			s.err = err
			return
		}
		if s.model, s.err = em.MarshalBinary(); s.err != nil {
			return
		}
		lm, err := EncryptModel(pub, makeModel(KindLinear, 1, rng))
		if err != nil {
			s.err = err
			return
		}
		if s.lin, s.err = lm.MarshalBinary(); s.err != nil {
			return
		}
		sc, err := NewScorer(pub, lm, 2)
		if err != nil {
			s.err = err
			return
		}
		if s.err = sc.Add([]int32{0, 1}, [][]float64{{0.5, -0.5}}); s.err != nil {
			return
		}
		sums, err := sc.Finish()
		if err != nil {
			s.err = err
			return
		}
		if s.err = sums.Flood(); s.err != nil {
			return
		}
		if s.sums, s.err = sums.MarshalBinary(); s.err != nil {
			return
		}
		for _, b := range [][]byte{s.bundle, s.model, s.lin, s.sums} { // warm the layouts
			UnmarshalPublicBundle(b)
			UnmarshalEncryptedModel(b)
			UnmarshalSums(b)
		}
	})
	if s.err != nil {
		f.Fatal(s.err)
	}
	return s.bundle, s.model, s.lin, s.sums
}

// sectionsOf returns a valid blob's sections.
func sectionsOf(f *testing.F, blob []byte) [][]byte {
	f.Helper()
	n := binary.BigEndian.Uint64(blob[40:48])
	secs, err := splitSections(blob[headerSize : headerSize+int(n)])
	if err != nil {
		f.Fatal(err)
	}
	return secs
}

// sealPayload wraps a payload in a valid envelope of the given kind.
func sealPayload(kind blobKind, payload []byte) []byte {
	_, fp, _ := Parameters()
	out := make([]byte, 0, headerSize+len(payload)+checksumSize)
	out = append(out, magic[:]...)
	out = append(out, envelopeVersion, byte(kind))
	out = append(out, fp[:]...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(payload)))
	out = append(out, payload...)
	sum := sha256.Sum256(out)
	return append(out, sum[:]...)
}

// patched applies a fuzzed patch to a valid blob's sections and seals the result. The
// blobs are megabytes, too large for the fuzzer to mutate directly; the patch is small.
// It is a sequence of edits, each: a section byte (mod the number of sections), a 16-bit
// offset into the section's first 64 KiB (where the length prefixes and metadata are), a
// length n < 16 and n bytes to write there; a section byte of 0xff truncates that section
// (the next byte's) at the offset instead, and 0xfe appends the n bytes as a new section.
func patched(kind blobKind, base [][]byte, patch []byte) []byte {
	secs := make([][]byte, len(base))
	copy(secs, base)
	cloned := make([]bool, len(base))
	for len(patch) >= 4 {
		op, off, n := patch[0], int(binary.BigEndian.Uint16(patch[1:3])), int(patch[3]&15)
		patch = patch[4:]
		data := patch[:min(n, len(patch))]
		patch = patch[len(data):]
		switch op {
		case 0xfe:
			secs = append(secs, append([]byte(nil), data...))
			cloned = append(cloned, true)
			continue
		case 0xff:
			if len(data) > 0 && len(secs) > 0 {
				i := int(data[0]) % len(secs)
				secs[i] = secs[i][:min(off, len(secs[i]))]
			}
			continue
		}
		if len(secs) == 0 {
			continue
		}
		i := int(op) % len(secs)
		if len(secs[i]) == 0 {
			continue
		}
		if !cloned[i] {
			secs[i], cloned[i] = append([]byte(nil), secs[i]...), true
		}
		off %= len(secs[i])
		copy(secs[i][off:], data)
	}
	var payload []byte
	for _, s := range secs {
		payload = binary.BigEndian.AppendUint64(payload, uint64(len(s)))
		payload = append(payload, s...)
	}
	return sealPayload(kind, payload)
}

// patchSeeds: no edit, a first section length word of a key claiming 2^62 bytes (the shape
// of TestHEUploadCannotCrashTheDaemon), metadata bytes, a truncation, an extra section.
var patchSeeds = [][]byte{
	{},
	{1, 0, 0, 8, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	{2, 0, 8, 8, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	{1, 0, 40, 4, '9', '9', '9', '9'},
	{0, 0, 2, 3, 'x', 'x', 'x'},
	{0xff, 0, 100, 1, 1},
	{0xfe, 0, 0, 3, 1, 2, 3},
}

func FuzzEnvelope(f *testing.F) {
	bundle, model, lin, sums := seedBlobs(f)
	for _, b := range [][]byte{bundle[:4096], model[:4096], lin[:4096], sums[:4096], nil, []byte("VEILHE"), []byte("PAR1 not a blob")} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		bounded(t, len(b), func() {
			BlobKind(b)
			PeekBundle(b)
			PeekModelHeader(b)
			PeekPrefix(b)
			PeekPrepared(b)
			UnmarshalPreparedModel(b)
			for _, k := range []blobKind{kindPublicBundle, kindSecretKey, kindEncryptedModel, kindEncryptedSums, kindPreparedModel} {
				openEnvelope(b, k)
			}
		})
	})
}

// headerSeeds are payloads of a header section and small stand-ins for the keys.
func headerSeeds(f *testing.F, blob []byte) [][]byte {
	secs := sectionsOf(f, blob)
	var full, few []byte
	for i, s := range secs {
		if i > 0 {
			s = s[:16]
		}
		full = binary.BigEndian.AppendUint64(full, uint64(len(s)))
		full = append(full, s...)
		if i < 3 {
			few = binary.BigEndian.AppendUint64(few, uint64(len(s)))
			few = append(few, s...)
		}
	}
	return [][]byte{full, few}
}

func FuzzPeekBundle(f *testing.F) {
	bundle, _, _, _ := seedBlobs(f)
	for _, p := range headerSeeds(f, bundle) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		b := sealPayload(kindPublicBundle, payload)
		bounded(t, len(b), func() { PeekBundle(b) })
	})
}

func FuzzPeekModelHeader(f *testing.F) {
	_, model, lin, _ := seedBlobs(f)
	for _, b := range [][]byte{model, lin} {
		for _, p := range headerSeeds(f, b) {
			f.Add(p)
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		b := sealPayload(kindEncryptedModel, payload)
		bounded(t, len(b), func() { PeekModelHeader(b) })
	})
}

func FuzzUnmarshalPublicBundle(f *testing.F) {
	bundle, _, _, _ := seedBlobs(f)
	base := sectionsOf(f, bundle)
	if _, err := UnmarshalPublicBundle(patched(kindPublicBundle, base, nil)); err != nil {
		f.Fatalf("the unpatched bundle must parse: %v", err)
	}
	for _, p := range patchSeeds {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, patch []byte) {
		b := patched(kindPublicBundle, base, patch)
		bounded(t, len(b), func() { UnmarshalPublicBundle(b) })
	})
}

func FuzzUnmarshalEncryptedModel(f *testing.F) {
	_, model, lin, _ := seedBlobs(f)
	bases := [][][]byte{sectionsOf(f, model), sectionsOf(f, lin)}
	for _, base := range bases {
		if _, err := UnmarshalEncryptedModel(patched(kindEncryptedModel, base, nil)); err != nil {
			f.Fatalf("the unpatched model must parse: %v", err)
		}
	}
	for _, p := range patchSeeds {
		f.Add(false, p)
		f.Add(true, p)
	}
	f.Fuzz(func(t *testing.T, linear bool, patch []byte) {
		base := bases[0]
		if linear {
			base = bases[1]
		}
		b := patched(kindEncryptedModel, base, patch)
		bounded(t, len(b), func() { UnmarshalEncryptedModel(b) })
	})
}

// FuzzUnmarshalSums: the vendor side reads what the platform exported.
func FuzzUnmarshalSums(f *testing.F) {
	_, _, _, sums := seedBlobs(f)
	base := sectionsOf(f, sums)
	if _, err := UnmarshalSums(patched(kindEncryptedSums, base, nil)); err != nil {
		f.Fatalf("the unpatched sums must parse: %v", err)
	}
	for _, p := range patchSeeds {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, patch []byte) {
		b := patched(kindEncryptedSums, base, patch)
		bounded(t, len(b), func() { UnmarshalSums(b) })
	})
}
