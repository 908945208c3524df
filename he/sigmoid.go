package he

import (
	"fmt"
	"math"

	"github.com/tuneinsight/lattigo/v5/utils/bignum"
)

// MaxSigmoidError is the largest absolute error allowed between the
// polynomial the platform evaluates and the exact sigmoid, over the whole
// declared input range.
const MaxSigmoidError = 1e-5

// maxSigmoidDegree is the largest degree that fits the 5 levels reserved
// for the sigmoid (2^5 - 1).
const maxSigmoidDegree = 1<<maxPolyDepth - 1

// sigmoidOdd returns the odd Chebyshev interpolant on [-1, 1] of
// t -> sigmoid(inputRange*t) - 0.5, of the given odd degree. Even
// coefficients are dropped (they are zero up to rounding) and the polynomial
// is flagged odd, which lets lattigo skip the even powers; the constant 0.5
// is added per row in the clear by the scorer. It is deterministic, so
// vendor and platform derive the same polynomial from (inputRange, degree).
func sigmoidOdd(inputRange float64, degree int) bignum.Polynomial {
	const prec = 128
	f := func(t float64) float64 { return 1/(1+math.Exp(-inputRange*t)) - 0.5 }
	p := bignum.ChebyshevApproximation(f, bignum.Interval{
		A:     *bignum.NewFloat(-1, prec),
		B:     *bignum.NewFloat(1, prec),
		Nodes: degree,
	})
	for i := 0; i < len(p.Coeffs); i += 2 {
		p.Coeffs[i] = nil
	}
	p.IsOdd, p.IsEven = true, false
	return p
}

// sigmoidError returns the largest |0.5 + p(t) - sigmoid(R t)| on a fine
// grid of [-1, 1], evaluated with Clenshaw's recurrence in float64.
func sigmoidError(inputRange float64, p bignum.Polynomial) float64 {
	c := make([]float64, len(p.Coeffs))
	for i, v := range p.Coeffs {
		if v != nil {
			c[i], _ = v[0].Float64()
		}
	}
	const points = 8000
	worst := 0.0
	for i := 0; i <= points; i++ {
		t := -1 + 2*float64(i)/points
		exact := 1 / (1 + math.Exp(-inputRange*t))
		if e := math.Abs(0.5 + chebyshevEval(c, t) - exact); e > worst {
			worst = e
		}
	}
	return worst
}

func chebyshevEval(c []float64, t float64) float64 {
	var b1, b2 float64
	for k := len(c) - 1; k >= 1; k-- {
		b1, b2 = 2*t*b1-b2+c[k], b1
	}
	return t*b1 - b2 + c[0]
}

// chooseSigmoidDegree returns the smallest odd degree whose approximation
// error over [-inputRange, inputRange] is at most MaxSigmoidError.
func chooseSigmoidDegree(inputRange float64) (int, error) {
	var last float64
	for d := 3; d <= maxSigmoidDegree; d += 2 {
		last = sigmoidError(inputRange, sigmoidOdd(inputRange, d))
		if last <= MaxSigmoidError {
			return d, nil
		}
	}
	return 0, fmt.Errorf("%w: input_range %g is too wide: the best sigmoid approximation that fits the parameters (degree %d) is off by %.1e > %.0e; use input_range <= %g (standardize the scores more tightly)",
		ErrInvalidModel, inputRange, maxSigmoidDegree, last, MaxSigmoidError, MaxInputRange)
}

// validSigmoidDegree reports whether a degree read from a model header can
// be evaluated within the level budget.
func validSigmoidDegree(d int) bool {
	return d >= 3 && d <= maxSigmoidDegree && d%2 == 1
}
