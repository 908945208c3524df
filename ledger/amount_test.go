package ledger

import (
	"math"
	"strings"
	"testing"

	"github.com/veil-dp/veil/dp"
)

func TestAmountUnits(t *testing.T) {
	a, err := Spend(0.1, 1e-6)
	if err != nil || a.Eps != 100000 || a.Delta != 1e9 {
		t.Fatalf("Spend(0.1, 1e-6) = %+v, %v", a, err)
	}
	// Spending rounds up, totals round down: a ledger never promises more than declared.
	if s, _ := Spend(1.0000004, 0); s.Eps != 1000001 {
		t.Errorf("Spend rounds %d, want up to 1000001", s.Eps)
	}
	if s, _ := Total(1.0000004, 0); s.Eps != 1000000 {
		t.Errorf("Total rounds %d, want down to 1000000", s.Eps)
	}
	// Ten spends of 0.1 are exactly 1, as integers.
	var sum Amount
	for range 10 {
		sum = sum.Add(a)
	}
	if one, _ := Total(1, 1e-5); sum != one {
		t.Errorf("10 × 0.1 = %+v, want %+v", sum, one)
	}
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1), 1e9} {
		if _, err := Spend(bad, 0); err == nil {
			t.Errorf("Spend(%v) accepted", bad)
		}
	}
	if got := FormatEpsilon(1500000); got != "1.5" {
		t.Errorf("FormatEpsilon = %q", got)
	}
}

// TestSpendFloor: a job never spends less than one ledger unit, nor less epsilon than the
// noise library accepts. An epsilon that rounds to no unit at all (1e-13 was accepted and
// ran over the real data for nothing) is refused, and so is a positive delta below one unit.
func TestSpendFloor(t *testing.T) {
	for _, tc := range []struct{ eps, delta float64 }{
		{1e-13, 0}, {4e-7, 0}, {0, 0}, {0, 1e-6}, {math.SmallestNonzeroFloat64, 0},
		{0.1, 1e-16}, {0.1, 1e-21},
	} {
		if a, err := Spend(tc.eps, tc.delta); err == nil {
			t.Errorf("Spend(%g, %g) = %+v, want a refusal", tc.eps, tc.delta, a)
		} else if !strings.Contains(err.Error(), "at least") {
			t.Errorf("Spend(%g, %g): %v, want it to say the least a job may ask", tc.eps, tc.delta, err)
		}
	}
	for _, tc := range []struct {
		eps, delta float64
		want       Amount
	}{
		{MinEpsilon, 0, Amount{Eps: 1}}, {1e-6, 1e-15, Amount{Eps: 1, Delta: 1}}, {0.5, 0, Amount{Eps: 500000}},
	} {
		a, err := Spend(tc.eps, tc.delta)
		if err != nil || a != tc.want {
			t.Errorf("Spend(%g, %g) = %+v, %v; want %+v", tc.eps, tc.delta, a, err, tc.want)
		}
		if a.Epsilon() < dp.MinEpsilon {
			t.Errorf("Spend(%g) charges ε=%g, below the noise library's least %g", tc.eps, a.Epsilon(), dp.MinEpsilon)
		}
	}
	// Totals may be zero: a dataset or grant without a budget.
	if a, err := Total(0, 0); err != nil || !a.IsZero() {
		t.Errorf("Total(0, 0) = %+v, %v", a, err)
	}
}

// TestFormatDeltaAndShort: deltas print in plain decimal, exactly; a shortfall names the
// dimension that ran out.
func TestFormatDeltaAndShort(t *testing.T) {
	for units, want := range map[int64]string{0: "0", 100000000: "0.0000001", 1e9: "0.000001", 1: "0.000000000000001", 12345e6: "0.000012345"} {
		if got := FormatDelta(units); got != want {
			t.Errorf("FormatDelta(%d) = %q, want %q", units, got, want)
		}
	}
	have, _ := Total(1, 1e-7)
	for _, tc := range []struct {
		eps, delta float64
		want       string
	}{
		{0.5, 1e-8, ""},
		{2, 1e-8, "epsilon has run out (ε=1 left, ε=2 asked)"},
		{0.5, 1e-6, "delta has run out (δ=0.0000001 left, δ=0.000001 asked)"},
		{2, 1e-6, "epsilon has run out (ε=1 left, ε=2 asked) and delta has run out (δ=0.0000001 left, δ=0.000001 asked)"},
	} {
		want, _ := Spend(tc.eps, tc.delta)
		if got := Short(have, want); got != tc.want {
			t.Errorf("Short(%s, %s) = %q, want %q", have, want, got, tc.want)
		}
	}
}
