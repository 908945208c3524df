package he

import (
	crand "crypto/rand"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/he/hefloat"
)

// roundingSigma is the standard deviation of the Gaussian added to every coefficient of a
// plaintext that carries rows before it is rounded to an integer. Deterministic rounding
// leaves in every slot an error that is a fixed function of all the rows of the batch
// (the fractional parts of the encoding); a vendor that puts a huge weight in a lane whose
// slots hold no row (an unused lane, the tail of a partial batch) would read that error,
// amplified, off its decrypted sums. With the Gaussian, the residual r = round(c + g) - c
// depends on c only through terms of order exp(-2 pi^2 sigma^2) (Poisson summation;
// Micciancio, Regev, "Worst-case to average-case reductions based on Gaussian measures",
// SIAM J. Comput. 2007, smoothing parameter of Z), here about 2^-455. Its cost in
// precision is sigma*sqrt(2N)/scale ~ 3e-9 per slot.
const roundingSigma = 4

// plainEncoder encodes real vectors into plaintexts as lattigo's hefloat.Encoder does
// (special inverse FFT, fixed point, NTT) without its allocations per coefficient, and with
// randomized rounding for plaintexts that carry rows. Not safe for concurrent use.
type plainEncoder struct {
	params  hefloat.Parameters
	ecd     *hefloat.Encoder
	buf     []complex128
	ints    []int64
	rng     *rand.Rand
	logDims int
}

func newPlainEncoder(params hefloat.Parameters) (*plainEncoder, error) {
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("he: encoding needs a random source: %w", err)
	}
	return &plainEncoder{
		params: params, ecd: hefloat.NewEncoder(params), buf: make([]complex128, params.MaxSlots()), ints: make([]int64, params.MaxSlots()),
		rng: rand.New(rand.NewChaCha8(seed)), logDims: params.LogMaxSlots(),
	}, nil
}

// encode writes values (at most MaxSlots) into pt at pt's level and scale;
// randomized adds the rounding Gaussian (see roundingSigma).
func (e *plainEncoder) encode(values []float64, pt *rlwe.Plaintext, randomized bool) error {
	if err := e.quantize(values, pt, randomized); err != nil {
		return err
	}
	rlwe.NTTSparseAndMontgomery(e.params.RingQ().AtLevel(pt.Level()), pt.MetaData, pt.Value)
	return nil
}

// encodeLazy is encode for a plaintext that only meets lattigo's lazy Montgomery
// multiplication: its NTT is left in [0, 2q) (ring.Ring.NTTLazy).
func (e *plainEncoder) encodeLazy(values []float64, pt *rlwe.Plaintext, randomized bool) error {
	if err := e.quantize(values, pt, randomized); err != nil {
		return err
	}
	ringNTTLazy(e.params.RingQ().AtLevel(pt.Level()), pt.Value, pt.Value)
	return nil
}

// quantize writes the coefficients of values' encoding, before the NTT.
func (e *plainEncoder) quantize(values []float64, pt *rlwe.Plaintext, randomized bool) error {
	if len(values) > len(e.buf) {
		return fmt.Errorf("he: %d values for %d slots", len(values), len(e.buf))
	}
	for i, v := range values {
		e.buf[i] = complex(v, 0)
	}
	clear(e.buf[len(values):])
	if err := e.ecd.IFFT(e.buf, e.logDims); err != nil {
		return fmt.Errorf("he: encoding failed: %w", err)
	}
	ringQ := e.params.RingQ().AtLevel(pt.Level())
	moduli := make([]uint64, pt.Level()+1)
	for j := range moduli {
		moduli[j] = ringQ.SubRings[j].Modulus
	}
	scale := pt.Scale.Float64()
	// The conjugate-invariant ring has one real coefficient per slot (lattigo
	// ckks.Complex128ToFixedPointCRT, ring.ConjugateInvariant case). Rounded as lattigo
	// does (half away from zero), then reduced prime by prime, row after row.
	ints := e.ints
	var most uint64 // largest |coefficient|
	for i, c := range e.buf {
		a := real(c) * scale
		if randomized {
			a += roundingSigma * e.rng.NormFloat64()
		}
		if !(math.Abs(a) < 0x1p62) {
			return fmt.Errorf("he: a value to encode is out of range")
		}
		var v int64
		if a < 0 {
			v = -int64(-a + 0.5)
		} else {
			v = int64(a + 0.5)
		}
		ints[i] = v
		most = max(most, uint64(max(v, -v)))
	}
	for j, q := range moduli {
		row := pt.Value.Coeffs[j][:len(ints)]
		if most < q {
			// Every coefficient is already reduced but for its sign: a negative c is q + c,
			// which the wrap-around of uint64(c) + q gives without a branch.
			for i, c := range ints {
				row[i] = uint64(c) + q&uint64(c>>63)
			}
			continue
		}
		for i, c := range ints {
			if c >= 0 {
				v := uint64(c)
				if v >= q {
					v %= q
				}
				row[i] = v
			} else {
				v := uint64(-c)
				if v >= q {
					v %= q
				}
				if v != 0 {
					v = q - v
				}
				row[i] = v
			}
		}
	}
	return nil
}
