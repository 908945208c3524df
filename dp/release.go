package dp

import (
	"errors"
	"fmt"
	"math"

	"github.com/google/differential-privacy/go/v3/dpagg"
	"github.com/google/differential-privacy/go/v3/noise"
)

// ErrAmount is returned for an epsilon or delta that cannot be a privacy budget.
var ErrAmount = errors.New("invalid privacy budget")

// MinEpsilon is the least epsilon the noise library calibrates noise for: its Laplace and
// Gaussian mechanisms refuse anything smaller (checks.CheckEpsilonVeryStrict, 2^-50). A job
// that asks for less must be refused before it runs, not by the gate after it ran: a
// refusal after the run is an outcome that depends on the data.
const MinEpsilon = 0x1p-50

// Noise names a mechanism.
type Noise string

const (
	Laplace  Noise = "laplace"
	Gaussian Noise = "gaussian"
)

// Alpha is 1 - the confidence level of released intervals: 95%.
const Alpha = 0.05

// QuantileLeaves is the number of leaves of the library's default quantile tree (branching
// factor 16, height 4). The engine buckets values into exactly these leaves.
const QuantileLeaves = 65536

func (n Noise) lib() (noise.Noise, error) {
	switch n {
	case Laplace, "":
		return noise.Laplace(), nil
	case Gaussian:
		return noise.Gaussian(), nil
	}
	return nil, fmt.Errorf("unknown noise %q: use laplace or gaussian", n)
}

// Scale is the noise scale of a mechanism: the Laplace parameter b = l0·lInf/ε, or the
// Gaussian standard deviation.
func Scale(n Noise, l0 int64, lInf, epsilon, delta float64) float64 {
	if n == Gaussian {
		return noise.SigmaForGaussian(l0, lInf, epsilon, delta)
	}
	return float64(l0) * lInf / epsilon
}

// Granularity is the grid the library's Laplace mechanism puts its outputs on: the smallest
// power of two at least b / 2^40.
func Granularity(l0 int64, lInf, epsilon float64) float64 {
	return math.Exp2(math.Ceil(math.Log2(float64(l0) * lInf / epsilon / math.Exp2(40))))
}

// Released is one differentially private number and how it was made.
type Released struct {
	Value     float64 `json:"value"`
	Lower     float64 `json:"ci_lower"` // 95% confidence interval of the exact value
	Upper     float64 `json:"ci_upper"`
	HasCI     bool    `json:"has_ci"`
	Mechanism string  `json:"mechanism"`
	Scale     float64 `json:"scale"`
	Epsilon   float64 `json:"epsilon"`
	Delta     float64 `json:"delta"`
}

// Count releases an integer count. l0 is the number of groups a unit may change, lInf how
// much it may change each. Negative results are reported as 0 (post-processing).
func Count(exact, l0, lInf int64, epsilon, delta float64, n Noise) (Released, error) {
	nz, err := n.lib()
	if err != nil {
		return Released{}, err
	}
	if n != Gaussian {
		delta = 0
	}
	v, err := nz.AddNoiseInt64(exact, l0, lInf, epsilon, delta)
	if err != nil {
		return Released{}, fmt.Errorf("dp count: %w", err)
	}
	ci, err := nz.ComputeConfidenceIntervalInt64(v, l0, lInf, epsilon, delta, Alpha)
	if err != nil {
		return Released{}, fmt.Errorf("dp count: %w", err)
	}
	r := Released{Value: float64(max(v, 0)), Lower: math.Max(ci.LowerBound, 0), Upper: math.Max(ci.UpperBound, 0), HasCI: true,
		Mechanism: string(orLaplace(n)), Scale: Scale(n, l0, float64(lInf), epsilon, delta), Epsilon: epsilon, Delta: delta}
	return r, nil
}

