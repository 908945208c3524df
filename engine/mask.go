// Masking (脱敏) of values by a column's catalog mask rule, for Veil's development twin and for
// row-level previews. A catalog column's `mask` field (keep:6,4, name, hmac, band:1000, month,
// grid:0.01, suppress, none) names the rule; ParseMaskRule reads it, MaskRule.Apply masks one
// value and MaskArray masks a whole Arrow column.
//
// Masking is applied by Veil only, never by hand, so it is total and deterministic: every
// input gives a masked value, NULL, or an error, and the same input under the same key always
// gives the same output. It must never return an unmasked identifier, never log a value, and
// never put a value (masked or not) in an error message: errors name the rule, the expected
// form, and at most a row number.
//
// What each rule does (NULL stays NULL under every rule):
//
//   - keep:P,S keeps the first P and the last S runes (Unicode code points, not bytes, not
//     grapheme clusters) and replaces every other rune by '*'; the output has as many runes as
//     the input, nothing is trimmed. A value is shown in part only when at least one rune and
//     at least a third of its runes are masked; otherwise (at most P+S runes, or a value of the
//     wrong length that would be shown almost whole) every rune is masked. So keep:6,4 gives
//     110101********1234 for an 18-rune resident ID and *********** for an 11-rune one, and
//     keep:3,4 gives 138****5678. The empty string stays empty. Invalid UTF-8 bytes count as one
//     rune each and are written as U+FFFD if kept, so the output is always valid UTF-8.
//   - name keeps the first rune (the surname of a Chinese name, the initial of a Latin one) and
//     masks the rest: 张三 → 张*, 欧阳娜娜 → 欧*** (compound surnames are not recognised), a
//     one-rune name → *. It is keep:1,0.
//   - hmac replaces the value by a pseudonym for join keys: the lower-case hex of the first 16
//     bytes of HMAC-SHA256(key, canonical text), 32 characters. An empty key is an error.
//     The canonical text of a string is its exact bytes; of an integer, float or decimal it is
//     its shortest plain decimal text (no exponent, no trailing zeros, "-" only when negative,
//     negative zero is "0"); of a date "2006-01-02"; of a timestamp RFC 3339 in UTC with
//     nanoseconds as needed. So the integer 42, the float 42.0, the decimal 42.00 and the string
//     "42" share a pseudonym, but the strings "042", " 42" and "42.0" do not.
//   - band:W (W a whole number in 1..999999) generalises a number to the band of width W that
//     holds it, counted from 0 (floor division, so negative numbers work): an integer gives
//     "lo-hi" with both ends included (37 → "35-39", -1 → "-5--1"); a float or decimal gives
//     "lo-hi" for [lo, hi) (37.5 → "35-40"). A string is an integer if it is one ("37"), a
//     decimal if it is one ("37.5", "1e9"), and otherwise an error. Arithmetic is exact.
//     NaN, infinities, dates and other values that are not numbers are errors.
//   - month keeps the year and month, "2024-03", of a date or timestamp (timestamps in UTC) or
//     of a string written 2024-03-17, 2024/03/17, 2024-03-17T10:00:00Z (RFC 3339, the month as
//     written, not converted to UTC), 2024-03-17T10:00:00 or 2024-03-17 10:00:00[+08]. A string
//     that is not a valid date (2024-02-30, garbage, "") gives NULL, never the input. Numbers
//     are errors.
//   - grid:D (D a positive decimal written with digits and at most one dot, e.g. 0.01) rounds a
//     coordinate down to its grid cell's lower corner, floor(v/D)*D, written with as many
//     decimals as D has: 39.9042 → "39.90", -33.8688 → "-33.87" under grid:0.01. Floats are
//     taken at their shortest decimal text, so 0.29 stays in cell 0.29. Non-numbers are errors.
//   - suppress gives NULL for every value.
//   - none returns the value unchanged. It is an explicit rule, and the empty rule is an error:
//     only the caller knows from the catalog whether a column is not personal, and it must say
//     none for such a column itself.
//
// MaskArray produces a utf8 (arrow.BinaryTypes.String) array for every rule but none, whose
// result is the input array itself (a new reference to the same data, which the caller
// releases).
package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// maskKind is the rule a MaskRule applies; the zero value is no rule and masks nothing.
type maskKind int

