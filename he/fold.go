package he

import (
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
)

// folder sums a ciphertext's rotations by doubling (foldLanes) with two savings over
// lattigo's Rotate (v5.0.7, rlwe.Evaluator.Automorphism), for Galois keys with one
// special prime p0 and one prime per digit, as keys.go makes them (issue #18):
//
//   - the key switch NTTs each digit into every prime of Q*p0 but its own: the digit of
//     prime q_i is c1 mod q_i, whose NTT is already row i of c1 (lattigo NTTs it again);
//   - the c0 half stays modulo Q*p0, scaled by p0, through all the rotations of the fold
//     and is divided by p0 once at the end: only the c1 half, which the next key switch
//     decomposes, is divided at each step.
//
// Per rotation at the top level that is 81 NTTs instead of 98. The result is lattigo's up
// to the rounding of the divisions by p0 (one instead of one per rotation for c0).
type folder struct {
	params hefloat.Parameters
	eval   *hefloat.Evaluator
	pMont  []uint64 // p0 mod q_i, Montgomery form
	c1Inv  ring.Poly
	dQ, dP ring.Poly // one digit, extended to Q and P (coefficients, then NTT)
	ks     [2]ringqp.Poly
	c0     ringqp.Poly // p0 * c0, modulo Q*p0
	t      ringqp.Poly
	u      ring.Poly
	down   *modDowner // the evaluator's ModDownQPtoQNTT on fastNTT
}

func newFolder(eval *hefloat.Evaluator) *folder {
	params := *eval.GetParameters()
	ringQ, ringP := params.RingQ(), params.RingP().AtLevel(0)
	f := &folder{params: params, eval: eval, c1Inv: ringQ.NewPoly(), dQ: ringQ.NewPoly(), dP: ringP.NewPoly(),
		c0: ringqp.Poly{Q: ringQ.NewPoly(), P: ringP.NewPoly()}, t: ringqp.Poly{Q: ringQ.NewPoly(), P: ringP.NewPoly()}, u: ringQ.NewPoly(),
		down: newModDowner(eval.BasisExtender, params.RingQ(), params.RingP())}
	for k := range f.ks {
		f.ks[k] = ringqp.Poly{Q: ringQ.NewPoly(), P: ringP.NewPoly()}
	}
	p0 := params.P()[0]
	f.pMont = make([]uint64, len(ringQ.SubRings))
	for i, s := range ringQ.SubRings {
		f.pMont[i] = ring.MForm(ring.BRedAdd(p0, s.Modulus, s.BRedConstant), s.Modulus, s.BRedConstant)
	}
	return f
}

// usable reports whether the fast path can take the rotation keys of a fold at level.
func (f *folder) usable(lanes, n, level int) bool {
	for r := lanes; r < lanes*n; r <<= 1 {
		k, err := f.eval.CheckAndGetGaloisKey(f.params.GaloisElement(r))
		if err != nil || k.LevelP() != 0 || k.BaseTwoDecomposition != 0 || k.LevelQ() < level || len(k.Value) <= level {
			return false
		}
	}
	return true
}

// fold sets out (a fresh ciphertext, not ct) to the sum of ct's rotations by 0, lanes,
// ..., (n-1)*lanes, as foldLanes; every key must pass usable.
func (f *folder) fold(ct *rlwe.Ciphertext, lanes, n int, out *rlwe.Ciphertext) error {
	if ct.Degree() != 1 || !ct.IsNTT {
		return fmt.Errorf("fold: expected an NTT ciphertext of degree 1")
	}
	level := ct.Level()
	out.Resize(1, level)
	*out.MetaData = *ct.MetaData
	ringQ := f.params.RingQ().AtLevel(level)
	ringP := f.params.RingP().AtLevel(0)
	c0 := ringqp.Poly{Q: lvl(f.c0.Q, level), P: f.c0.P}
	for i, s := range ringQ.SubRings[:level+1] {
		s.MulScalarMontgomery(ct.Value[0].Coeffs[i], f.pMont[i], c0.Q.Coeffs[i])
	}
	c0.P.Zero()
	c1 := out.Value[1]
	c1.Copy(ct.Value[1])
	t := ringqp.Poly{Q: lvl(f.t.Q, level), P: f.t.P}
	for r := lanes; r < lanes*n; r <<= 1 {
		galEl := f.params.GaloisElement(r)
		key, err := f.eval.CheckAndGetGaloisKey(galEl)
		if err != nil {
			return err
		}
		index, err := ring.AutomorphismNTTIndex(ringQ.N(), ringQ.NthRoot(), galEl)
		if err != nil {
			return err
		}
		f.keySwitch(level, c1, &key.GadgetCiphertext)
		// c0 <- c0 + phi(c0 + ks0), modulo Q*p0
		ringQ.Add(c0.Q, lvl(f.ks[0].Q, level), t.Q)
		ringP.Add(c0.P, f.ks[0].P, t.P)
		ringQ.AutomorphismNTTWithIndex(t.Q, index, lvl(f.ks[0].Q, level))
		ringP.AutomorphismNTTWithIndex(t.P, index, f.ks[0].P)
		ringQ.Add(c0.Q, lvl(f.ks[0].Q, level), c0.Q)
		ringP.Add(c0.P, f.ks[0].P, c0.P)
		// c1 <- c1 + phi(ks1 / p0)
		u := lvl(f.u, level)
		f.down.modDown(level, 0, lvl(f.ks[1].Q, level), f.ks[1].P, u)
		ringQ.AutomorphismNTTWithIndex(u, index, t.Q)
		ringQ.Add(c1, t.Q, c1)
	}
	f.down.modDown(level, 0, c0.Q, c0.P, out.Value[0])
	return nil
}

