package dp

import (
	"math"
	"testing"
)

// TestHalfWidthMatchesRelease: the half-width a plan predicts is the half-width of the
// intervals the release then gives, for counts and sums, Laplace and Gaussian.
func TestHalfWidthMatchesRelease(t *testing.T) {
	for _, n := range []Noise{Laplace, Gaussian} {
		hw, err := HalfWidth(n, 2, 3, 0.5, 1e-6, Alpha, true)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Count(100000, 2, 3, 0.5, 1e-6, n)
		if err != nil {
			t.Fatal(err)
		}
		if got := (r.Upper - r.Lower) / 2; math.Abs(got-hw) > 1 {
			t.Errorf("%s count: released half-width %g, predicted %g", n, got, hw)
		}
		hw, err = HalfWidth(n, 1, 250, 0.25, 1e-6, Alpha, false)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Sum(1e6, 1, 250, 0.25, 1e-6, n)
		if err != nil {
			t.Fatal(err)
		}
		if got := (s.Upper - s.Lower) / 2; math.Abs(got-hw) > 1e-6*hw {
			t.Errorf("%s sum: released half-width %g, predicted %g", n, got, hw)
		}
	}
	// Laplace(b): P(|X| > t) = exp(-t/b), so the 95% half-width is b·ln 20.
	hw, _ := HalfWidth(Laplace, 1, 1000, 1, 0, Alpha, false)
	if want := 1000 * math.Log(20); math.Abs(hw-want) > 1e-6*want {
		t.Errorf("Laplace half-width %g, want %g", hw, want)
	}
	// A mean of n values: its interval is at most about W/n wide on each side.
	w, err := MeanHalfWidth(Laplace, 1, 1, 0, 100, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	const count = 5000
	m, err := Mean(count, 0, 1, 1, 0, 100, 1, 0, Laplace)
	if err != nil {
		t.Fatal(err)
	}
	if got := (m.Upper - m.Lower) / 2; got > 1.1*w/count || got < 0.5*w/count {
		t.Errorf("mean of %d values: half-width %g, predicted about %g", count, got, w/count)
	}
}

// TestSelectionSizes: groups of the predicted sizes are kept about as often as predicted,
// and the probability the sizes come from grows with the group.
func TestSelectionSizes(t *testing.T) {
	for _, l0 := range []int64{1, 5} {
		likely, sure, err := SelectionSizes(l0, 0.5, 1e-6)
		if err != nil {
			t.Fatal(err)
		}
		if !(1 < likely && likely < sure) {
			t.Fatalf("l0=%d: likely %d, almost surely %d", l0, likely, sure)
		}
		kept := func(n int64) float64 {
			const trials = 2000
			k := 0
			for range trials {
				ok, err := KeepPartition(n, l0, 0.5, 1e-6)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					k++
				}
			}
			return float64(k) / trials
		}
		if f := kept(likely); f < 0.45 {
			t.Errorf("l0=%d: a group of %d units was kept %.2f of the time, predicted at least 0.5", l0, likely, f)
		}
		if f := kept(max(likely-5, 1)); f > 0.5 {
			t.Errorf("l0=%d: a group of %d units was kept %.2f of the time, predicted under 0.5", l0, likely-5, f)
		}
		if f := kept(sure); f < 0.93 {
			t.Errorf("l0=%d: a group of %d units was kept %.2f of the time, predicted at least 0.95", l0, sure, f)
		}
	}
}