const (
	maskInvalid maskKind = iota
	maskNone
	maskKeep
	maskName
	maskHMAC
	maskBand
	maskMonth
	maskGrid
	maskSuppress
)

// MaskRule is a parsed mask rule. Its zero value is not a rule: Apply and MaskArray refuse it.
type MaskRule struct {
	kind       maskKind
	text       string // the rule as the catalog writes it
	keepFirst  int    // keep:P,S and name
	keepLast   int
	width      int64 // band:W
	gridUnits  int64 // grid:D is gridUnits / 10^gridDigits
	gridDigits int
}

// String returns the rule as the catalog writes it.
func (r MaskRule) String() string {
	if r.kind == maskInvalid {
		return "(no rule)"
	}
	return r.text
}

const maskRules = "none, name, hmac, month, suppress, keep:P,S, band:W or grid:D"

var (
	maskKeepRE = regexp.MustCompile(`^keep:(\d{1,2}),(\d{1,2})$`)
	maskBandRE = regexp.MustCompile(`^band:(\d{1,6})$`)
	maskGridRE = regexp.MustCompile(`^grid:(\d+)(?:\.(\d+))?$`)
)

// ParseMaskRule reads a catalog mask rule. Its errors say what is wrong and give a valid example.
func ParseMaskRule(rule string) (MaskRule, error) {
	r := MaskRule{text: rule}
	bad := func(format string, a ...any) (MaskRule, error) {
		return MaskRule{}, fmt.Errorf("mask rule %q: %s", clip(rule), fmt.Sprintf(format, a...))
	}
	switch {
	case rule == "":
		return MaskRule{}, errors.New("mask rule is empty: name one, e.g. keep:3,4, or none for a column the catalog marks as not personal")
	case rule == "none":
		r.kind = maskNone
	case rule == "name":
		r.kind, r.keepFirst = maskName, 1
	case rule == "hmac":
		r.kind = maskHMAC
	case rule == "month":
		r.kind = maskMonth
	case rule == "suppress":
		r.kind = maskSuppress
	case strings.HasPrefix(rule, "keep:"):
		m := maskKeepRE.FindStringSubmatch(rule)
		if m == nil {
			return bad("keep needs two whole numbers from 0 to 99, the runes kept at the start and at the end, e.g. keep:3,4")
		}
		r.kind = maskKeep
		r.keepFirst, _ = strconv.Atoi(m[1])
		r.keepLast, _ = strconv.Atoi(m[2])
	case strings.HasPrefix(rule, "band:"):
		m := maskBandRE.FindStringSubmatch(rule)
		if m == nil {
			return bad("band needs a width that is a whole number from 1 to 999999, e.g. band:5")
		}
		r.width, _ = strconv.ParseInt(m[1], 10, 64)
		if r.width < 1 {
			return bad("band width must be at least 1, e.g. band:5")
		}
		r.kind = maskBand
	case strings.HasPrefix(rule, "grid:"):
		m := maskGridRE.FindStringSubmatch(rule)
		if m == nil || len(rule) > len("grid:")+10 {
			return bad("grid needs a cell size in degrees written with digits and at most one dot (at most 10 characters), e.g. grid:0.01")
		}
		r.gridUnits, _ = strconv.ParseInt(m[1]+m[2], 10, 64)
		r.gridDigits = len(m[2])
		if r.gridUnits < 1 {
			return bad("grid cell size must be greater than 0, e.g. grid:0.01")
		}
		r.kind = maskGrid
	default:
		return bad("unknown rule: want one of %s, e.g. keep:3,4", maskRules)
	}
	return r, nil
}

