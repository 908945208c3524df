package he

import (
	"fmt"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
)

// modDowner is lattigo's ring.BasisExtender.ModDownQPtoQNTT (v5.0.7) with its NTT into Q on
// fastNTT (ntt.go): the division by P of a key switch's output. Same steps, same constants,
// so the same result. Not safe for concurrent use (the basis extender's buffers).
type modDowner struct {
	be           *ring.BasisExtender
	ringQ, ringP *ring.Ring
	pInv         [][]uint64 // by levelP, by prime of Q: q_i - (p_0..p_levelP)^-1 mod q_i, Montgomery form
	buffP, buffQ ring.Poly
}

func newModDowner(be *ring.BasisExtender, ringQ, ringP *ring.Ring) *modDowner {
	d := &modDowner{be: be, ringQ: ringQ, ringP: ringP, buffP: ringP.NewPoly(), buffQ: ringQ.NewPoly()}
	d.pInv = make([][]uint64, len(ringP.SubRings))
	inv := make([][]uint64, len(ringP.SubRings)) // (p_0..p_j)^-1 mod q_i, Montgomery form (lattigo's genmodDownConstants)
	for j, sp := range ringP.SubRings {
		d.pInv[j] = make([]uint64, len(ringQ.SubRings))
		inv[j] = make([]uint64, len(ringQ.SubRings))
		for i, sq := range ringQ.SubRings {
			q := sq.Modulus
			c := ring.MForm(ring.ModExp(sp.Modulus, q-2, q), q, sq.BRedConstant)
			if j > 0 {
				c = ring.MRed(c, inv[j-1][i], q, sq.MRedConstant)
			}
			inv[j][i] = c
			d.pInv[j][i] = q - c
		}
	}
	return d
}

// modDown sets p2Q to (p1Q, p1P) divided by P (rounded down), in the NTT domain, as
// be.ModDownQPtoQNTT(levelQ, levelP, p1Q, p1P, p2Q).
func (d *modDowner) modDown(levelQ, levelP int, p1Q, p1P, p2Q ring.Poly) {
	ringQ := d.ringQ.AtLevel(levelQ)
	buffP := ring.Poly{Coeffs: d.buffP.Coeffs[:levelP+1]}
	buffQ := ring.Poly{Coeffs: d.buffQ.Coeffs[:levelQ+1]}
	ringINTTLazy(d.ringP.AtLevel(levelP), p1P, buffP)
	d.be.ModUpPtoQ(levelP, levelQ, buffP, buffQ)
	ringNTTLazy(ringQ, buffQ, buffQ)
	for i, s := range ringQ.SubRings[:levelQ+1] {
		s.SubThenMulScalarMontgomeryTwoModulus(buffQ.Coeffs[i], p1Q.Coeffs[i], d.pInv[levelP][i], p2Q.Coeffs[i])
	}
}

// gadgetProducer is lattigo's rlwe.Evaluator.GadgetProductLazy for a key with several
// special primes (gadgetProductMultiplePLazy, v5.0.7: the relinearization key) with the
// NTTs of the digits on fastNTT, and, as folder does, without NTTing a digit into its own
// primes (their rows are the input's). Not safe for concurrent use.
type gadgetProducer struct {
	dec    *ring.Decomposer
	params rlwe.Parameters
	cInv   ring.Poly
	dQs    []ring.Poly // by digit
	dPs    []ring.Poly
	shoup  *shoupKey // the last key's values for mulAddShoup
}

// shoupKey holds a gadget key's values out of Montgomery form and their Shoup companions
// (floor(k * 2^52 / q)), by digit, half, and prime of Q then P (nil for a prime fastNTT
// does not take), so that the products of the digits by the key run on AVX-512 IFMA
// (mulAddShoup) with lattigo's result: the same products modulo q, lazily in [0, 2q).
type shoupKey struct {
	key    *rlwe.GadgetCiphertext
	k, kp  [][2][][]uint64 // Q primes
	pk, pp [][2][][]uint64 // P primes
}

// shoupKeys keeps the last key's shoupKey, which the workers of a job share (read-only
// once made): one key per job, so one entry.
var shoupKeys struct {
	sync.Mutex
	key *rlwe.GadgetCiphertext
	sk  *shoupKey
}

