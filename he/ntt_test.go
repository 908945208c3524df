package he

import (
	"math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// TestFastNTTMatchesLattigo: for every prime of the parameter set that fastNTT takes, its
// forward and inverse NTTs equal lattigo's modulo q (lazy: in [0, 2q); full: equal), for inputs in
// [0, q) and in [0, 2q), in place and not; off IFMA hardware it only checks that nothing
// takes the fast path.
func TestFastNTTMatchesLattigo(t *testing.T) {
	params, _, err := Parameters()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	taken := 0
	for _, r := range []*ring.Ring{params.RingQ(), params.RingP()} {
		for _, s := range r.SubRings {
			f := fastNTTOf(s)
			if f == nil {
				if haveIFMA && s.Modulus < 1<<51 {
					t.Errorf("prime %d (%d bits) has no fast NTT on IFMA hardware", s.Modulus, 64-countLeadingZeros(s.Modulus))
				}
				continue
			}
			if !haveIFMA {
				t.Fatalf("a fast NTT without IFMA")
			}
			taken++
			q := s.Modulus
			for _, bound := range []uint64{q, 2 * q} {
				in := make([]uint64, s.N)
				for i := range in {
					in[i] = rng.Uint64N(bound)
				}
				in[0], in[len(in)-1], in[s.N/2] = bound-1, bound-1, bound-1
				want := make([]uint64, s.N)
				s.NTT(in, want)
				got := make([]uint64, s.N)
				f.transform(in, got, true)
				lazy := append([]uint64(nil), in...)
				f.transform(lazy, lazy, false) // in place
				wantInv := make([]uint64, s.N)
				s.INTT(in, wantInv)
				gotInv := make([]uint64, s.N)
				f.inverse(in, gotInv, true)
				lazyInv := append([]uint64(nil), in...)
				f.inverse(lazyInv, lazyInv, false)
				for i := range want {
					if gotInv[i] != wantInv[i] {
						t.Fatalf("q=%d, inputs < %d: coefficient %d: full INTT %d, lattigo %d", q, bound, i, gotInv[i], wantInv[i])
					}
					if lazyInv[i] >= 2*q || lazyInv[i]%q != wantInv[i] {
						t.Fatalf("q=%d, inputs < %d: coefficient %d: lazy INTT %d, lattigo %d", q, bound, i, lazyInv[i], wantInv[i])
					}
					if got[i] != want[i] {
						t.Fatalf("q=%d, inputs < %d: coefficient %d: full NTT %d, lattigo %d", q, bound, i, got[i], want[i])
					}
					if lazy[i] >= 2*q || lazy[i]%q != want[i] {
						t.Fatalf("q=%d, inputs < %d: coefficient %d: lazy NTT %d, lattigo %d", q, bound, i, lazy[i], want[i])
					}
				}
			}
		}
	}
	if haveIFMA && taken == 0 {
		t.Fatal("no prime takes the fast NTT")
	}
	t.Logf("IFMA: %v, primes on the fast NTT: %d", haveIFMA, taken)
}

func countLeadingZeros(x uint64) int {
	n := 0
	for ; n < 64 && x&(1<<63) == 0; n++ {
		x <<= 1
	}
	return n
}

func BenchmarkNTT(b *testing.B) {
	params, _, err := Parameters()
	if err != nil {
		b.Fatal(err)
	}
	s := params.RingQ().SubRings[1]
	p := make([]uint64, s.N)
	for i := range p {
		p[i] = uint64(i) % s.Modulus
	}
	b.Run("lattigo", func(b *testing.B) {
		for b.Loop() {
			s.NTTLazy(p, p)
			s.Reduce(p, p)
		}
	})
	b.Run("fast", func(b *testing.B) {
		f := fastNTTOf(s)
		if f == nil {
			b.Skip("no IFMA")
		}
		for b.Loop() {
			f.transform(p, p, false)
		}
	})
}