// clip shortens a rule quoted in an error.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Apply masks one value given as text and returns the masked value and whether it is NULL.
// A NULL input (null true) gives NULL under every rule. The key is used by hmac only.
func (r MaskRule) Apply(key []byte, v string, null bool) (string, bool, error) {
	if err := r.ready(key); err != nil {
		return "", false, err
	}
	if null {
		return "", true, nil
	}
	return r.apply(key, maskCell{text: v, class: classText})
}

// ready checks that the rule can be applied with this key.
func (r MaskRule) ready(key []byte) error {
	switch {
	case r.kind == maskInvalid:
		return errors.New("mask: no rule: read the catalog's rule with ParseMaskRule")
	case r.kind == maskHMAC && len(key) == 0:
		return errors.New("mask hmac: masking with hmac needs a key")
	}
	return nil
}

// cellClass is what a value is, as far as masking is concerned.
type cellClass int

const (
	classText     cellClass = iota // a string: its meaning is parsed by the rule
	classInteger                   // an integer; text is its decimal
	classFraction                  // a float or decimal; text is its shortest plain decimal
	classTime                      // a date or timestamp; text is its canonical form, t its value
)

// maskCell is one non-NULL value: its canonical text and, for dates and timestamps, its time.
type maskCell struct {
	text  string
	class cellClass
	t     time.Time
}

// apply masks one non-NULL value. Its errors never contain the value.
func (r MaskRule) apply(key []byte, c maskCell) (string, bool, error) {
	switch r.kind {
	case maskNone:
		return c.text, false, nil
	case maskSuppress:
		return "", true, nil
	case maskKeep, maskName:
		return keepRunes(c.text, r.keepFirst, r.keepLast), false, nil
	case maskHMAC:
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(c.text))
		return hex.EncodeToString(mac.Sum(nil)[:16]), false, nil
	case maskBand:
		v, integer, ok := cellNumber(c)
		if !ok {
			return "", false, fmt.Errorf("mask %s: the value is not a finite number: band needs an integer, float or decimal (e.g. 37 or 37.5)", r.text)
		}
		w := big.NewInt(r.width)
		lo := floorDiv(v, new(big.Rat).SetInt(w))
		lo.Mul(lo, w)
		hi := new(big.Int).Add(lo, w)
		if integer {
			hi.Sub(hi, big.NewInt(1))
		}
		return lo.String() + "-" + hi.String(), false, nil
	case maskGrid:
		v, _, ok := cellNumber(c)
		if !ok {
			return "", false, fmt.Errorf("mask %s: the value is not a finite number: grid needs a coordinate (e.g. 39.9042)", r.text)
		}
		d := new(big.Rat).SetFrac(big.NewInt(r.gridUnits), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(r.gridDigits)), nil))
		lo := new(big.Rat).SetInt(floorDiv(v, d))
		return lo.Mul(lo, d).FloatString(r.gridDigits), false, nil
	case maskMonth:
		switch c.class {
		case classTime:
			return fmt.Sprintf("%04d-%02d", c.t.Year(), int(c.t.Month())), false, nil
		case classText:
			t, ok := parseMaskDate(c.text)
			if !ok {
				return "", true, nil
			}
			return fmt.Sprintf("%04d-%02d", t.Year(), int(t.Month())), false, nil
		}
		return "", false, fmt.Errorf("mask %s: the value is a number: month needs a date, a timestamp or a date string (e.g. 2024-03-17)", r.text)
	}
	return "", false, errors.New("mask: no rule: read the catalog's rule with ParseMaskRule")
}

// keepRunes keeps the first p and last s runes of v and masks the others with '*', or masks
// every rune when fewer than one rune or than a third of the runes would be masked.
func keepRunes(v string, p, s int) string {
	n := utf8.RuneCountInString(v)
	m := n - p - s
	if m < 1 || 3*m < n {
		return strings.Repeat("*", n)
	}
	var b strings.Builder
	b.Grow(len(v))
	i := 0
	for _, c := range v { // an invalid byte is one rune, utf8.RuneError, as RuneCountInString counts it
		if i < p || i >= n-s {
			b.WriteRune(c)
		} else {
			b.WriteByte('*')
		}
		i++
	}
	return b.String()
}

