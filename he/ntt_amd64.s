//go:build !purego

#include "textflag.h"

// Forward NTT stages of the conjugate-invariant ring with AVX-512 IFMA (see ntt.go). Every
// butterfly is Harvey's lazy one with Shoup's multiplication on 52-bit lanes: for a prime
// q < 2^50, inputs and outputs in [0, 4q) < 2^52, w < q and w' = floor(w * 2^52 / q):
//
//	x' = x >= 2q ? x - 2q : x
//	t  = (lo52(y*w) - lo52(hi52(y*w') * q)) mod 2^52    (in [0, 2q))
//	x, y = x' + t, x' + 2q - t
//
// Registers: Z29 = 2^52-1, Z30 = q, Z31 = 2q; X in Z0, Y in Z1, w in Z2, w' in Z3.
#define BUTTERFLY \
	VPSUBQ      Z31, Z0, Z4; \
	VPMINUQ     Z4, Z0, Z0; \
	VPXORQ      Z5, Z5, Z5; \
	VPMADD52HUQ Z3, Z1, Z5; \
	VPXORQ      Z6, Z6, Z6; \
	VPMADD52LUQ Z2, Z1, Z6; \
	VPXORQ      Z7, Z7, Z7; \
	VPMADD52LUQ Z30, Z5, Z7; \
	VPSUBQ      Z7, Z6, Z6; \
	VPANDQ      Z29, Z6, Z6; \
	VPADDQ      Z31, Z0, Z8; \
	VPSUBQ      Z6, Z8, Z1; \
	VPADDQ      Z6, Z0, Z0

// SHOUP sets Z6 to a lazy product in [0, 2q) of Z1 by (Z2, Z3).
#define SHOUP \
	VPXORQ      Z5, Z5, Z5; \
	VPMADD52HUQ Z3, Z1, Z5; \
	VPXORQ      Z6, Z6, Z6; \
	VPMADD52LUQ Z2, Z1, Z6; \
	VPXORQ      Z7, Z7, Z7; \
	VPMADD52LUQ Z30, Z5, Z7; \
	VPSUBQ      Z7, Z6, Z6; \
	VPANDQ      Z29, Z6, Z6

// BUTTERFLYW is BUTTERFLY for a prime below 2^51 (2q < 2^52): inputs and outputs in [0, 2q).
#define BUTTERFLYW \
	SHOUP; \
	VPADDQ    Z6, Z0, Z8; \
	VPSUBQ    Z31, Z8, Z4; \
	VPMINUQ   Z4, Z8, Z8; \
	VPADDQ    Z31, Z0, Z9; \
	VPSUBQ    Z6, Z9, Z9; \
	VPSUBQ    Z31, Z9, Z4; \
	VPMINUQ   Z4, Z9, Z1; \
	VMOVDQA64 Z8, Z0

// INVBUTTERFLY is the inverse (Gentleman-Sande) butterfly, lattigo's invbutterfly, for a
// prime below 2^51: X, Y = U + V, (U - V) * w, inputs and outputs in [0, 2q).
#define INVBUTTERFLY \
	VPADDQ    Z1, Z0, Z8; \
	VPSUBQ    Z31, Z8, Z4; \
	VPMINUQ   Z4, Z8, Z8; \
	VPADDQ    Z31, Z0, Z9; \
	VPSUBQ    Z1, Z9, Z9; \
	VPSUBQ    Z31, Z9, Z4; \
	VPMINUQ   Z4, Z9, Z1; \
	SHOUP; \
	VMOVDQA64 Z8, Z0; \
	VMOVDQA64 Z6, Z1

#define CONSTANTS(qarg) \
	MOVQ         qarg, AX; \
	VPBROADCASTQ AX, Z30; \
	ADDQ         AX, AX; \
	VPBROADCASTQ AX, Z31; \
	MOVQ         $0xFFFFFFFFFFFFF, BX; \
	VPBROADCASTQ BX, Z29