// shoupKeyOf returns key's shoupKey, made once for all the workers that use the key.
func shoupKeyOf(params rlwe.Parameters, key *rlwe.GadgetCiphertext) *shoupKey {
	shoupKeys.Lock()
	defer shoupKeys.Unlock()
	if shoupKeys.key != key {
		shoupKeys.key, shoupKeys.sk = key, newShoupKey(params, key)
	}
	return shoupKeys.sk
}

func newShoupKey(params rlwe.Parameters, key *rlwe.GadgetCiphertext) *shoupKey {
	sk := &shoupKey{key: key}
	convert := func(subs []*ring.SubRing, rows [][]uint64) (k, kp [][]uint64) {
		k, kp = make([][]uint64, len(rows)), make([][]uint64, len(rows))
		for u, row := range rows {
			s := subs[u]
			if fastNTTOf(s) == nil {
				continue
			}
			k[u], kp[u] = make([]uint64, len(row)), make([]uint64, len(row))
			f := 0x1p52 / float64(s.Modulus)
			for j, v := range row {
				w := ring.MRed(v, 1, s.Modulus, s.MRedConstant)
				k[u][j] = w
				kp[u][j] = shoupCompanion(w, s.Modulus, f)
			}
		}
		return k, kp
	}
	ringQ, ringP := params.RingQ(), params.RingP()
	for _, d := range key.Value {
		var k, kp, pk, pp [2][][]uint64
		for h := 0; h < 2; h++ {
			k[h], kp[h] = convert(ringQ.SubRings, d[0][h].Q.Coeffs)
			pk[h], pp[h] = convert(ringP.SubRings, d[0][h].P.Coeffs)
		}
		sk.k, sk.kp = append(sk.k, k), append(sk.kp, kp)
		sk.pk, sk.pp = append(sk.pk, pk), append(sk.pp, pp)
	}
	return sk
}

// shoupCompanion is floor(k * 2^52 / q) for k < q < 2^51, f = 2^52 / q: a floating-point
// estimate (off by at most 2) corrected exactly, since the remainder k*2^52 - est*q is then
// below 3q in magnitude and so is its value modulo 2^64. bits.Div64's result (the 17 MB of
// the relinearization key's companions, made while the other workers wait) at a fraction of
// its cost.
func shoupCompanion(k, q uint64, f float64) uint64 {
	est := uint64(float64(k) * f)
	r, sq := int64(k<<52-est*q), int64(q)
	for r < 0 {
		est--
		r += sq
	}
	for r >= sq {
		est++
		r -= sq
	}
	return est
}

// mulKey sets (first) or adds to dst the lazy product of x (below 2q) by the key row
// mont (Montgomery form), whose plain values and companions are k, kp when set.
func mulKey(s *ring.SubRing, mont, k, kp, x, dst []uint64, first bool) {
	if k != nil && haveIFMA {
		mulAddShoup(&dst[0], &x[0], &k[0], &kp[0], len(dst), s.Modulus, first)
		return
	}
	if first {
		s.MulCoeffsMontgomeryLazy(mont, x, dst)
	} else {
		s.MulCoeffsMontgomeryLazyThenAddLazy(mont, x, dst)
	}
}

// newGadgetProducer takes the evaluator's parameters and decomposer (eval.Decomposer).
func newGadgetProducer(params rlwe.Parameters, dec *ring.Decomposer) *gadgetProducer {
	return &gadgetProducer{dec: dec, params: params, cInv: params.RingQ().NewPoly()}
}

