//go:build !purego

package he

import "golang.org/x/sys/cpu"

// haveIFMA reports whether the forward NTT can run on AVX-512 IFMA (ntt_amd64.s): the
// foundation (with the operating system's support for its registers) and the 52-bit
// multiply-add.
var haveIFMA = cpu.X86.HasAVX512 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512IFMA

//go:noescape
func nttFwdBig(p *uint64, h, t int, w, wp *uint64, q uint64)

//go:noescape
func nttFwdSmall(p *uint64, chunks int, w, wp *uint64, q uint64, idx *[5][8]uint64, step int)

//go:noescape
func nttFwdFirst(p1, p2 *uint64, n, chunks int, w, wp, q uint64)

//go:noescape
func nttReduce(p *uint64, n int, q uint64, full bool)

//go:noescape
func nttFwdBigW(p *uint64, h, t int, w, wp *uint64, q uint64)

//go:noescape
func nttFwdSmallW(p *uint64, chunks int, w, wp *uint64, q uint64, idx *[5][8]uint64, step int)

//go:noescape
func nttInvBig(p *uint64, h, t int, w, wp *uint64, q uint64)

//go:noescape
func nttInvSmall(p *uint64, chunks int, w, wp *uint64, q uint64, idx *[5][8]uint64, step int)

//go:noescape
func nttMulShoup(p *uint64, n int, w, wp, q uint64, full bool)

//go:noescape
func mulAddShoup(dst, x, k, kp *uint64, n int, q uint64, first bool)

//go:noescape
func tensorMont52(c0, c1, c2, a0, a1, b0, b1 *uint64, n int, q, qinv, r2 uint64)

//go:noescape
func mulKeyDigits(dst0, dst1 *uint64, xs, k0, kp0, k1, kp1 **uint64, d, n int, q uint64)