// keySwitch sets f.ks to the gadget product of c1 (NTT, at level) with a key of one
// special prime and one prime per digit (lattigo's gadgetProductSinglePAndBitDecompLazy
// without the NTT of each digit into its own prime), reduced.
func (f *folder) keySwitch(level int, c1 ring.Poly, key *rlwe.GadgetCiphertext) {
	ringQ := f.params.RingQ().AtLevel(level)
	ringP := f.params.RingP().AtLevel(0)
	c1Inv := lvl(f.c1Inv, level)
	ringINTT(ringQ, c1, c1Inv)
	dQ := lvl(f.dQ, level)
	ks0Q, ks1Q := lvl(f.ks[0].Q, level), lvl(f.ks[1].Q, level)
	ks0P, ks1P := f.ks[0].P, f.ks[1].P
	qOver := max(f.params.QiOverflowMargin(level)>>1, 1)
	pOver := max(f.params.PiOverflowMargin(0)>>1, 1)
	for i := 0; i <= level; i++ {
		f.eval.Decomposer.DecomposeAndSplit(level, 0, 1, i, c1Inv, dQ, f.dP)
		el := key.Value[i][0]
		for u, s := range ringQ.SubRings[:level+1] {
			x := dQ.Coeffs[u]
			if u == i {
				x = c1.Coeffs[i]
			} else {
				nttLazy(s, x, x)
			}
			if i == 0 {
				s.MulCoeffsMontgomeryLazy(el[0].Q.Coeffs[u], x, ks0Q.Coeffs[u])
				s.MulCoeffsMontgomeryLazy(el[1].Q.Coeffs[u], x, ks1Q.Coeffs[u])
			} else {
				s.MulCoeffsMontgomeryLazyThenAddLazy(el[0].Q.Coeffs[u], x, ks0Q.Coeffs[u])
				s.MulCoeffsMontgomeryLazyThenAddLazy(el[1].Q.Coeffs[u], x, ks1Q.Coeffs[u])
			}
		}
		s := ringP.SubRings[0]
		nttLazy(s, f.dP.Coeffs[0], f.dP.Coeffs[0])
		if i == 0 {
			s.MulCoeffsMontgomeryLazy(el[0].P.Coeffs[0], f.dP.Coeffs[0], ks0P.Coeffs[0])
			s.MulCoeffsMontgomeryLazy(el[1].P.Coeffs[0], f.dP.Coeffs[0], ks1P.Coeffs[0])
		} else {
			s.MulCoeffsMontgomeryLazyThenAddLazy(el[0].P.Coeffs[0], f.dP.Coeffs[0], ks0P.Coeffs[0])
			s.MulCoeffsMontgomeryLazyThenAddLazy(el[1].P.Coeffs[0], f.dP.Coeffs[0], ks1P.Coeffs[0])
		}
		if i%qOver == qOver-1 {
			ringQ.Reduce(ks0Q, ks0Q)
			ringQ.Reduce(ks1Q, ks1Q)
		}
		if i%pOver == pOver-1 {
			ringP.Reduce(ks0P, ks0P)
			ringP.Reduce(ks1P, ks1P)
		}
	}
	ringQ.Reduce(ks0Q, ks0Q)
	ringQ.Reduce(ks1Q, ks1Q)
	ringP.Reduce(ks0P, ks0P)
	ringP.Reduce(ks1P, ks1P)
}

// lvl is p restricted to its first level+1 primes.
func lvl(p ring.Poly, level int) ring.Poly { return ring.Poly{Coeffs: p.Coeffs[:level+1]} }