// product sets ct (modulo Q_levelQ * P, NTT, reduced) to the gadget product of cx (NTT, at
// levelQ) with key, as GadgetProductLazy(levelQ, cx, key, ct).
func (g *gadgetProducer) product(levelQ int, cx ring.Poly, key *rlwe.GadgetCiphertext, ct *rlwe.Element[ringqp.Poly]) {
	levelP := key.LevelP()
	nbPi := levelP + 1
	ringQ := g.params.RingQ().AtLevel(levelQ)
	ringP := g.params.RingP().AtLevel(levelP)
	cInv := lvl(g.cInv, levelQ)
	ringINTT(ringQ, cx, cInv)
	digits := g.params.BaseRNSDecompositionVectorSize(levelQ, levelP)
	if g.shoup == nil || g.shoup.key != key {
		g.shoup = shoupKeyOf(g.params, key)
	}
	sk := g.shoup
	qOver := max(g.params.QiOverflowMargin(levelQ)>>1, 1)
	pOver := max(g.params.PiOverflowMargin(levelP)>>1, 1)
	c0Q, c1Q := lvl(ct.Value[0].Q, levelQ), lvl(ct.Value[1].Q, levelQ)
	c0P, c1P := lvl(ct.Value[0].P, levelP), lvl(ct.Value[1].P, levelP)
	// Every digit first, decomposed and in NTT form, then every prime's multiply-adds over
	// all digits at once (mulDigits).
	for len(g.dQs) < digits {
		g.dQs, g.dPs = append(g.dQs, g.params.RingQ().NewPoly()), append(g.dPs, g.params.RingP().NewPoly())
	}
	for i := 0; i < digits; i++ {
		dQ, dP := lvl(g.dQs[i], levelQ), lvl(g.dPs[i], levelP)
		g.dec.DecomposeAndSplit(levelQ, levelP, nbPi, i, cInv, dQ, dP)
		for u, s := range ringQ.SubRings[:levelQ+1] {
			if u < i*nbPi || u >= (i+1)*nbPi {
				nttLazy(s, dQ.Coeffs[u], dQ.Coeffs[u])
			}
		}
		for u, s := range ringP.SubRings[:levelP+1] {
			nttLazy(s, dP.Coeffs[u], dP.Coeffs[u])
		}
	}
	var rows digitRows
	for u, s := range ringQ.SubRings[:levelQ+1] {
		rows.reset()
		for i := 0; i < digits; i++ {
			x := g.dQs[i].Coeffs[u]
			if u >= i*nbPi && u < (i+1)*nbPi {
				x = cx.Coeffs[u]
			}
			el := key.Value[i][0]
			rows.add(x, el[0].Q.Coeffs[u], el[1].Q.Coeffs[u], sk.k[i][0][u], sk.kp[i][0][u], sk.k[i][1][u], sk.kp[i][1][u])
		}
		rows.mulDigits(s, c0Q.Coeffs[u], c1Q.Coeffs[u], qOver)
	}
	for u, s := range ringP.SubRings[:levelP+1] {
		rows.reset()
		for i := 0; i < digits; i++ {
			el := key.Value[i][0]
			rows.add(g.dPs[i].Coeffs[u], el[0].P.Coeffs[u], el[1].P.Coeffs[u], sk.pk[i][0][u], sk.pp[i][0][u], sk.pk[i][1][u], sk.pp[i][1][u])
		}
		rows.mulDigits(s, c0P.Coeffs[u], c1P.Coeffs[u], pOver)
	}
}

// digitRows are one prime's rows of every digit of a gadget product: the digit, and the
// key's two halves in Montgomery form and, where set, plain with Shoup companions.
type digitRows struct {
	x, m0, m1, k0, kp0, k1, kp1 [][]uint64
	px, pk0, pkp0, pk1, pkp1    []*uint64 // the rows' first coefficients, for mulKeyDigits
}

func (r *digitRows) reset() {
	r.x, r.m0, r.m1, r.k0, r.kp0, r.k1, r.kp1 = r.x[:0], r.m0[:0], r.m1[:0], r.k0[:0], r.kp0[:0], r.k1[:0], r.kp1[:0]
}

func (r *digitRows) add(x, m0, m1, k0, kp0, k1, kp1 []uint64) {
	r.x, r.m0, r.m1 = append(r.x, x), append(r.m0, m0), append(r.m1, m1)
	r.k0, r.kp0, r.k1, r.kp1 = append(r.k0, k0), append(r.kp0, kp0), append(r.k1, k1), append(r.kp1, kp1)
}