var (
	maskIntRE     = regexp.MustCompile(`^[+-]?\d+$`)
	maskDecimalRE = regexp.MustCompile(`^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?$`)
)

// cellNumber reads a value as an exact number, and says whether it is an integer (a value of
// an integer column, or a string written as one).
func cellNumber(c maskCell) (*big.Rat, bool, bool) {
	switch c.class {
	case classInteger:
		v, ok := new(big.Rat).SetString(c.text)
		return v, true, ok
	case classFraction:
		v, ok := new(big.Rat).SetString(c.text)
		return v, false, ok
	case classText:
		if maskIntRE.MatchString(c.text) {
			v, ok := new(big.Rat).SetString(c.text)
			return v, true, ok
		}
		if maskDecimalRE.MatchString(c.text) {
			if f, err := strconv.ParseFloat(c.text, 64); err != nil || math.IsInf(f, 0) {
				return nil, false, false
			}
			v, ok := new(big.Rat).SetString(c.text)
			return v, false, ok
		}
	}
	return nil, false, false
}

// floorDiv is floor(v/d) for d > 0.
func floorDiv(v, d *big.Rat) *big.Int {
	q := new(big.Rat).Quo(v, d)
	return new(big.Int).Div(q.Num(), q.Denom()) // Euclidean division by a positive denominator is floor
}

// maskDateLayouts are the date strings month understands.
var maskDateLayouts = []string{
	"2006-01-02",
	"2006/01/02",
	time.RFC3339,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05Z07",
}

