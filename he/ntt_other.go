//go:build !amd64 || purego

package he

// haveIFMA is false off amd64: the NTT is lattigo's.
const haveIFMA = false

func nttFwdBig(p *uint64, h, t int, w, wp *uint64, q uint64) { panic("he: no IFMA NTT") }

func nttFwdSmall(p *uint64, chunks int, w, wp *uint64, q uint64, idx *[5][8]uint64, step int) {
	panic("he: no IFMA NTT")
}

func nttFwdFirst(p1, p2 *uint64, n, chunks int, w, wp, q uint64) { panic("he: no IFMA NTT") }

func nttReduce(p *uint64, n int, q uint64, full bool) { panic("he: no IFMA NTT") }

func nttFwdBigW(p *uint64, h, t int, w, wp *uint64, q uint64) { panic("he: no IFMA NTT") }

func nttFwdSmallW(p *uint64, chunks int, w, wp *uint64, q uint64, idx *[5][8]uint64, step int) {
	panic("he: no IFMA NTT")
}

func nttInvBig(p *uint64, h, t int, w, wp *uint64, q uint64) { panic("he: no IFMA NTT") }

func nttInvSmall(p *uint64, chunks int, w, wp *uint64, q uint64, idx *[5][8]uint64, step int) {
	panic("he: no IFMA NTT")
}

func nttMulShoup(p *uint64, n int, w, wp, q uint64, full bool) { panic("he: no IFMA NTT") }

func mulAddShoup(dst, x, k, kp *uint64, n int, q uint64, first bool) { panic("he: no IFMA") }

func tensorMont52(c0, c1, c2, a0, a1, b0, b1 *uint64, n int, q, qinv, r2 uint64) {
	panic("he: no IFMA")
}

func mulKeyDigits(dst0, dst1 *uint64, xs, k0, kp0, k1, kp1 **uint64, d, n int, q uint64) {
	panic("he: no IFMA")
}
