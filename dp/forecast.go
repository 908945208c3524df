package dp

import (
	"fmt"
	"math"

	"github.com/google/differential-privacy/go/v3/dpagg"
	"github.com/google/differential-privacy/go/v3/noise"
)

// The functions here say, before anything runs, how noisy a release will be. They depend on
// the mechanism's parameters only, never on data: a plan made with them spends nothing.

// HalfWidth is the half-width of the confidence interval (at confidence 1-alpha) that Count
// (integer true) or Sum releases with these parameters, computed by the library's own
// interval functions around 0, as the release computes it around the noisy value.
func HalfWidth(n Noise, l0 int64, lInf, epsilon, delta, alpha float64, integer bool) (float64, error) {
	nz, err := n.lib()
	if err != nil {
		return 0, err
	}
	if n != Gaussian {
		delta = 0
	}
	var ci noise.ConfidenceInterval
	if integer {
		ci, err = nz.ComputeConfidenceIntervalInt64(0, l0, int64(lInf), epsilon, delta, alpha)
	} else {
		ci, err = nz.ComputeConfidenceIntervalFloat64(0, l0, lInf, epsilon, delta, alpha)
	}
	if err != nil {
		return 0, fmt.Errorf("dp interval: %w", err)
	}
	return (ci.UpperBound - ci.LowerBound) / 2, nil
}

// MeanHalfWidth is, for Mean with these parameters, W such that the 95% interval of a group
// with n values (n large against the count's noise) has a half-width of at most about W/n:
// the sum component's half-width plus half the bounds' width times the count component's,
// each at confidence 1-Alpha/2 as Mean combines them. The interval is clipped to the
// bounds, so it is never wider than they are.
func MeanHalfWidth(n Noise, l0, maxRows int64, lower, upper, epsilon, delta float64) (float64, error) {
	if n != Gaussian {
		delta = 0
	}
	half := (upper - lower) / 2
	s, err := HalfWidth(n, l0, float64(maxRows)*half, epsilon/2, delta/2, Alpha/2, false)
	if err != nil {
		return 0, err
	}
	c, err := HalfWidth(n, l0, float64(maxRows), epsilon/2, delta/2, Alpha/2, true)
	if err != nil {
		return 0, err
	}
	return s + half*c, nil
}

// SelectionSizes are the numbers of distinct privacy units at which KeepPartition keeps a
// group with probability at least one half (likely) and at least 1-Alpha (almost surely),
// for units in at most l0 groups. A group of fewer units than likely is more often dropped
// than released.
func SelectionSizes(l0 int64, epsilon, delta float64) (likely, almostSurely int64, err error) {
	if _, err := dpagg.NewPreAggSelectPartition(&dpagg.PreAggSelectPartitionOptions{Epsilon: epsilon, Delta: delta, MaxPartitionsContributed: l0}); err != nil {
		return 0, 0, fmt.Errorf("dp partition selection: %w", err)
	}
	if l0 > 3 {
		// The library thresholds a Gaussian count (epsilon, delta/2) at its threshold for
		// delta/2: kept when the count plus noise reaches the threshold rounded up.
		t, err := noise.Gaussian().Threshold(l0, 1, epsilon, delta/2, delta/2)
		if err != nil {
			return 0, 0, fmt.Errorf("dp partition selection: %w", err)
		}
		sigma := noise.SigmaForGaussian(l0, 1, epsilon, delta/2)
		c := math.Ceil(t)
		return int64(c), int64(math.Ceil(c + 1.6448536269514722*sigma)), nil
	}
	for n := int64(1); n < 1<<40; n++ {
		p, err := keepProbability(n, l0, epsilon, delta)
		if err != nil {
			return 0, 0, err
		}
		if likely == 0 && p >= 0.5 {
			likely = n
		}
		if p >= 1-Alpha {
			return likely, n, nil
		}
	}
	return 0, 0, fmt.Errorf("dp partition selection: no group size is kept with these parameters")
}

// keepProbability is the probability that the library's pre-aggregated partition selection
// keeps a group of n units (l0 <= 3). It is the library's keepPartitionProbability
// (dpagg/select_partition.go, Apache 2.0; Theorem 1 of "Differentially private partition
// selection", Desfontaines, Voss, Gipson, Mandayam), which is not exported.
func keepProbability(n, l0 int64, epsilon, delta float64) (float64, error) {
	if n <= 0 {
		return 0, nil
	}
	pe, pd := epsilon/float64(l0), delta/float64(l0)
	nCr := int64(1 + math.Floor((1/pe)*math.Log((1+math.Exp(-pe)*(2*pd-1))/(pd*(1+math.Exp(-pe))))))
	// sumExp is exp(lo·ε) + ... + exp((lo+k-1)·ε).
	sumExp := func(lo, k int64) float64 {
		if lo >= 1 {
			return math.Exp(float64(lo-1)*pe) * (math.Exp(float64(k)*pe) - 1) / (1 - math.Exp(-pe))
		}
		return (math.Exp(float64(k+lo-1)*pe) - math.Exp(float64(lo-1)*pe)) / (1 - math.Exp(-pe))
	}
	if n <= nCr {
		return pd * sumExp(0, n), nil
	}
	atCr := pd * sumExp(0, nCr)
	m := n - nCr
	return math.Min(1+math.Exp(-float64(m)*pe)*(atCr-1)+sumExp(-m, m)*pd, 1), nil
}
