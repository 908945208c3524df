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
// unique), with the products on AVX-512 IFMA (tensorMont52): Montgomery's multiplication on
// 52-bit lanes, one operand first put in that Montgomery form (times 2^52 mod q), all
// four products in one pass over the coefficients. Lattigo's
// pure-Go MForm and MulCoeffsMontgomery were a tenth of a packing batch.
type tensorer struct {
	eval *hefloat.Evaluator
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
	return &tensorer{eval: eval}
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
	// One pass per prime; each lane of the inputs is read before the outputs' lane is written,
	// so out may be either operand. A square (op0 == op1) gives lattigo's 2*c0*c1 as
	// c0*c1 + c1*c0, the same value modulo q.
	n := ringQ.N()
	for u, s := range ringQ.SubRings[:level+1] {
		c := consts[u]
		tensorMont52(&out.Value[0].Coeffs[u][0], &out.Value[1].Coeffs[u][0], &out.Value[2].Coeffs[u][0],
			&op0.Value[0].Coeffs[u][0], &op0.Value[1].Coeffs[u][0], &op1.Value[0].Coeffs[u][0], &op1.Value[1].Coeffs[u][0],
			n, s.Modulus, c.qinv, c.r2)
	}
	return true, nil
}