func parseMaskDate(s string) (time.Time, bool) {
	for _, layout := range maskDateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// MaskArray masks a whole column: strings (utf8, large utf8, utf8 view), signed and unsigned
// integers, floats, decimal128, date32, date64, timestamps, and dictionaries of these. It
// returns a new utf8 array of the same length with NULL where the input is NULL, except under
// none, which returns the input itself with a new reference. suppress accepts any type. The
// caller releases the result. Errors name the rule and the row, never the value.
func MaskArray(r MaskRule, key []byte, a arrow.Array) (arrow.Array, error) {
	if err := r.ready(key); err != nil {
		return nil, err
	}
	if r.kind == maskNone {
		return array.NewSlice(a, 0, int64(a.Len())), nil
	}
	b := array.NewStringBuilder(memory.DefaultAllocator)
	defer b.Release()
	b.Reserve(a.Len())
	if r.kind == maskSuppress {
		b.AppendNulls(a.Len())
		return b.NewArray(), nil
	}
	get, err := cellReader(a)
	if err != nil {
		return nil, fmt.Errorf("mask %s: %w", r.text, err)
	}
	for i := 0; i < a.Len(); i++ {
		c, null := get(i)
		if null {
			b.AppendNull()
			continue
		}
		s, null, err := r.apply(key, c)
		if err != nil {
			return nil, fmt.Errorf("%w (row %d)", err, i)
		}
		if null {
			b.AppendNull()
		} else {
			b.Append(s)
		}
	}
	return b.NewArray(), nil
}

// cellReader returns a function reading row i of a as a cell, or reporting it NULL.
func cellReader(a arrow.Array) (func(int) (maskCell, bool), error) {
	text := func(f func(int) string) func(int) (maskCell, bool) {
		return func(i int) (maskCell, bool) {
			if a.IsNull(i) {
				return maskCell{}, true
			}
			return maskCell{text: f(i), class: classText}, false
		}
	}
	integer := func(f func(int) string) func(int) (maskCell, bool) {
		return func(i int) (maskCell, bool) {
			if a.IsNull(i) {
				return maskCell{}, true
			}
			return maskCell{text: f(i), class: classInteger}, false
		}
	}
	fraction := func(f func(int) string) func(int) (maskCell, bool) {
		return func(i int) (maskCell, bool) {
			if a.IsNull(i) {
				return maskCell{}, true
			}
			return maskCell{text: f(i), class: classFraction}, false
		}
	}
	date := func(f func(int) time.Time) func(int) (maskCell, bool) {
		return func(i int) (maskCell, bool) {
			if a.IsNull(i) {
				return maskCell{}, true
			}
			t := f(i)
			return maskCell{text: t.Format("2006-01-02"), class: classTime, t: t}, false
		}
	}
	switch x := a.(type) {
	case *array.String:
		return text(x.Value), nil
	case *array.LargeString:
		return text(x.Value), nil
	case *array.StringView:
		return text(x.Value), nil
	case *array.Int8:
		return integer(func(i int) string { return strconv.FormatInt(int64(x.Value(i)), 10) }), nil
	case *array.Int16:
		return integer(func(i int) string { return strconv.FormatInt(int64(x.Value(i)), 10) }), nil
	case *array.Int32:
		return integer(func(i int) string { return strconv.FormatInt(int64(x.Value(i)), 10) }), nil
	case *array.Int64:
		return integer(func(i int) string { return strconv.FormatInt(x.Value(i), 10) }), nil
	case *array.Uint8:
		return integer(func(i int) string { return strconv.FormatUint(uint64(x.Value(i)), 10) }), nil
	case *array.Uint16:
		return integer(func(i int) string { return strconv.FormatUint(uint64(x.Value(i)), 10) }), nil
	case *array.Uint32:
		return integer(func(i int) string { return strconv.FormatUint(uint64(x.Value(i)), 10) }), nil
	case *array.Uint64:
		return integer(func(i int) string { return strconv.FormatUint(x.Value(i), 10) }), nil
	case *array.Float32:
		return fraction(func(i int) string { return floatText(float64(x.Value(i)), 32) }), nil
	case *array.Float64:
		return fraction(func(i int) string { return floatText(x.Value(i), 64) }), nil
	case *array.Decimal128:
		scale := x.DataType().(*arrow.Decimal128Type).Scale
		return fraction(func(i int) string { return decimalText(x.Value(i).BigInt(), scale) }), nil
	case *array.Date32:
		return date(func(i int) time.Time { return x.Value(i).ToTime() }), nil
	case *array.Date64:
		return date(func(i int) time.Time { return x.Value(i).ToTime() }), nil
	case *array.Timestamp:
		unit := x.DataType().(*arrow.TimestampType).Unit
		return func(i int) (maskCell, bool) {
			if a.IsNull(i) {
				return maskCell{}, true
			}
			t := x.Value(i).ToTime(unit).UTC()
			return maskCell{text: t.Format(time.RFC3339Nano), class: classTime, t: t}, false
		}, nil
	case *array.Dictionary:
		values, err := cellReader(x.Dictionary())
		if err != nil {
			return nil, err
		}
		return func(i int) (maskCell, bool) {
			if x.IsNull(i) {
				return maskCell{}, true
			}
			return values(x.GetValueIndex(i))
		}, nil
	}
	return nil, fmt.Errorf("columns of type %s cannot be masked", a.DataType())
}

// floatText is a float's shortest plain decimal text (NaN and infinities as strconv writes them,
// which no numeric rule accepts).
func floatText(f float64, bits int) string {
	if f == 0 {
		return "0"
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}

// decimalText is unscaled/10^scale as plain decimal text without trailing zeros.
func decimalText(unscaled *big.Int, scale int32) string {
	ten := big.NewInt(10)
	if scale <= 0 {
		return unscaled.Mul(unscaled, ten.Exp(ten, big.NewInt(int64(-scale)), nil)).String()
	}
	s := new(big.Rat).SetFrac(unscaled, ten.Exp(ten, big.NewInt(int64(scale)), nil)).FloatString(int(scale))
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	if s == "-0" {
		s = "0"
	}
	return s
}
