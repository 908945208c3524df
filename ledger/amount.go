package ledger

import (
	"fmt"
	"math"
	"strconv"

	"github.com/veil-dp/veil/dp"
)

// Units of the ledger: one epsilon unit is 1e-6 epsilon, one delta unit is 1e-15 delta.
const (
	EpsilonPerUnit = 1e-6
	DeltaPerUnit   = 1e-15
	// MaxEpsilon and MaxDelta bound what any amount may hold, far below int64 overflow even
	// when many amounts are added.
	MaxEpsilon = 1000
	MaxDelta   = 0.01
)

// Amount is a privacy budget in integer units.
type Amount struct {
	Eps   int64 `json:"epsilon_units"`
	Delta int64 `json:"delta_units"`
}

func toUnits(x, per, max float64, name string, up bool) (int64, error) {
	if math.IsNaN(x) || x < 0 || x > max {
		return 0, fmt.Errorf("%w: %s must be between 0 and %s", dp.ErrAmount, name, strconv.FormatFloat(max, 'g', -1, 64))
	}
	u := x / per
	r := math.Round(u)
	// Decimal inputs such as 0.1 are not exact in binary; within a millionth of a unit they
	// are the unit they were meant to be.
	if math.Abs(u-r) <= math.Max(1e-6, 1e-12*math.Abs(u)) {
		return int64(r), nil
	}
	if up {
		return int64(math.Ceil(u)), nil
	}
	return int64(math.Floor(u)), nil
}

// MinEpsilon is the least epsilon a job may spend: one ledger unit, which is far above the
// least the noise library accepts (dp.MinEpsilon). Anything smaller used to round to no unit
// at all and run over the real data for free; the gate then refused it, and that refusal
// (and its timing) was an outcome that depends on the data.
const MinEpsilon = EpsilonPerUnit

// Spend converts an epsilon and delta a job asks for into units, rounding up: a job never
// spends less than the noise it gets is calibrated to. Every job spends at least one unit
// of epsilon (MinEpsilon) and, if it asks for a delta, at least one unit of delta; a smaller
// ask is refused, never rounded to nothing.
func Spend(epsilon, delta float64) (Amount, error) {
	a, err := amountOf(epsilon, delta, true)
	if err != nil {
		return Amount{}, err
	}
	// The ask itself is checked, not only its rounding: 4e-7 is refused, not charged as 1e-6.
	// Within a millionth of a unit, a decimal input is the unit it was meant to be.
	const near = 1 - 1e-6
	if epsilon < MinEpsilon*near || a.Eps < 1 || a.Epsilon() < dp.MinEpsilon {
		return Amount{}, fmt.Errorf("%w: epsilon must be at least %s (one ledger unit); ask for more, for example --epsilon 0.1",
			dp.ErrAmount, FormatEpsilon(1))
	}
	if delta > 0 && (delta < DeltaPerUnit*near || a.Delta < 1) {
		return Amount{}, fmt.Errorf("%w: a delta must be 0 or at least %s (one ledger unit); ask for more, for example --delta 1e-8",
			dp.ErrAmount, FormatDelta(1))
	}
	return a, nil
}

// Total converts a declared total (a dataset's or a grant's) into units, rounding down: a
// ledger never holds more than was declared.
func Total(epsilon, delta float64) (Amount, error) { return amountOf(epsilon, delta, false) }

func amountOf(epsilon, delta float64, up bool) (Amount, error) {
	e, err := toUnits(epsilon, EpsilonPerUnit, MaxEpsilon, "epsilon", up)
	if err != nil {
		return Amount{}, err
	}
	d, err := toUnits(delta, DeltaPerUnit, MaxDelta, "delta", up)
	if err != nil {
		return Amount{}, err
	}
	return Amount{Eps: e, Delta: d}, nil
}

// Epsilon is the amount's epsilon as a float, for calibrating noise and for display.
func (a Amount) Epsilon() float64 { return float64(a.Eps) * EpsilonPerUnit }

// DeltaValue is the amount's delta as a float.
func (a Amount) DeltaValue() float64 { return float64(a.Delta) * DeltaPerUnit }

// Add returns a + b.
func (a Amount) Add(b Amount) Amount { return Amount{Eps: a.Eps + b.Eps, Delta: a.Delta + b.Delta} }

// Sub returns a - b.
func (a Amount) Sub(b Amount) Amount { return Amount{Eps: a.Eps - b.Eps, Delta: a.Delta - b.Delta} }

// Covers reports whether a is at least b in both epsilon and delta.
func (a Amount) Covers(b Amount) bool { return a.Eps >= b.Eps && a.Delta >= b.Delta }

// IsZero reports whether the amount is nothing.
func (a Amount) IsZero() bool { return a.Eps == 0 && a.Delta == 0 }

// String prints the amount in epsilon and delta, exactly.
func (a Amount) String() string {
	return fmt.Sprintf("ε=%s δ=%s", FormatEpsilon(a.Eps), FormatDelta(a.Delta))
}

// FormatEpsilon prints epsilon units as a decimal epsilon, exactly.
func FormatEpsilon(units int64) string { return decimal(units, 6) }

// FormatDelta prints delta units as a decimal delta, exactly and in plain decimal
// (0.0000001, never 1e-07).
func FormatDelta(units int64) string { return decimal(units, 15) }

// Short says which dimension of have does not cover want, and by how much; "" when have
// covers want. A refusal names the dimension that ran out.
func Short(have, want Amount) string {
	eps := fmt.Sprintf("epsilon has run out (ε=%s left, ε=%s asked)", FormatEpsilon(have.Eps), FormatEpsilon(want.Eps))
	delta := fmt.Sprintf("delta has run out (δ=%s left, δ=%s asked)", FormatDelta(have.Delta), FormatDelta(want.Delta))
	switch {
	case have.Eps < want.Eps && have.Delta < want.Delta:
		return eps + " and " + delta
	case have.Eps < want.Eps:
		return eps
	case have.Delta < want.Delta:
		return delta
	}
	return ""
}

func decimal(units int64, places int) string {
	neg := units < 0
	if neg {
		units = -units
	}
	s := strconv.FormatInt(units, 10)
	for len(s) <= places {
		s = "0" + s
	}
	i := len(s) - places
	frac := s[i:]
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	out := s[:i]
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}
