package he

import (
	"math"
	"testing"
)

// TestSigmoidDegreeKeepsTheBound: for every input range a model may declare, the degree
// chooseSigmoidDegree picks keeps 0.5 + p(t) within MaxSigmoidError of the exact sigmoid on
// a grid ten times finer than the one it was chosen on (and at both ends), and it is the
// smallest such degree: two less is worse than the bound. A cheaper polynomial that loosens
// the documented bound fails here.
func TestSigmoidDegreeKeepsTheBound(t *testing.T) {
	for _, r := range []float64{0.25, 1, 2, 4, 6, 8, MaxInputRange} {
		d, err := chooseSigmoidDegree(r)
		if err != nil {
			t.Fatalf("input range %g: %v", r, err)
		}
		if got := fineSigmoidError(r, d); got > MaxSigmoidError {
			t.Errorf("input range %g, degree %d: error %.3g > MaxSigmoidError %.0e", r, d, got, MaxSigmoidError)
		}
		if d > 3 {
			if got := fineSigmoidError(r, d-2); got <= MaxSigmoidError {
				t.Errorf("input range %g: degree %d already keeps the bound (%.3g), %d was chosen", r, d-2, got, d)
			}
		}
	}
}

// fineSigmoidError is sigmoidError on 80,001 points of [-1, 1].
func fineSigmoidError(r float64, degree int) float64 {
	p := sigmoidOdd(r, degree)
	c := make([]float64, len(p.Coeffs))
	for i, v := range p.Coeffs {
		if v != nil {
			c[i], _ = v[0].Float64()
		}
	}
	const points = 80000
	worst := 0.0
	for i := 0; i <= points; i++ {
		x := -1 + 2*float64(i)/points
		worst = math.Max(worst, math.Abs(0.5+chebyshevEval(c, x)-1/(1+math.Exp(-r*x))))
	}
	return worst
}
