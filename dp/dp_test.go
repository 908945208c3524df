package dp

import (
	"math"
	"testing"
)

// laplaceCDF is the CDF of Laplace(0, b).
func laplaceCDF(x, b float64) float64 {
	if x < 0 {
		return 0.5 * math.Exp(x/b)
	}
	return 1 - 0.5*math.Exp(-x/b)
}

// TestCountNoiseDistribution checks, with a chi-square test, that the error of released
// counts follows the Laplace distribution of the configured scale (rounded to integers, as
// the library releases integer counts). A mechanism with the wrong scale, the wrong
// sensitivity or no noise fails it.
func TestCountNoiseDistribution(t *testing.T) {
	const draws = 20000
	const exact = 1000
	eps, l0, linf := 0.5, int64(2), int64(5) // b = 20
	b := float64(l0*linf) / eps
	edges := []float64{math.Inf(-1), -60, -40, -25, -15, -8, -3, 0, 3, 8, 15, 25, 40, 60, math.Inf(1)}
	counts := make([]int, len(edges)-1)
	for range draws {
		r, err := Count(exact, l0, linf, eps, 0, Laplace)
		if err != nil {
			t.Fatal(err)
		}
		e := r.Value - exact
		for i := 0; i < len(counts); i++ {
			// bins hold integers k with edges[i] <= k < edges[i+1]
			if e >= edges[i] && e < edges[i+1] {
				counts[i]++
				break
			}
		}
	}
	chi := 0.0
	for i, c := range counts {
		// P(k in [lo, hi)) for a Laplace rounded to the nearest integer: F(hi-0.5) - F(lo-0.5)
		p := laplaceCDF(edges[i+1]-0.5, b) - laplaceCDF(edges[i]-0.5, b)
		want := p * draws
		chi += (float64(c) - want) * (float64(c) - want) / want
	}
	// 13 degrees of freedom: the 0.999 quantile of chi-square is 34.5.
	if chi > 34.5 {
		t.Errorf("released count errors do not follow Laplace(b=%g): chi-square %.1f > 34.5 (bins %v)", b, chi, counts)
	}
	// The same test must reject a mechanism with half the scale.
	chiWrong := 0.0
	for i, c := range counts {
		p := laplaceCDF(edges[i+1]-0.5, b/2) - laplaceCDF(edges[i]-0.5, b/2)
		want := p * draws
		chiWrong += (float64(c) - want) * (float64(c) - want) / want
	}
	if chiWrong < 34.5 {
		t.Errorf("the test cannot tell b=%g from b=%g (chi-square %.1f)", b, b/2, chiWrong)
	}
}

// TestReleasedFloatsOnGrid: released sums lie on the library's granularity grid, as secure
// noise requires; a plain float64 Laplace sample would not.
func TestReleasedFloatsOnGrid(t *testing.T) {
	eps, l0, linf := 1.0, int64(1), 1e6
	g := Granularity(l0, linf, eps)
	for i := range 200 {
		r, err := Sum(123456.789+float64(i), l0, linf, eps, 0, Laplace)
		if err != nil {
			t.Fatal(err)
		}
		if q := r.Value / g; q != math.Trunc(q) {
			t.Fatalf("released %v is not a multiple of the granularity %v", r.Value, g)
		}
		if !(r.Lower < r.Value && r.Value < r.Upper) {
			t.Fatalf("interval [%v, %v] does not hold %v", r.Lower, r.Upper, r.Value)
		}
	}
	// A naive float sample is off the grid: the check above can fail.
	if q := (123456.789 + 0.3183098861837907*linf) / g; q == math.Trunc(q) {
		t.Fatalf("grid check cannot fail")
	}
}

// TestConfidenceIntervalCoverage: about 95% of released intervals hold the exact value.
func TestConfidenceIntervalCoverage(t *testing.T) {
	const draws = 4000
	hit := map[string]int{}
	for range draws {
		c, _ := Count(5000, 1, 1, 0.2, 0, Laplace)
		if c.Lower <= 5000 && 5000 <= c.Upper {
			hit["count"]++
		}
		s, _ := Sum(-1234.5, 3, 10, 0.3, 0, Laplace)
		if s.Lower <= -1234.5 && -1234.5 <= s.Upper {
			hit["sum"]++
		}
		g, _ := Sum(200, 1, 10, 1, 1e-6, Gaussian)
		if g.Lower <= 200 && 200 <= g.Upper {
			hit["gaussian sum"]++
		}
		// mean of 1000 values averaging 40 in [0, 100]: normalized sum = 1000 × (40 - 50)
		m, _ := Mean(1000, -10000, 1, 1, 0, 100, 0.5, 0, Laplace)
		if m.Lower <= 40 && 40 <= m.Upper {
			hit["mean"]++
		}
	}
	for k, n := range hit {
		rate := float64(n) / draws
		if rate < 0.93 || (k != "mean" && rate > 0.97) {
			t.Errorf("%s: interval coverage %.3f, want about 0.95 (at least for the mean)", k, rate)
		}
	}
	if len(hit) != 4 {
		t.Errorf("some intervals never covered: %v", hit)
	}
}

// TestSinglePersonPartition: a group that exists only because of one person is released no
// more often than the partition-selection delta allows.
func TestSinglePersonPartition(t *testing.T) {
	const trials = 40000
	const delta = 0.005
	kept := 0
	for range trials {
		ok, err := KeepPartition(1, 1, 1, delta)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			kept++
		}
	}
	// Expected at most delta × trials = 200; allow four standard deviations.
	if limit := delta*trials + 4*math.Sqrt(delta*trials); float64(kept) > limit {
		t.Errorf("a one-person group was kept %d times in %d, above %.0f", kept, trials, limit)
	}
	// And large groups are kept.
	if ok, _ := KeepPartition(10000, 1, 1, delta); !ok {
		t.Error("a group of 10000 persons was dropped")
	}
}

func TestQuantile(t *testing.T) {
	// 10000 units spread evenly over [0, 100): the median is about 50.
	leaves := map[int64]int64{}
	for i := range 10000 {
		v := float64(i) / 100
		leaves[int64(v/100*QuantileLeaves)]++
	}
	r, err := Quantile(leaves, 0.5, 1, 0, 100, 1, 0, Laplace)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(r.Value-50) > 2 {
		t.Errorf("median %v, want about 50", r.Value)
	}
	if _, err := Quantile(map[int64]int64{QuantileLeaves: 1}, 0.5, 1, 0, 100, 1, 0, Laplace); err == nil {
		t.Error("a leaf out of range was accepted")
	}
}

// TestQuantilesShareOneTree: several ranks from one tree are ordered and close to the truth
// on a large sample at a generous epsilon.
func TestQuantilesShareOneTree(t *testing.T) {
	var values []float64
	for i := range 20000 {
		values = append(values, float64(i%1000))
	}
	rs, err := Quantiles(values, []float64{0.1, 0.5, 0.9}, 0, 1000, 5, 0, Laplace)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{100, 500, 900} {
		if math.Abs(rs[i].Value-want) > 20 {
			t.Errorf("rank %d: %g, want about %g", i, rs[i].Value, want)
		}
	}
	if !(rs[0].Value <= rs[1].Value && rs[1].Value <= rs[2].Value) {
		t.Errorf("quantiles out of order: %v", rs)
	}
}