// func nttFwdBig(p *uint64, h, t int, w, wp *uint64, q uint64)
// h blocks of 2t coefficients (t a multiple of 8), block i with twiddle w[i], wp[i].
TEXT ·nttFwdBig(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ h+8(FP), CX
	MOVQ t+16(FP), DX
	MOVQ w+24(FP), R8
	MOVQ wp+32(FP), R9
	CONSTANTS(q+40(FP))
	MOVQ DX, R10
	SHLQ $3, R10

big_block:
	VPBROADCASTQ (R8), Z2
	VPBROADCASTQ (R9), Z3
	LEAQ         (DI)(R10*1), SI
	MOVQ         DX, R11

big_inner:
	VMOVDQU64 (DI), Z0
	VMOVDQU64 (SI), Z1
	BUTTERFLY
	VMOVDQU64 Z0, (DI)
	VMOVDQU64 Z1, (SI)
	ADDQ      $64, DI
	ADDQ      $64, SI
	SUBQ      $8, R11
	JNZ       big_inner

	MOVQ SI, DI
	ADDQ $8, R8
	ADDQ $8, R9
	DECQ CX
	JNZ  big_block
	VZEROUPPER
	RET

// func nttFwdSmall(p *uint64, chunks int, w, wp *uint64, q uint64, idx *[5][8]uint64, step int)
// chunks of 16 coefficients (8 butterflies of blocks of width 4, 2 or 1): idx[0], idx[1]
// gather the X and Y halves of a chunk, idx[2], idx[3] scatter them back, idx[4] spreads
// the chunk's step twiddles (read from w, wp) over its 8 butterflies.
TEXT ·nttFwdSmall(SB), NOSPLIT, $0-56
	MOVQ p+0(FP), DI
	MOVQ chunks+8(FP), CX
	MOVQ w+16(FP), R8
	MOVQ wp+24(FP), R9
	CONSTANTS(q+32(FP))
	MOVQ idx+40(FP), R10
	MOVQ step+48(FP), R11
	SHLQ $3, R11
	VMOVDQU64 0(R10), Z20
	VMOVDQU64 64(R10), Z21
	VMOVDQU64 128(R10), Z22
	VMOVDQU64 192(R10), Z23
	VMOVDQU64 256(R10), Z24

small_loop:
	VMOVDQU64 (DI), Z10
	VMOVDQU64 64(DI), Z11
	VMOVDQA64 Z20, Z0
	VPERMI2Q  Z11, Z10, Z0
	VMOVDQA64 Z21, Z1
	VPERMI2Q  Z11, Z10, Z1
	VPERMQ    (R8), Z24, Z2
	VPERMQ    (R9), Z24, Z3
	BUTTERFLY
	VMOVDQA64 Z22, Z10
	VPERMI2Q  Z1, Z0, Z10
	VMOVDQA64 Z23, Z11
	VPERMI2Q  Z1, Z0, Z11
	VMOVDQU64 Z10, (DI)
	VMOVDQU64 Z11, 64(DI)
	ADDQ      $128, DI
	ADDQ      R11, R8
	ADDQ      R11, R9
	DECQ      CX
	JNZ       small_loop
	VZEROUPPER
	RET

// func nttFwdFirst(p1, p2 *uint64, n, chunks int, w, wp, q uint64)
// The conjugate-invariant ring's first stage on coefficients 1 .. 8*chunks and their
// mirrors n-1 .. n-8*chunks: p2[j] = p1[j] + 2q - w*p1[n-j], p2[n-j] = p1[n-j] + 2q - w*p1[j],
// reduced to [0, 2q) (inputs below 2q, q below 2^51). Also the inverse NTT's last stage.
TEXT ·nttFwdFirst(SB), NOSPLIT, $0-56
	MOVQ p1+0(FP), SI
	MOVQ p2+8(FP), DI
	MOVQ n+16(FP), DX
	MOVQ chunks+24(FP), CX
	MOVQ w+32(FP), AX
	VPBROADCASTQ AX, Z2
	MOVQ wp+40(FP), AX
	VPBROADCASTQ AX, Z3
	CONSTANTS(q+48(FP))
	// Z28 = [7, 6, ..., 0]: reverses 8 lanes.
	MOVQ         $7, AX
	VPBROADCASTQ AX, Z28
	MOVQ         $0x0706050403020100, AX
	MOVQ         AX, X9
	VPMOVZXBQ    X9, Z9
	VPSUBQ       Z9, Z28, Z28
	// x at index 1, y block at index n-8 (reversed: lane k is n-1-k... of the block start).
	LEAQ 8(SI), R8
	LEAQ 8(DI), R9
	LEAQ -64(SI)(DX*8), R10
	LEAQ -64(DI)(DX*8), R11

first_loop:
	VMOVDQU64 (R8), Z10        // x[k] = p1[j+k]
	VPERMQ    (R10), Z28, Z11  // y[k] = p1[n-j-k]
	VMOVDQA64 Z11, Z1
	SHOUP
	VPADDQ    Z31, Z10, Z12
	VPSUBQ    Z6, Z12, Z12     // x + 2q - w*y
	VPSUBQ    Z31, Z12, Z4
	VPMINUQ   Z4, Z12, Z12
	VMOVDQA64 Z10, Z1
	SHOUP
	VPADDQ    Z31, Z11, Z13
	VPSUBQ    Z6, Z13, Z13     // y + 2q - w*x
	VPSUBQ    Z31, Z13, Z4
	VPMINUQ   Z4, Z13, Z13
	VMOVDQU64 Z12, (R9)
	VPERMQ    Z13, Z28, Z13
	VMOVDQU64 Z13, (R11)
	ADDQ      $64, R8
	ADDQ      $64, R9
	SUBQ      $64, R10
	SUBQ      $64, R11
	DECQ      CX
	JNZ       first_loop
	VZEROUPPER
	RET

// func nttReduce(p *uint64, n int, q uint64, full bool)
// [0, 4q) -> [0, 2q), and to [0, q) if full; n a multiple of 8.
TEXT ·nttReduce(SB), NOSPLIT, $0-25
	MOVQ p+0(FP), DI
	MOVQ n+8(FP), CX
	CONSTANTS(q+16(FP))
	MOVB full+24(FP), BX
	SHRQ $3, CX
	TESTB BX, BX
	JNZ  reduce_full

reduce_half:
	VMOVDQU64 (DI), Z0
	VPSUBQ    Z31, Z0, Z4
	VPMINUQ   Z4, Z0, Z0
	VMOVDQU64 Z0, (DI)
	ADDQ      $64, DI
	DECQ      CX
	JNZ       reduce_half
	VZEROUPPER
	RET

reduce_full:
	VMOVDQU64 (DI), Z0
	VPSUBQ    Z31, Z0, Z4
	VPMINUQ   Z4, Z0, Z0
	VPSUBQ    Z30, Z0, Z4
	VPMINUQ   Z4, Z0, Z0
	VMOVDQU64 Z0, (DI)
	ADDQ      $64, DI
	DECQ      CX
	JNZ       reduce_full
	VZEROUPPER
	RET

// func nttFwdBigW(p *uint64, h, t int, w, wp *uint64, q uint64)
// h blocks of 2t coefficients (t a multiple of 8), block i with twiddle w[i], wp[i].
TEXT ·nttFwdBigW(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ h+8(FP), CX
	MOVQ t+16(FP), DX
	MOVQ w+24(FP), R8
	MOVQ wp+32(FP), R9
	CONSTANTS(q+40(FP))
	MOVQ DX, R10
	SHLQ $3, R10

big_block_w:
	VPBROADCASTQ (R8), Z2
	VPBROADCASTQ (R9), Z3
	LEAQ         (DI)(R10*1), SI
	MOVQ         DX, R11

big_inner_w:
	VMOVDQU64 (DI), Z0
	VMOVDQU64 (SI), Z1
	BUTTERFLYW
	VMOVDQU64 Z0, (DI)
	VMOVDQU64 Z1, (SI)
	ADDQ      $64, DI
	ADDQ      $64, SI
	SUBQ      $8, R11
	JNZ       big_inner_w

	MOVQ SI, DI
	ADDQ $8, R8
	ADDQ $8, R9
	DECQ CX
	JNZ  big_block_w
	VZEROUPPER
	RET

// func nttFwdSmallW(p *uint64, chunks int, w, wp *uint64, q uint64, idx *[5][8]uint64, step int)
// chunks of 16 coefficients (8 butterflies of blocks of width 4, 2 or 1): idx[0], idx[1]
// gather the X and Y halves of a chunk, idx[2], idx[3] scatter them back, idx[4] spreads
// the chunk's step twiddles (read from w, wp) over its 8 butterflies.
TEXT ·nttFwdSmallW(SB), NOSPLIT, $0-56
	MOVQ p+0(FP), DI
	MOVQ chunks+8(FP), CX
	MOVQ w+16(FP), R8
	MOVQ wp+24(FP), R9
	CONSTANTS(q+32(FP))
	MOVQ idx+40(FP), R10
	MOVQ step+48(FP), R11
	SHLQ $3, R11
	VMOVDQU64 0(R10), Z20
	VMOVDQU64 64(R10), Z21
	VMOVDQU64 128(R10), Z22
	VMOVDQU64 192(R10), Z23
	VMOVDQU64 256(R10), Z24

small_loop_w:
	VMOVDQU64 (DI), Z10
	VMOVDQU64 64(DI), Z11
	VMOVDQA64 Z20, Z0
	VPERMI2Q  Z11, Z10, Z0
	VMOVDQA64 Z21, Z1
	VPERMI2Q  Z11, Z10, Z1
	VPERMQ    (R8), Z24, Z2
	VPERMQ    (R9), Z24, Z3
	BUTTERFLYW
	VMOVDQA64 Z22, Z10
	VPERMI2Q  Z1, Z0, Z10
	VMOVDQA64 Z23, Z11
	VPERMI2Q  Z1, Z0, Z11
	VMOVDQU64 Z10, (DI)
	VMOVDQU64 Z11, 64(DI)
	ADDQ      $128, DI
	ADDQ      R11, R8
	ADDQ      R11, R9
	DECQ      CX
	JNZ       small_loop_w
	VZEROUPPER
	RET

// func nttInvBig(p *uint64, h, t int, w, wp *uint64, q uint64)
// h blocks of 2t coefficients (t a multiple of 8), block i with twiddle w[i], wp[i].
TEXT ·nttInvBig(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ h+8(FP), CX
	MOVQ t+16(FP), DX
	MOVQ w+24(FP), R8
	MOVQ wp+32(FP), R9
	CONSTANTS(q+40(FP))
	MOVQ DX, R10
	SHLQ $3, R10

big_block_inv:
	VPBROADCASTQ (R8), Z2
	VPBROADCASTQ (R9), Z3
	LEAQ         (DI)(R10*1), SI
	MOVQ         DX, R11

big_inner_inv:
	VMOVDQU64 (DI), Z0
	VMOVDQU64 (SI), Z1
	INVBUTTERFLY
	VMOVDQU64 Z0, (DI)
	VMOVDQU64 Z1, (SI)
	ADDQ      $64, DI
	ADDQ      $64, SI
	SUBQ      $8, R11
	JNZ       big_inner_inv

	MOVQ SI, DI
	ADDQ $8, R8
	ADDQ $8, R9
	DECQ CX
	JNZ  big_block_inv
	VZEROUPPER
	RET

// func nttInvSmall(p *uint64, chunks int, w, wp *uint64, q uint64, idx *[5][8]uint64, step int)
// chunks of 16 coefficients (8 butterflies of blocks of width 4, 2 or 1): idx[0], idx[1]
// gather the X and Y halves of a chunk, idx[2], idx[3] scatter them back, idx[4] spreads
// the chunk's step twiddles (read from w, wp) over its 8 butterflies.
TEXT ·nttInvSmall(SB), NOSPLIT, $0-56
	MOVQ p+0(FP), DI
	MOVQ chunks+8(FP), CX
	MOVQ w+16(FP), R8
	MOVQ wp+24(FP), R9
	CONSTANTS(q+32(FP))
	MOVQ idx+40(FP), R10
	MOVQ step+48(FP), R11
	SHLQ $3, R11
	VMOVDQU64 0(R10), Z20
	VMOVDQU64 64(R10), Z21
	VMOVDQU64 128(R10), Z22
	VMOVDQU64 192(R10), Z23
	VMOVDQU64 256(R10), Z24

small_loop_inv:
	VMOVDQU64 (DI), Z10
	VMOVDQU64 64(DI), Z11
	VMOVDQA64 Z20, Z0
	VPERMI2Q  Z11, Z10, Z0
	VMOVDQA64 Z21, Z1
	VPERMI2Q  Z11, Z10, Z1
	VPERMQ    (R8), Z24, Z2
	VPERMQ    (R9), Z24, Z3
	INVBUTTERFLY
	VMOVDQA64 Z22, Z10
	VPERMI2Q  Z1, Z0, Z10
	VMOVDQA64 Z23, Z11
	VPERMI2Q  Z1, Z0, Z11
	VMOVDQU64 Z10, (DI)
	VMOVDQU64 Z11, 64(DI)
	ADDQ      $128, DI
	ADDQ      R11, R8
	ADDQ      R11, R9
	DECQ      CX
	JNZ       small_loop_inv
	VZEROUPPER
	RET

// func nttMulShoup(p *uint64, n int, w, wp, q uint64, full bool)
// p[i] = p[i] * w, for p[i] < 4q (q below 2^50) or < 2q (q below 2^51): in [0, 2q), or in
// [0, q) if full; n a multiple of 8.
TEXT ·nttMulShoup(SB), NOSPLIT, $0-41
	MOVQ p+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ w+16(FP), AX
	VPBROADCASTQ AX, Z2
	MOVQ wp+24(FP), AX
	VPBROADCASTQ AX, Z3
	CONSTANTS(q+32(FP))
	MOVB full+40(FP), BX
	SHRQ $3, CX

mul_loop:
	VMOVDQU64 (DI), Z1
	VPSUBQ    Z31, Z1, Z4
	VPMINUQ   Z4, Z1, Z1
	SHOUP
	TESTB     BX, BX
	JZ        mul_store
	VPSUBQ    Z30, Z6, Z4
	VPMINUQ   Z4, Z6, Z6

mul_store:
	VMOVDQU64 Z6, (DI)
	ADDQ      $64, DI
	DECQ      CX
	JNZ       mul_loop
	VZEROUPPER
	RET

// func mulAddShoup(dst, x, k, kp *uint64, n int, q uint64, first bool)
// dst[i] (+)= x[i] * k[i] mod q in [0, 2q) (Shoup, kp[i] = floor(k[i] * 2^52 / q)), for
// x[i] < 2^52: lattigo's MulCoeffsMontgomeryLazy (first) and ...ThenAddLazy with a fixed
// operand; n a multiple of 8.
TEXT ·mulAddShoup(SB), NOSPLIT, $0-49
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ k+16(FP), R8
	MOVQ kp+24(FP), R9
	MOVQ n+32(FP), CX
	CONSTANTS(q+40(FP))
	MOVB first+48(FP), DX
	SHRQ $3, CX
	TESTB DX, DX
	JZ   muladd_add

muladd_set:
	VMOVDQU64 (SI), Z1
	VMOVDQU64 (R8), Z2
	VMOVDQU64 (R9), Z3
	SHOUP
	VMOVDQU64 Z6, (DI)
	ADDQ      $64, SI
	ADDQ      $64, R8
	ADDQ      $64, R9
	ADDQ      $64, DI
	DECQ      CX
	JNZ       muladd_set
	VZEROUPPER
	RET

muladd_add:
	VMOVDQU64 (SI), Z1
	VMOVDQU64 (R8), Z2
	VMOVDQU64 (R9), Z3
	SHOUP
	VPADDQ    (DI), Z6, Z6
	VMOVDQU64 Z6, (DI)
	ADDQ      $64, SI
	ADDQ      $64, R8
	ADDQ      $64, R9
	ADDQ      $64, DI
	DECQ      CX
	JNZ       muladd_add
	VZEROUPPER
	RET

// MONTXY sets R to X * Y * 2^-52 mod q in [0, q) (Montgomery's reduction on 52-bit lanes,
// Z28 = q^-1 mod 2^52, Z30 = q; temporaries Z5, Z7, Z8, Z9), for X * Y < q * 2^52: with lo,
// hi the product's halves and m = lo * q^-1 mod 2^52, m*q has the same low half, so the
// product minus m*q is (hi - hi52(m*q)) * 2^52, and hi - hi52(m*q) is in (-q, q).
#define MONTXY(X, Y, R) \
	VPXORQ      Z5, Z5, Z5; \
	VPMADD52LUQ Y, X, Z5; \
	VPXORQ      R, R, R; \
	VPMADD52HUQ Y, X, R; \
	VPXORQ      Z7, Z7, Z7; \
	VPMADD52LUQ Z28, Z5, Z7; \
	VPXORQ      Z8, Z8, Z8; \
	VPMADD52HUQ Z30, Z7, Z8; \
	VPSUBQ      Z8, R, R; \
	VPADDQ      Z30, R, Z9; \
	VPMINUQ     Z9, R, R

// func tensorMont52(c0, c1, c2, a0, a1, b0, b1 *uint64, n int, q, qinv, r2 uint64)
// The product of (a0, a1) by (b0, b1) modulo q in one pass: c0 = a0*b0, c1 = a0*b1 + a1*b0,
// c2 = a1*b1, each in [0, q), for inputs below q < 2^51, qinv = q^-1 mod 2^52 and
// r2 = 2^104 mod q (a is first put in Montgomery form); n a multiple of 8. An output may be
// an input (each lane is read before it is written).
TEXT ·tensorMont52(SB), NOSPLIT, $0-88
	MOVQ         c0+0(FP), DI
	MOVQ         c1+8(FP), SI
	MOVQ         c2+16(FP), DX
	MOVQ         a0+24(FP), R8
	MOVQ         a1+32(FP), R9
	MOVQ         b0+40(FP), R10
	MOVQ         b1+48(FP), R11
	MOVQ         n+56(FP), CX
	MOVQ         q+64(FP), AX
	VPBROADCASTQ AX, Z30
	MOVQ         qinv+72(FP), AX
	VPBROADCASTQ AX, Z28
	MOVQ         r2+80(FP), AX
	VPBROADCASTQ AX, Z27
	SHRQ         $3, CX
	XORQ         BX, BX

tensor_loop:
	VMOVDQU64 (R8)(BX*1), Z10
	VMOVDQU64 (R9)(BX*1), Z11
	VMOVDQU64 (R10)(BX*1), Z12
	VMOVDQU64 (R11)(BX*1), Z13
	MONTXY(Z10, Z27, Z14)
	MONTXY(Z11, Z27, Z15)
	MONTXY(Z12, Z14, Z16)
	MONTXY(Z13, Z15, Z17)
	MONTXY(Z13, Z14, Z18)
	MONTXY(Z12, Z15, Z19)
	VPADDQ    Z19, Z18, Z18
	VPSUBQ    Z30, Z18, Z9
	VPMINUQ   Z9, Z18, Z18
	VMOVDQU64 Z16, (DI)(BX*1)
	VMOVDQU64 Z18, (SI)(BX*1)
	VMOVDQU64 Z17, (DX)(BX*1)
	ADDQ      $64, BX
	DECQ      CX
	JNZ       tensor_loop
	VZEROUPPER
	RET

// func mulKeyDigits(dst0, dst1 *uint64, xs, k0, kp0, k1, kp1 **uint64, d, n int, q uint64)
// dst0[i] = sum over the d digits j of xs[j][i] * k0[j][i] mod q, each product in [0, 2q)
// (Shoup, kp0[j][i] = floor(k0[j][i] * 2^52 / q)), likewise dst1 with k1, kp1: the gadget
// product's multiply-adds of every digit of one prime in one pass over the coefficients;
// xs[j][i] < 2^52, n a multiple of 8, 2dq < 2^64.
TEXT ·mulKeyDigits(SB), NOSPLIT, $0-80
	MOVQ dst0+0(FP), DI
	MOVQ dst1+8(FP), SI
	MOVQ xs+16(FP), R8
	MOVQ k0+24(FP), R9
	MOVQ kp0+32(FP), R10
	MOVQ k1+40(FP), R11
	MOVQ kp1+48(FP), R12
	MOVQ d+56(FP), R13
	MOVQ n+64(FP), CX
	CONSTANTS(q+72(FP))
	SHRQ $3, CX
	XORQ BX, BX

digits_lane:
	VPXORQ Z20, Z20, Z20
	VPXORQ Z21, Z21, Z21
	XORQ   DX, DX

digits_digit:
	MOVQ      (R8)(DX*8), AX
	VMOVDQU64 (AX)(BX*1), Z1
	MOVQ      (R9)(DX*8), AX
	VMOVDQU64 (AX)(BX*1), Z2
	MOVQ      (R10)(DX*8), AX
	VMOVDQU64 (AX)(BX*1), Z3
	SHOUP
	VPADDQ    Z6, Z20, Z20
	MOVQ      (R11)(DX*8), AX
	VMOVDQU64 (AX)(BX*1), Z2
	MOVQ      (R12)(DX*8), AX
	VMOVDQU64 (AX)(BX*1), Z3
	SHOUP
	VPADDQ    Z6, Z21, Z21
	INCQ      DX
	CMPQ      DX, R13
	JNE       digits_digit

	VMOVDQU64 Z20, (DI)(BX*1)
	VMOVDQU64 Z21, (SI)(BX*1)
	ADDQ      $64, BX
	DECQ      CX
	JNZ       digits_lane
	VZEROUPPER
	RET
