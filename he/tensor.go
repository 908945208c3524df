package he

import (
	"math/bits"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// tensorer multiplies two degree-1 ciphertexts into a degree-2 one as lattigo's ckks
// Evaluator.Mul does (the same level, scale and values: products modulo each prime are
// unique), with the products on AVX-512 IFMA (mulMont52): Montgomery's multiplication on
// 52-bit lanes, one operand first put in that Montgomery form (times 2^52 mod q). Lattigo's
// pure-Go MForm and MulCoeffsMontgomery were a tenth of a packing batch.
type tensorer struct {
	eval *hefloat.Evaluator
	buf  [2]ring.Poly
}

// mont52Consts is a prime's q^-1 mod 2^52 and 2^104 mod q.
type mont52Consts struct{ qinv, r2 uint64 }

var mont52Tables struct {
	sync.Mutex
	byMod map[uint64]mont52Consts
}

// mont52Of returns s's constants, false when s's prime is not below 2^51 or there is no IFMA.
func mont52Of(s *ring.SubRing) (mont52Consts, bool) {
	q := s.Modulus
	if !haveIFMA || q >= 1<<51 || q&1 == 0 {
		return mont52Consts{}, false
	}
	mont52Tables.Lock()
	defer mont52Tables.Unlock()
	if c, ok := mont52Tables.byMod[q]; ok {
		return c, true
	}
	inv := q // q * inv = 1 mod 2^3 for odd q; each step doubles the correct bits
	for range 5 {
		inv *= 2 - q*inv
	}
	r := (uint64(1) << 52) % q
	hi, lo := bits.Mul64(r, r)
	c := mont52Consts{qinv: inv & (1<<52 - 1), r2: bits.Rem64(hi, lo, q)}
	if mont52Tables.byMod == nil {
		mont52Tables.byMod = map[uint64]mont52Consts{}
	}
	mont52Tables.byMod[q] = c
	return c, true
}

func newTensorer(eval *hefloat.Evaluator) *tensorer {
	ringQ := eval.GetParameters().RingQ()
	return &tensorer{eval: eval, buf: [2]ring.Poly{ringQ.NewPoly(), ringQ.NewPoly()}}
}

// mul sets out to op0 * op1 (degree 2) and reports true, or reports false and does nothing
// when it does not take the operands (not both of degree 1, a prime without IFMA).
func (t *tensorer) mul(op0, op1, out *rlwe.Ciphertext) (bool, error) {
	if op0.Degree() != 1 || op1.Degree() != 1 {
		return false, nil
	}
	level := min(op0.Level(), op1.Level(), out.Level())
	ringQ := t.eval.GetParameters().RingQ().AtLevel(level)
	consts := make([]mont52Consts, level+1)
	for u, s := range ringQ.SubRings[:level+1] {
		var ok bool
		if consts[u], ok = mont52Of(s); !ok {
			return false, nil
		}
	}
	// Lattigo's Mul: the output's metadata and level, then its degree and scale.
	if _, _, err := t.eval.InitOutputBinaryOp(op0.El(), op1.El(), 2, out.El()); err != nil {
		return true, err
	}
	out.Resize(2, level)
	out.Scale = op0.Scale.Mul(op1.Scale)
	// As lattigo: the operand that is not the output goes second.
	a, b := op0, op1
	if op1.El() == out.El() {
		a, b = op1, op0
	}
	n := ringQ.N()
	for u, s := range ringQ.SubRings[:level+1] {
		q, c := s.Modulus, consts[u]
		a0, a1 := t.buf[0].Coeffs[u][:n], t.buf[1].Coeffs[u][:n]
		mulMont52Scalar(&a0[0], &a.Value[0].Coeffs[u][0], n, c.r2, q, c.qinv)
		mulMont52Scalar(&a1[0], &a.Value[1].Coeffs[u][0], n, c.r2, q, c.qinv)
		b0, b1 := b.Value[0].Coeffs[u], b.Value[1].Coeffs[u]
		c0, c1, c2 := out.Value[0].Coeffs[u], out.Value[1].Coeffs[u], out.Value[2].Coeffs[u]
		mulMont52(&c0[0], &b0[0], &a0[0], n, q, c.qinv, false)
		mulMont52(&c2[0], &b1[0], &a1[0], n, q, c.qinv, false)
		mulMont52(&c1[0], &b1[0], &a0[0], n, q, c.qinv, false)
		if op0.El() == op1.El() {
			s.Add(c1, c1, c1)
		} else {
			mulMont52(&c1[0], &b0[0], &a1[0], n, q, c.qinv, true)
		}
	}
	return true, nil
}