// Sum releases a sum whose per-unit, per-group contribution is at most lInf in absolute
// value.
func Sum(exact float64, l0 int64, lInf, epsilon, delta float64, n Noise) (Released, error) {
	nz, err := n.lib()
	if err != nil {
		return Released{}, err
	}
	if n != Gaussian {
		delta = 0
	}
	if math.IsNaN(exact) || math.IsInf(exact, 0) {
		return Released{}, errors.New("dp sum: the bounded sum is not finite")
	}
	v, err := nz.AddNoiseFloat64(exact, l0, lInf, epsilon, delta)
	if err != nil {
		return Released{}, fmt.Errorf("dp sum: %w", err)
	}
	ci, err := nz.ComputeConfidenceIntervalFloat64(v, l0, lInf, epsilon, delta, Alpha)
	if err != nil {
		return Released{}, fmt.Errorf("dp sum: %w", err)
	}
	return Released{Value: v, Lower: ci.LowerBound, Upper: ci.UpperBound, HasCI: true,
		Mechanism: string(orLaplace(n)), Scale: Scale(n, l0, lInf, epsilon, delta), Epsilon: epsilon, Delta: delta}, nil
}

// Mean releases a bounded mean the way the library's BoundedMean does: a noisy count of
// values and a noisy sum of values centred on the middle of [lower, upper], each with half
// of epsilon (and delta), combined and clamped to the bounds. count and normSum are the
// exact, contribution-bounded count (at most maxRows per unit and group) and the sum of
// (value - midpoint) over the same values. The interval combines the two components'
// intervals, each at confidence 1-Alpha/2, so that it holds with at least 1-Alpha.
func Mean(count int64, normSum float64, l0, maxRows int64, lower, upper, epsilon, delta float64, n Noise) (Released, error) {
	nz, err := n.lib()
	if err != nil {
		return Released{}, err
	}
	if !(lower < upper) {
		return Released{}, errors.New("dp mean: lower bound must be below upper bound")
	}
	if n != Gaussian {
		delta = 0
	}
	e2, d2 := epsilon/2, delta/2
	mid, half := lower+(upper-lower)/2, (upper-lower)/2
	nc, err := nz.AddNoiseInt64(count, l0, maxRows, e2, d2)
	if err != nil {
		return Released{}, fmt.Errorf("dp mean: %w", err)
	}
	ns, err := nz.AddNoiseFloat64(normSum, l0, float64(maxRows)*half, e2, d2)
	if err != nil {
		return Released{}, fmt.Errorf("dp mean: %w", err)
	}
	cci, err := nz.ComputeConfidenceIntervalInt64(nc, l0, maxRows, e2, d2, Alpha/2)
	if err != nil {
		return Released{}, fmt.Errorf("dp mean: %w", err)
	}
	sci, err := nz.ComputeConfidenceIntervalFloat64(ns, l0, float64(maxRows)*half, e2, d2, Alpha/2)
	if err != nil {
		return Released{}, fmt.Errorf("dp mean: %w", err)
	}
	clamp := func(x float64) float64 { return math.Min(math.Max(x, lower), upper) }
	v := clamp(mid + ns/math.Max(float64(nc), 1))
	// The exact mean is mid + s/c with s and c inside their intervals: its extremes are at
	// the corners.
	lo, hi := upper, lower
	for _, c := range []float64{math.Max(cci.LowerBound, 1), math.Max(cci.UpperBound, 1)} {
		for _, s := range []float64{sci.LowerBound, sci.UpperBound} {
			m := clamp(mid + s/c)
			lo, hi = math.Min(lo, m), math.Max(hi, m)
		}
	}
	return Released{Value: v, Lower: lo, Upper: hi, HasCI: true, Mechanism: string(orLaplace(n)),
		Scale: Scale(n, l0, float64(maxRows)*half, e2, d2), Epsilon: epsilon, Delta: delta}, nil
}

