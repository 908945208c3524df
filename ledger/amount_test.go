package ledger

import (
	"math"
	"testing"
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