// mulDigits sets dst0, dst1 to the reduced sums over the digits of x times the key's halves
// (lattigo's lazy multiply-adds, reduced every `over` digits and at the end): on IFMA with
// the Shoup companions in one pass over the coefficients when every digit has them, else
// digit by digit (mulKey).
func (r *digitRows) mulDigits(s *ring.SubRing, dst0, dst1 []uint64, over int) {
	d := len(r.x)
	shoup := haveIFMA && d <= 8 // 2dq < 2^64 for q < 2^51
	for i := 0; i < d && shoup; i++ {
		shoup = r.k0[i] != nil && r.k1[i] != nil
	}
	if shoup {
		r.px, r.pk0, r.pkp0, r.pk1, r.pkp1 = r.px[:0], r.pk0[:0], r.pkp0[:0], r.pk1[:0], r.pkp1[:0]
		for i := 0; i < d; i++ {
			r.px, r.pk0, r.pkp0 = append(r.px, &r.x[i][0]), append(r.pk0, &r.k0[i][0]), append(r.pkp0, &r.kp0[i][0])
			r.pk1, r.pkp1 = append(r.pk1, &r.k1[i][0]), append(r.pkp1, &r.kp1[i][0])
		}
		mulKeyDigits(&dst0[0], &dst1[0], &r.px[0], &r.pk0[0], &r.pkp0[0], &r.pk1[0], &r.pkp1[0], d, len(dst0), s.Modulus)
	} else {
		for i := 0; i < d; i++ {
			mulKey(s, r.m0[i], r.k0[i], r.kp0[i], r.x[i], dst0, i == 0)
			mulKey(s, r.m1[i], r.k1[i], r.kp1[i], r.x[i], dst1, i == 0)
			if i%over == over-1 {
				s.Reduce(dst0, dst0)
				s.Reduce(dst1, dst1)
			}
		}
	}
	s.Reduce(dst0, dst0)
	s.Reduce(dst1, dst1)
}

// rescaler is ckks.Evaluator.Rescale (v5.0.7, one prime per rescale as these parameters
// consume) with the NTTs of ring.DivRoundByLastModulusNTT on fastNTT. The last prime's
// row comes out of its inverse NTT fully reduced (lattigo's is lazy, in [0, 2q)), so the
// rounding is exact where lattigo's may be off by one unit. Not safe for concurrent use.
type rescaler struct {
	ringQ *ring.Ring
	buff  ring.Poly
}

func newRescaler(params rlwe.Parameters) *rescaler {
	return &rescaler{ringQ: params.RingQ(), buff: params.RingQ().NewPoly()}
}

// rescale sets out to in divided by its last prime, as lattigo's Rescale(in, out).
func (r *rescaler) rescale(in, out *rlwe.Ciphertext) error {
	level := in.Level()
	if level < 1 || !in.IsNTT {
		return fmt.Errorf("he: cannot rescale a ciphertext at level %d (NTT %v)", level, in.IsNTT)
	}
	if in != out {
		out.Resize(in.Degree(), level-1)
	}
	*out.MetaData = *in.MetaData
	ringQ := r.ringQ.AtLevel(level)
	last := ringQ.SubRings[level]
	out.Scale = out.Scale.Div(rlwe.NewScale(last.Modulus))
	pHalf := (last.Modulus - 1) >> 1
	buff := r.buff
	for k, p := range in.Value {
		dst := out.Value[k]
		inttFull(last, p.Coeffs[level], buff.Coeffs[level])
		last.AddScalar(buff.Coeffs[level], pHalf, buff.Coeffs[level])
		for i, s := range ringQ.SubRings[:level] {
			s.AddScalarLazy(buff.Coeffs[level], s.Modulus-ring.BRedAdd(pHalf, s.Modulus, s.BRedConstant), buff.Coeffs[i])
			nttLazy(s, buff.Coeffs[i], buff.Coeffs[i])
		}
		for i, s := range ringQ.SubRings[:level] {
			s.SubThenMulScalarMontgomeryTwoModulus(buff.Coeffs[i], p.Coeffs[i], ringQ.RescaleConstants[level-1][i], dst.Coeffs[i])
		}
	}
	out.Resize(in.Degree(), level-1)
	return nil
}
