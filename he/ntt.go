package he

import (
	"math/bits"
	"sync"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// fastNTT is the NTT of one prime of the conjugate-invariant ring, lattigo's
// (ring.NTTConjugateInvariant and INTTConjugateInvariant, v5.0.7: same twiddles, same
// order, same result modulo q) on AVX-512 IFMA, eight 52-bit lanes per instruction
// (ntt_amd64.s), for the primes below 2^51: all of Q and p1 here, not the 61-bit p0.
// Harvey's lazy butterflies keep every value in [0, 4q) (primes below 2^50) or [0, 2q)
// (below 2^51), under 2^52, and Shoup's multiplication by a twiddle w uses its precomputed
// w' = floor(w * 2^52 / q). lattigo's pure-Go NTT was about half of the logistic job's CPU
// (issue #18); TestFastNTTMatchesLattigo checks every prime against it.
type fastNTT struct {
	n      int
	q      uint64
	wide   bool   // q >= 2^50: values kept below 2q
	root1  uint64 // lattigo's RootsForward[1], to recognize the table
	w, wp  []uint64
	wb, bp []uint64 // RootsBackward, likewise
	nInv   [2]uint64
}

// Index vectors of the stages on blocks of width 4, 2, 1, see nttFwdSmall.
var nttIdx = [3][5][8]uint64{
	{{0, 1, 2, 3, 8, 9, 10, 11}, {4, 5, 6, 7, 12, 13, 14, 15}, {0, 1, 2, 3, 8, 9, 10, 11}, {4, 5, 6, 7, 12, 13, 14, 15}, {0, 0, 0, 0, 1, 1, 1, 1}},
	{{0, 1, 4, 5, 8, 9, 12, 13}, {2, 3, 6, 7, 10, 11, 14, 15}, {0, 1, 8, 9, 2, 3, 10, 11}, {4, 5, 12, 13, 6, 7, 14, 15}, {0, 0, 1, 1, 2, 2, 3, 3}},
	{{0, 2, 4, 6, 8, 10, 12, 14}, {1, 3, 5, 7, 9, 11, 13, 15}, {0, 8, 1, 9, 2, 10, 3, 11}, {4, 12, 5, 13, 6, 14, 7, 15}, {0, 1, 2, 3, 4, 5, 6, 7}},
}

// newFastNTT returns s's fastNTT, or nil where lattigo's NTT must do: no IFMA, a prime of
// 2^51 or more, not the conjugate-invariant ring, or a degree the stages do not cover.
func newFastNTT(s *ring.SubRing) *fastNTT {
	if !haveIFMA || s.Modulus >= 1<<51 || s.Type() != ring.ConjugateInvariant || s.N < 64 || s.N&(s.N-1) != 0 ||
		len(s.RootsForward) < 2*s.N || len(s.RootsBackward) < 2*s.N {
		return nil
	}
	q := s.Modulus
	f := &fastNTT{n: s.N, q: q, wide: q >= 1<<50, root1: s.RootsForward[1]}
	plain := func(mont uint64) (uint64, uint64) {
		w := ring.MRed(mont, 1, q, s.MRedConstant) // mont * 2^-64 mod q
		wp, _ := bits.Div64(w>>12, w<<52, q)
		return w, wp
	}
	table := func(roots []uint64) (w, wp []uint64) {
		w, wp = make([]uint64, len(roots)+8), make([]uint64, len(roots)+8)
		for i, r := range roots {
			w[i], wp[i] = plain(r)
		}
		return w, wp
	}
	f.w, f.wp = table(s.RootsForward)
	f.wb, f.bp = table(s.RootsBackward)
	f.nInv[0], f.nInv[1] = plain(s.NInv)
	return f
}

// shoupLazy is y*w mod q in [0, 2q), for y < 2^52 (one lane of the assembly's).
func shoupLazy(y, w, wp, q uint64) uint64 {
	hi, lo := bits.Mul64(y, wp)
	return y*w - (hi<<12|lo>>52)*q
}

// reduce2q maps [0, 4q) to [0, 2q).
func reduce2q(x, q uint64) uint64 {
	if x >= 2*q {
		return x - 2*q
	}
	return x
}

// mirrorStage is the conjugate-invariant ring's stage that pairs coefficient j with n-j
// (the forward NTT's first, the inverse's last): p2[j] = p1[j] + 2q - w*p1[n-j], and
// p2[n-j] likewise, in [0, 2q).
func (f *fastNTT) mirrorStage(p1, p2 []uint64, w, wp uint64) {
	n, q := f.n, f.q
	chunks := (n/2 - 1) / 8
	nttFwdFirst(&p1[0], &p2[0], n, chunks, w, wp, q)
	for j := 1 + 8*chunks; j < n/2; j++ {
		x, y := p1[j], p1[n-j]
		p2[j], p2[n-j] = reduce2q(x+2*q-shoupLazy(y, w, wp, q), q), reduce2q(y+2*q-shoupLazy(x, w, wp, q), q)
	}
	p2[n/2] = reduce2q(p1[n/2]+2*q-shoupLazy(p1[n/2], w, wp, q), q)
}

// transform writes the NTT of p1 (values below 2q) to p2 (may be p1): in [0, 2q), or in
// [0, q) when full.
func (f *fastNTT) transform(p1, p2 []uint64, full bool) {
	n, q := f.n, f.q
	p1, p2 = p1[:n], p2[:n]
	f.mirrorStage(p1, p2, f.w[1], f.wp[1])
	p2[0] = p1[0]
	big, small := nttFwdBig, nttFwdSmall
	if f.wide {
		big, small = nttFwdBigW, nttFwdSmallW
	}
	for m := 2; m < 2*n; m <<= 1 {
		switch t := n / m; t {
		case 4:
			small(&p2[0], n/16, &f.w[m], &f.wp[m], q, &nttIdx[0], 2)
		case 2:
			small(&p2[0], n/16, &f.w[m], &f.wp[m], q, &nttIdx[1], 4)
		case 1:
			small(&p2[0], n/16, &f.w[m], &f.wp[m], q, &nttIdx[2], 8)
		default:
			big(&p2[0], m/2, t, &f.w[m], &f.wp[m], q)
		}
	}
	nttReduce(&p2[0], n, q, full)
}

// inverse writes the inverse NTT of p1 (values below 2q) to p2 (may be p1): in [0, 2q),
// or in [0, q) when full (lattigo's inttConjugateInvariantLazy and the scaling by 1/n).
func (f *fastNTT) inverse(p1, p2 []uint64, full bool) {
	n, q := f.n, f.q
	p1, p2 = p1[:n], p2[:n]
	if &p1[0] != &p2[0] {
		copy(p2, p1)
	}
	for m := n; m >= 2; m >>= 1 {
		switch t := n / m; t {
		case 1:
			nttInvSmall(&p2[0], n/16, &f.wb[m], &f.bp[m], q, &nttIdx[2], 8)
		case 2:
			nttInvSmall(&p2[0], n/16, &f.wb[m], &f.bp[m], q, &nttIdx[1], 4)
		case 4:
			nttInvSmall(&p2[0], n/16, &f.wb[m], &f.bp[m], q, &nttIdx[0], 2)
		default:
			nttInvBig(&p2[0], m/2, t, &f.wb[m], &f.bp[m], q)
		}
	}
	f.mirrorStage(p2, p2, f.wb[1], f.bp[1])
	p2[0] = (2 * (p2[0] % q)) % q
	nttMulShoup(&p2[0], n, f.nInv[0], f.nInv[1], q, full)
}

var fastNTTs struct {
	once  sync.Once
	byMod map[uint64]*fastNTT
}

// fastNTTOf returns the fastNTT of s, nil if it has none. The tables are made once, for
// the primes of the parameter set (Parameters), and used only for a ring whose NTT they
// are (same degree, same first twiddle).
func fastNTTOf(s *ring.SubRing) *fastNTT {
	fastNTTs.once.Do(func() {
		fastNTTs.byMod = map[uint64]*fastNTT{}
		params, _, err := Parameters()
		if err != nil {
			return
		}
		for _, r := range []*ring.Ring{params.RingQ(), params.RingP()} {
			for _, sub := range r.SubRings {
				if f := newFastNTT(sub); f != nil {
					fastNTTs.byMod[sub.Modulus] = f
				}
			}
		}
	})
	f := fastNTTs.byMod[s.Modulus]
	if f == nil || f.n != s.N || len(s.RootsForward) < 2 || f.root1 != s.RootsForward[1] {
		return nil
	}
	return f
}

// nttLazy is s.NTTLazy(p1, p2) (output in [0, 2q)) on fastNTT where it applies; p1's
// values must be below 2q.
func nttLazy(s *ring.SubRing, p1, p2 []uint64) {
	if f := fastNTTOf(s); f != nil {
		f.transform(p1, p2, false)
		return
	}
	s.NTTLazy(p1, p2)
}

// inttLazy is s.INTTLazy(p1, p2) (output in [0, 2q)) on fastNTT where it applies; p1's
// values must be below 2q.
func inttLazy(s *ring.SubRing, p1, p2 []uint64) {
	if f := fastNTTOf(s); f != nil {
		f.inverse(p1, p2, false)
		return
	}
	s.INTTLazy(p1, p2)
}

// inttFull is s.INTT(p1, p2) (output in [0, q)) on fastNTT where it applies; p1's values
// must be below 2q.
func inttFull(s *ring.SubRing, p1, p2 []uint64) {
	if f := fastNTTOf(s); f != nil {
		f.inverse(p1, p2, true)
		return
	}
	s.INTT(p1, p2)
}

// ringNTTLazy is r.NTTLazy(p1, p2) prime by prime through nttLazy.
func ringNTTLazy(r *ring.Ring, p1, p2 ring.Poly) {
	for i, s := range r.SubRings[:r.Level()+1] {
		nttLazy(s, p1.Coeffs[i], p2.Coeffs[i])
	}
}

// ringINTT is r.INTT(p1, p2) prime by prime through inttFull.
func ringINTT(r *ring.Ring, p1, p2 ring.Poly) {
	for i, s := range r.SubRings[:r.Level()+1] {
		inttFull(s, p1.Coeffs[i], p2.Coeffs[i])
	}
}

// ringINTTLazy is r.INTTLazy(p1, p2) prime by prime through inttLazy.
func ringINTTLazy(r *ring.Ring, p1, p2 ring.Poly) {
	for i, s := range r.SubRings[:r.Level()+1] {
		inttLazy(s, p1.Coeffs[i], p2.Coeffs[i])
	}
}