// Quantiles releases several quantiles of one set of values from one noisy quantile tree:
// the ranks share the tree, so together they cost epsilon once. values holds one value per
// unit (l0 = 1), each clamped by the library to [lower, upper].
func Quantiles(values []float64, ranks []float64, lower, upper, epsilon, delta float64, n Noise) ([]Released, error) {
	nz, err := n.lib()
	if err != nil {
		return nil, err
	}
	if n != Gaussian {
		delta = 0
	}
	bq, err := dpagg.NewBoundedQuantiles(&dpagg.BoundedQuantilesOptions{Epsilon: epsilon, Delta: delta,
		MaxPartitionsContributed: 1, MaxContributionsPerPartition: 1, Lower: lower, Upper: upper, Noise: nz})
	if err != nil {
		return nil, fmt.Errorf("dp quantiles: %w", err)
	}
	for _, v := range values {
		if err := bq.Add(v); err != nil {
			return nil, fmt.Errorf("dp quantiles: %w", err)
		}
	}
	var out []Released
	for _, r := range ranks {
		v, err := bq.Result(r)
		if err != nil {
			return nil, fmt.Errorf("dp quantiles: %w", err)
		}
		out = append(out, Released{Value: v, Mechanism: string(orLaplace(n)) + " quantile tree", Scale: Scale(n, 4, 1, epsilon, delta), Epsilon: epsilon, Delta: delta})
	}
	return out, nil
}

// Quantile releases a quantile (rank in [0, 1]) with the library's quantile tree. leaves
// holds, for each leaf index in [0, QuantileLeaves) of [lower, upper], how many units put
// their (one) value of the group there; each unit contributes one value to each of at most
// l0 groups. The tree gives no confidence interval.
func Quantile(leaves map[int64]int64, rank float64, l0 int64, lower, upper, epsilon, delta float64, n Noise) (Released, error) {
	nz, err := n.lib()
	if err != nil {
		return Released{}, err
	}
	if n != Gaussian {
		delta = 0
	}
	bq, err := dpagg.NewBoundedQuantiles(&dpagg.BoundedQuantilesOptions{Epsilon: epsilon, Delta: delta,
		MaxPartitionsContributed: l0, MaxContributionsPerPartition: 1, Lower: lower, Upper: upper, Noise: nz})
	if err != nil {
		return Released{}, fmt.Errorf("dp quantile: %w", err)
	}
	width := (upper - lower) / QuantileLeaves
	for leaf, c := range leaves {
		if leaf < 0 || leaf >= QuantileLeaves || c < 0 {
			return Released{}, errors.New("dp quantile: a histogram leaf is out of range")
		}
		v := lower + (float64(leaf)+0.5)*width // the middle of the leaf lands in the leaf
		for range c {
			if err := bq.Add(v); err != nil {
				return Released{}, fmt.Errorf("dp quantile: %w", err)
			}
		}
	}
	v, err := bq.Result(rank)
	if err != nil {
		return Released{}, fmt.Errorf("dp quantile: %w", err)
	}
	// Each of the tree's 4 levels takes noise for a unit changing l0 groups, one count each.
	return Released{Value: v, Mechanism: string(orLaplace(n)) + " quantile tree", Scale: Scale(n, l0*4, 1, epsilon, delta),
		Epsilon: epsilon, Delta: delta}, nil
}

// KeepPartition decides with the library's pre-aggregated partition selection whether a
// group with the given number of distinct units may appear at all. Each unit is in at most
// l0 groups.
func KeepPartition(units, l0 int64, epsilon, delta float64) (bool, error) {
	s, err := dpagg.NewPreAggSelectPartition(&dpagg.PreAggSelectPartitionOptions{Epsilon: epsilon, Delta: delta, MaxPartitionsContributed: l0})
	if err != nil {
		return false, fmt.Errorf("dp partition selection: %w", err)
	}
	if err := s.IncrementBy(units); err != nil {
		return false, err
	}
	return s.ShouldKeepPartition()
}

func orLaplace(n Noise) Noise {
	if n == "" {
		return Laplace
	}
	return n
}
