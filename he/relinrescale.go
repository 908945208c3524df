package he

import (
	"fmt"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
)

// relinRescaler relinearizes and rescales a degree-2 ciphertext in one step (issue #18
// item 4). Lattigo's Relinearize ends its key switch with a division by the special primes
// P = p0*p1 (ModDown: INTT of the P part, basis extension, NTT into every prime of Q) and
// its Rescale then divides by the last prime q_L (INTT of that prime, NTT into each other
// one). Here the key switch's output, still modulo Q*P, gets P*c0 and P*c1 added and is
// divided by q_L*P at once, with a basis extender from {q_L, p0, p1} to {q_0..q_(L-1)}:
// per output polynomial L+1 fewer NTTs. The result is lattigo's up to the rounding of the
// division (floor instead of round: below one unit of the last digit per coefficient).
type relinRescaler struct {
	params hefloat.Parameters
	eval   *hefloat.Evaluator
	rlk    *rlwe.RelinearizationKey
	be     []*ring.BasisExtender // by level L: from {q_L, p0, p1} down to {q_0..q_(L-1)}
	down   []*modDowner          // be[L]'s ModDownQPtoQNTT on fastNTT
	gp     *gadgetProducer
	rs     *rescaler // lattigo's Rescale on fastNTT, for the products this one does not take
	pMont  []uint64  // P mod q_i, Montgomery form
	ks     *rlwe.Element[ringqp.Poly]
}

var fusedShared struct {
	once  sync.Once
	be    []*ring.BasisExtender
	rq    []*ring.Ring // be's rings
	rp    []*ring.Ring
	pMont []uint64
	err   error
}

// fusedExtenders builds the read-only tables once per process: a basis extender per level
// in (outLevel, polyLevel], over rings made from the parameters' own primes (lattigo derives
// a prime's NTT tables from the prime alone, so they match the ciphertexts').
func fusedExtenders(params hefloat.Parameters) ([]*ring.BasisExtender, []uint64, error) {
	fusedShared.once.Do(func() {
		q, p := params.Q(), params.P()
		if len(p) < 2 {
			fusedShared.err = fmt.Errorf("he: the parameters have %d special primes, the fused rescale needs 2 (a bug in this package)", len(p))
			return
		}
		n := params.N()
		fusedShared.be = make([]*ring.BasisExtender, polyLevel+1)
		fusedShared.rq = make([]*ring.Ring, polyLevel+1)
		fusedShared.rp = make([]*ring.Ring, polyLevel+1)
		for l := outLevel + 1; l <= polyLevel; l++ {
			rq, err := ring.NewRingConjugateInvariant(n, q[:l])
			if err != nil {
				fusedShared.err = fmt.Errorf("he: fused rescale ring: %w", err)
				return
			}
			rp, err := ring.NewRingConjugateInvariant(n, []uint64{q[l], p[0], p[1]})
			if err != nil {
				fusedShared.err = fmt.Errorf("he: fused rescale ring: %w", err)
				return
			}
			fusedShared.be[l] = ring.NewBasisExtender(rq, rp)
			fusedShared.rq[l], fusedShared.rp[l] = rq, rp
		}
		ringQ := params.RingQ()
		fusedShared.pMont = make([]uint64, len(q))
		for i, s := range ringQ.SubRings {
			pm := ring.BRedAdd(p[0], s.Modulus, s.BRedConstant)
			pm = ring.BRed(pm, ring.BRedAdd(p[1], s.Modulus, s.BRedConstant), s.Modulus, s.BRedConstant)
			fusedShared.pMont[i] = ring.MForm(pm, s.Modulus, s.BRedConstant)
		}
	})
	return fusedShared.be, fusedShared.pMont, fusedShared.err
}

func newRelinRescaler(params hefloat.Parameters, eval *hefloat.Evaluator) (*relinRescaler, error) {
	rlk, err := eval.CheckAndGetRelinearizationKey()
	if err != nil {
		return nil, fmt.Errorf("he: %w", err)
	}
	if rlk.LevelP() != 1 {
		return nil, fmt.Errorf("he: the relinearization key has %d special primes, the fused rescale needs 2", rlk.LevelP()+1)
	}
	be, pMont, err := fusedExtenders(params)
	if err != nil {
		return nil, err
	}
	r := &relinRescaler{params: params, eval: eval, rlk: rlk, pMont: pMont, be: make([]*ring.BasisExtender, len(be)),
		ks: rlwe.NewElementExtended(params, 1, polyLevel, 1), down: make([]*modDowner, len(be)), gp: newGadgetProducer(params.Parameters.Parameters, eval.Decomposer),
		rs: newRescaler(params.Parameters.Parameters)}
	for l, b := range be {
		if b != nil {
			r.be[l] = b.ShallowCopy()
			r.down[l] = newModDowner(r.be[l], fusedShared.rq[l], fusedShared.rp[l])
		}
	}
	r.ks.IsNTT = true
	return r, nil
}

// handles reports whether relinRescale can take ct.
func (r *relinRescaler) handles(ct *rlwe.Ciphertext) bool {
	l := ct.Level()
	return ct.Degree() == 2 && ct.IsNTT && l > outLevel && l <= polyLevel && l <= r.rlk.LevelQ()
}

// relinRescale sets out to Rescale(Relinearize(ct)) (see relinRescaler); out may be ct.
func (r *relinRescaler) relinRescale(ct, out *rlwe.Ciphertext) {
	l := ct.Level()
	ringQ := r.params.RingQ().AtLevel(l)
	ks := &rlwe.Element[ringqp.Poly]{MetaData: r.ks.MetaData}
	for _, v := range r.ks.Value {
		ks.Value = append(ks.Value, ringqp.Poly{Q: ring.Poly{Coeffs: v.Q.Coeffs[:l+1]}, P: v.P})
	}
	r.gp.product(l, ct.Value[2], &r.rlk.GadgetCiphertext, ks)
	scale := ct.Scale.Div(rlwe.NewScale(ringQ.SubRings[l].Modulus))
	md := *ct.MetaData
	if out != ct {
		out.Resize(1, l)
	}
	for k := 0; k < 2; k++ {
		x := ks.Value[k]
		for i, s := range ringQ.SubRings[:l+1] {
			s.MulScalarMontgomeryThenAdd(ct.Value[k].Coeffs[i], r.pMont[i], x.Q.Coeffs[i])
		}
		qPart := ring.Poly{Coeffs: x.Q.Coeffs[:l]}
		pPart := ring.Poly{Coeffs: [][]uint64{x.Q.Coeffs[l], x.P.Coeffs[0], x.P.Coeffs[1]}}
		dst := ring.Poly{Coeffs: out.Value[k].Coeffs[:l]}
		r.down[l].modDown(l-1, 2, qPart, pPart, dst)
	}
	out.Resize(1, l-1)
	*out.MetaData = md
	out.Scale = scale
}
