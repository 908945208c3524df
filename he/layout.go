package he

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
)

// Lattigo's decoders read a length from the input and allocate it before reading the
// elements (utils/structs.Vector.ReadFrom: make([]T, size)), so a few crafted bytes can ask
// for terabytes. Every key or ciphertext section is therefore checked against the exact
// byte layout of the one object this package expects there (its size, its length prefixes
// and its metadata) before lattigo sees it. The layout is learnt from this package's own
// encoder: the object is encoded twice, once with every coefficient 0 and once with every
// coefficient 2^64-1; the bytes that agree are the skeleton, the others are coefficients.

// layout is the skeleton of one canonical encoding.
type layout struct {
	size  int
	fixed []span
}

type span struct {
	off int
	b   []byte
}

func layoutOf(zero, ones []byte) layout {
	l := layout{size: len(zero)}
	for i := 0; i < len(zero) && i < len(ones); {
		if zero[i] != ones[i] {
			i++
			continue
		}
		j := i
		for j < len(zero) && j < len(ones) && zero[j] == ones[j] {
			j++
		}
		l.fixed = append(l.fixed, span{off: i, b: append([]byte(nil), zero[i:j]...)})
		i = j
	}
	return l
}

// fits reports whether p has the layout's size and skeleton; it allocates nothing.
func (l layout) fits(p []byte) bool {
	if len(p) != l.size {
		return false
	}
	for _, s := range l.fixed {
		if !bytes.Equal(p[s.off:s.off+len(s.b)], s.b) {
			return false
		}
	}
	return true
}

// layouts caches the layouts by name; they are computed once, from trusted templates.
var layouts sync.Map // string -> *lazyLayout

type lazyLayout struct {
	once sync.Once
	l    layout
	err  error
}

// layoutFor returns the layout called name, building it with build the first time. build
// returns the template marshalled with zero coefficients and with all-ones coefficients.
func layoutFor(name string, build func() (zero, ones []byte, err error)) (layout, error) {
	v, _ := layouts.LoadOrStore(name, &lazyLayout{})
	ll := v.(*lazyLayout)
	ll.once.Do(func() {
		zero, ones, err := build()
		if err != nil {
			ll.err = fmt.Errorf("he: building the %s layout failed (a bug in this package): %w", name, err)
			return
		}
		ll.l = layoutOf(zero, ones)
	})
	return ll.l, ll.err
}

type marshaler interface{ MarshalBinary() ([]byte, error) }

// twoWays marshals obj, then sets every coefficient it holds (through fill) to 2^64-1 and
// marshals it again.
func twoWays(obj marshaler, fill func(v uint64)) ([]byte, []byte, error) {
	zero, err := obj.MarshalBinary()
	if err != nil {
		return nil, nil, err
	}
	fill(^uint64(0))
	ones, err := obj.MarshalBinary()
	return zero, ones, err
}

func fillPoly(p ring.Poly, v uint64) {
	for _, row := range p.Coeffs {
		for i := range row {
			row[i] = v
		}
	}
}

func fillQP(p ringqp.Poly, v uint64) {
	fillPoly(p.Q, v)
	fillPoly(p.P, v)
}

func fillGadget(g *rlwe.GadgetCiphertext, v uint64) {
	for _, row := range g.Value {
		for _, vec := range row {
			for _, p := range vec {
				fillQP(p, v)
			}
		}
	}
}

// ciphertextLayout is the layout of a fresh degree-1 ciphertext at level with the given
// scale, in the NTT domain, batched over all slots: what EncryptModel writes.
func ciphertextLayout(level int, logScale int) (layout, error) {
	return layoutFor(fmt.Sprintf("ciphertext/%d/%d", level, logScale), func() ([]byte, []byte, error) {
		ct, err := canonicalCiphertext(level, logScale)
		if err != nil {
			return nil, nil, err
		}
		return twoWays(ct, func(v uint64) {
			for _, p := range ct.Value {
				fillPoly(p, v)
			}
		})
	})
}

// canonicalCiphertext is a zero degree-1 ciphertext with the metadata every Veil model and
// sums ciphertext carries.
func canonicalCiphertext(level, logScale int) (*rlwe.Ciphertext, error) {
	params, _, err := Parameters()
	if err != nil {
		return nil, err
	}
	ct := rlwe.NewCiphertext(params, 1, level)
	ct.Scale = rlwe.NewScale(float64(uint64(1) << logScale))
	ct.LogDimensions = params.LogMaxDimensions()
	ct.IsBatched = true
	ct.IsNTT = true
	ct.IsMontgomery = false
	return ct, nil
}

// checkReduced reports whether every coefficient of p is below its row's modulus. Lattigo's
// modular arithmetic assumes reduced inputs; an unreduced coefficient would make the
// platform compute something that is no longer the homomorphic operation.
func checkReduced(p ring.Poly, moduli []uint64) bool {
	if len(p.Coeffs) > len(moduli) {
		return false
	}
	for i, row := range p.Coeffs {
		q := moduli[i]
		for _, c := range row {
			if c >= q {
				return false
			}
		}
	}
	return true
}

func checkReducedQP(p ringqp.Poly, q, pm []uint64) bool {
	return checkReduced(p.Q, q) && checkReduced(p.P, pm)
}

func checkReducedGadget(g *rlwe.GadgetCiphertext, q, pm []uint64) bool {
	for _, row := range g.Value {
		for _, vec := range row {
			for _, p := range vec {
				if !checkReducedQP(p, q, pm) {
					return false
				}
			}
		}
	}
	return true
}
