package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

var maskKey = []byte("veil test key 0123456789abcdef")

func mustRule(t *testing.T, rule string) MaskRule {
	t.Helper()
	r, err := ParseMaskRule(rule)
	if err != nil {
		t.Fatalf("ParseMaskRule(%q): %v", rule, err)
	}
	return r
}

// maskOne applies rule to v and returns the result, "NULL" for NULL.
func maskOne(t *testing.T, rule, v string) string {
	t.Helper()
	out, null, err := mustRule(t, rule).Apply(maskKey, v, false)
	if err != nil {
		t.Fatalf("%s on %q: %v", rule, v, err)
	}
	if null {
		return "NULL"
	}
	return out
}

func TestMaskParseRule(t *testing.T) {
	for _, rule := range []string{"none", "name", "hmac", "month", "suppress", "keep:6,4", "keep:3,4", "keep:2,0",
		"keep:0,0", "keep:99,99", "band:5", "band:1000", "band:999999", "grid:0.01", "grid:1", "grid:0.5"} {
		r := mustRule(t, rule)
		if r.String() != rule {
			t.Errorf("String() = %q, want %q", r.String(), rule)
		}
	}
	for _, rule := range []string{"", "keep:-1,2", "keep:a,b", "keep:3", "keep:3,4,5", "keep:100,1", "keep:3,4 ", " keep:3,4",
		"Keep:3,4", "keep", "band:0", "band:-5", "band:1.5", "band:", "band:1000000", "band:x", "grid:0", "grid:0.00",
		"grid:.5", "grid:1.", "grid:1.2.3", "grid:-1", "grid:1e-2", "grid:0.000000001", "unknown", "mask", "NONE",
		"hmac:sha1", "month:2"} {
		_, err := ParseMaskRule(rule)
		if err == nil {
			t.Errorf("ParseMaskRule(%q) accepted", rule)
			continue
		}
		if !strings.Contains(err.Error(), "e.g.") {
			t.Errorf("ParseMaskRule(%q): error gives no example: %v", rule, err)
		}
	}
	for rule, want := range map[string]string{
		"keep:-1,2": "0 to 99", "keep:a,b": "0 to 99", "band:0": "at least 1", "grid:0": "greater than 0",
		"unknown": "unknown rule", "": "empty",
	} {
		if _, err := ParseMaskRule(rule); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMaskRule(%q) = %v, want an error saying %q", rule, err, want)
		}
	}
}

func TestMaskZeroRuleRefused(t *testing.T) {
	var r MaskRule
	if _, _, err := r.Apply(maskKey, "110101199003071234", false); err == nil {
		t.Error("the zero MaskRule masked a value")
	}
	a := stringArray(t, []string{"x"}, nil)
	defer a.Release()
	if _, err := MaskArray(r, maskKey, a); err == nil {
		t.Error("the zero MaskRule masked an array")
	}
}

func TestMaskKeep(t *testing.T) {
	for _, c := range []struct{ rule, in, want string }{
		// resident IDs: 18 characters, with a trailing X, old 15-character IDs, wrong lengths
		{"keep:6,4", "110101199003071234", "110101********1234"},
		{"keep:6,4", "11010519491231002X", "110105********002X"},
		{"keep:6,4", "110101900307123", "110101*****7123"},
		{"keep:6,4", "11010119900307123", "110101*******7123"},
		{"keep:6,4", "1101011990", "**********"},                         // at most P+S runes: all masked
		{"keep:6,4", "11010119900", "***********"},                       // one rune would be masked: all masked
		{"keep:6,4", "11010119900307", "**************"},                 // 4 of 14 would be masked: all masked
		{"keep:6,4", "110101", "******"},                                 // too short
		{"keep:6,4", "", ""},                                             // empty stays empty
		{"keep:6,4", " ", "*"},                                           // whitespace is masked too
		{"keep:6,4", "  110101199003071234  ", "  1101************34  "}, // nothing is trimmed
		// phones: plain, with +86 and with spaces (nothing is trimmed or normalised)
		{"keep:3,4", "13812345678", "138****5678"},
		{"keep:3,4", "+8613812345678", "+86*******5678"},
		{"keep:3,4", "+86 138 1234 5678", "+86**********5678"},
		{"keep:3,4", "138 1234 5678", "138******5678"},
		{"keep:3,4", "1381234567", "**********"},
		{"keep:3,4", "1234567", "*******"},
		// enterprise names keep two runes
		{"keep:2,0", "华为技术有限公司", "华为******"},
		{"keep:2,0", "华为司", "华为*"},
		{"keep:2,0", "华为", "**"},
		// emoji and mixed strings count runes, not bytes
		{"keep:1,1", "😀😁😂🤣😃😄", "😀****😄"},
		{"keep:1,1", "张3😀x", "张**x"},
		{"keep:0,0", "secret", "******"},
		{"keep:0,2", "abcdef", "****ef"},
	} {
		got := maskOne(t, c.rule, c.in)
		if got != c.want {
			t.Errorf("%s on %q = %q, want %q", c.rule, c.in, got, c.want)
		}
		if utf8.RuneCountInString(got) != utf8.RuneCountInString(c.in) {
			t.Errorf("%s on %q changed the length", c.rule, c.in)
		}
	}
	// invalid UTF-8: each bad byte is one rune, masked or written as U+FFFD, never copied
	got := maskOne(t, "keep:1,1", "\xffabcdef\xfe")
	if got != "\uFFFD******\uFFFD" || !utf8.ValidString(got) {
		t.Errorf("keep:1,1 on invalid UTF-8 = %q", got)
	}
}

func TestMaskName(t *testing.T) {
	for in, want := range map[string]string{
		"张三": "张*", "王小明": "王**", "欧阳娜娜": "欧***", "李": "*", "": "",
		"Person12": "P*******", "John Smith": "J*********", "阿卜杜拉·买买提": "阿*******",
	} {
		if got := maskOne(t, "name", in); got != want {
			t.Errorf("name on %q = %q, want %q", in, got, want)
		}
	}
}

func TestMaskHMAC(t *testing.T) {
	r := mustRule(t, "hmac")
	a, _, err := r.Apply(maskKey, "110101199003071234", false)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := r.Apply(maskKey, "110101199003071234", false)
	c, _, _ := r.Apply([]byte("another key"), "110101199003071234", false)
	d, _, _ := r.Apply(maskKey, "110101199003071235", false)
	if a != b {
		t.Error("hmac is not deterministic under one key")
	}
	if a == c {
		t.Error("hmac gives the same pseudonym under different keys")
	}
	if a == d {
		t.Error("hmac gives the same pseudonym to different values")
	}
	if len(a) != 32 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Errorf("hmac pseudonym %q is not 32 lower-case hex characters", a)
	}
	if strings.Contains(a, "19900307") || a == "110101199003071234" {
		t.Error("hmac pseudonym reveals the value")
	}
	// the empty string is hashed too, never passed through
	if e, null, _ := r.Apply(maskKey, "", false); null || len(e) != 32 {
		t.Errorf("hmac on the empty string = %q, %v", e, null)
	}
	// an empty key is refused, even for NULL and for arrays
	for _, key := range [][]byte{nil, {}} {
		if _, _, err := r.Apply(key, "42", false); err == nil || !strings.Contains(err.Error(), "needs a key") {
			t.Errorf("hmac with an empty key: %v", err)
		}
		if _, _, err := r.Apply(key, "", true); err == nil {
			t.Error("hmac with an empty key accepted a NULL")
		}
	}
	// canonical text: integer 42, float 42.0, decimal 42.00 and string "42" agree; "042" does not
	s42 := maskOne(t, "hmac", "42")
	ints := int64Array(t, []int64{42, -7, 0}, nil)
	defer ints.Release()
	floats := float64Array(t, []float64{42.0, -7, math.Copysign(0, -1)}, nil)
	defer floats.Release()
	db := array.NewDecimal128Builder(memory.DefaultAllocator, &arrow.Decimal128Type{Precision: 10, Scale: 2})
	defer db.Release()
	db.AppendValueFromString("42.00")
	db.AppendValueFromString("-7.00")
	db.AppendValueFromString("0.00")
	decs := db.NewArray()
	defer decs.Release()
	want := []string{s42, maskOne(t, "hmac", "-7"), maskOne(t, "hmac", "0")}
	for _, col := range []arrow.Array{ints, floats, decs} {
		got := maskStrings(t, r, col)
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("hmac on %s row %d = %s, want the pseudonym of the string", col.DataType(), i, got[i])
			}
		}
	}
	for _, other := range []string{"042", " 42", "42.0", "+42"} {
		if maskOne(t, "hmac", other) == s42 {
			t.Errorf("hmac on %q equals hmac on \"42\"", other)
		}
	}
}

func TestMaskBand(t *testing.T) {
	for _, c := range []struct{ rule, in, want string }{
		{"band:5", "0", "0-4"},
		{"band:5", "4", "0-4"},
		{"band:5", "5", "5-9"},
		{"band:5", "37", "35-39"},
		{"band:5", "-1", "-5--1"},
		{"band:5", "-5", "-5--1"},
		{"band:5", "-6", "-10--6"},
		{"band:5", "1000000000", "1000000000-1000000004"},
		{"band:5", "1e9", "1000000000-1000000005"},
		{"band:5", "37.5", "35-40"},
		{"band:5", "-0.5", "-5-0"},
		{"band:5", "4.999999", "0-5"},
		{"band:1000", "5234.5", "5000-6000"},
		{"band:1000", "100000", "100000-100999"},
		{"band:1", "-3", "-3--3"},
	} {
		if got := maskOne(t, c.rule, c.in); got != c.want {
			t.Errorf("%s on %q = %q, want %q", c.rule, c.in, got, c.want)
		}
	}
	r := mustRule(t, "band:5")
	for _, bad := range []string{"abc", "", " 38", "38 ", "NaN", "Inf", "1e999", "0x10", "1/2", "2024-03-17", "３７"} {
		_, _, err := r.Apply(maskKey, bad, false)
		if err == nil {
			t.Errorf("band:5 on %q: no error", bad)
			continue
		}
		if !strings.Contains(err.Error(), "band:5") || (bad != "" && strings.Contains(err.Error(), bad)) {
			t.Errorf("band:5 on %q: error %q should name the rule and not the value", bad, err)
		}
	}
	// typed columns: integers give inclusive bands, floats half-open ones; the int64 extremes
	// do not overflow
	ints := int64Array(t, []int64{37, -1, 0, math.MaxInt64, math.MinInt64}, []bool{true, true, false, true, true})
	defer ints.Release()
	want := []string{"35-39", "-5--1", "NULL", "9223372036854775805-9223372036854775809", "-9223372036854775810--9223372036854775806"}
	if got := maskStrings(t, r, ints); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("band:5 on int64 = %v, want %v", got, want)
	}
	floats := float64Array(t, []float64{37, 37.5, -0.0001, 1e9, 0}, []bool{true, true, true, true, false})
	defer floats.Release()
	want = []string{"35-40", "35-40", "-5-0", "1000000000-1000000005", "NULL"}
	if got := maskStrings(t, r, floats); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("band:5 on float64 = %v, want %v", got, want)
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		col := float64Array(t, []float64{1, f}, nil)
		_, err := MaskArray(r, maskKey, col)
		col.Release()
		if err == nil || !strings.Contains(err.Error(), "row 1") {
			t.Errorf("band:5 on %v: %v", f, err)
		}
	}
}

func TestMaskMonth(t *testing.T) {
	for in, want := range map[string]string{
		"2024-03-17":                "2024-03",
		"2024/03/17":                "2024-03",
		"2024-03-17T10:00:00Z":      "2024-03",
		"2024-03-17T10:00:00.123Z":  "2024-03",
		"2024-03-31T23:30:00-05:00": "2024-03", // the month as written
		"2024-03-17T10:00:00":       "2024-03",
		"2024-03-17 10:00:00":       "2024-03",
		"2024-03-17 10:00:00+08":    "2024-03",
		"2024-12-31":                "2024-12",
		// not dates: NULL, never the input
		"":                   "NULL",
		"not a date":         "NULL",
		"2024-02-30":         "NULL",
		"2024-13-01":         "NULL",
		"17/03/2024":         "NULL",
		"2024-3-7":           "NULL",
		"20240317":           "NULL",
		" 2024-03-17":        "NULL",
		"110101199003071234": "NULL",
	} {
		if got := maskOne(t, "month", in); got != want {
			t.Errorf("month on %q = %q, want %q", in, got, want)
		}
	}
	r := mustRule(t, "month")
	b := array.NewDate32Builder(memory.DefaultAllocator)
	b.Append(arrow.Date32FromTime(time.Date(2024, 3, 17, 0, 0, 0, 0, time.UTC)))
	b.AppendNull()
	b.Append(arrow.Date32FromTime(time.Date(1949, 10, 1, 0, 0, 0, 0, time.UTC)))
	b.Append(arrow.Date32FromTime(time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)))
	dates := b.NewArray()
	b.Release()
	defer dates.Release()
	if got := maskStrings(t, r, dates); fmt.Sprint(got) != "[2024-03 NULL 1949-10 1969-12]" {
		t.Errorf("month on date32 = %v", got)
	}
	for _, unit := range []arrow.TimeUnit{arrow.Second, arrow.Millisecond, arrow.Microsecond, arrow.Nanosecond} {
		tb := array.NewTimestampBuilder(memory.DefaultAllocator, &arrow.TimestampType{Unit: unit, TimeZone: "UTC"})
		for _, tm := range []time.Time{time.Date(2024, 3, 31, 23, 59, 59, 0, time.UTC), time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)} {
			ts, err := arrow.TimestampFromTime(tm, unit)
			if err != nil {
				t.Fatal(err)
			}
			tb.Append(ts)
		}
		tb.AppendNull()
		ts := tb.NewArray()
		tb.Release()
		if got := maskStrings(t, r, ts); fmt.Sprint(got) != "[2024-03 2023-01 NULL]" {
			t.Errorf("month on timestamp[%s] = %v", unit, got)
		}
		ts.Release()
	}
	ints := int64Array(t, []int64{20240317}, nil)
	defer ints.Release()
	if _, err := MaskArray(r, maskKey, ints); err == nil || strings.Contains(err.Error(), "20240317") {
		t.Errorf("month on int64: %v", err)
	}
}

func TestMaskGrid(t *testing.T) {
	for _, c := range []struct{ rule, in, want string }{
		{"grid:0.01", "39.9042", "39.90"},
		{"grid:0.01", "116.4074", "116.40"},
		{"grid:0.01", "-33.8688", "-33.87"},
		{"grid:0.01", "0.29", "0.29"},
		{"grid:0.01", "-0.001", "-0.01"},
		{"grid:0.01", "0", "0.00"},
		{"grid:0.01", "40", "40.00"},
		{"grid:1", "39.9", "39"},
		{"grid:1", "-0.2", "-1"},
		{"grid:0.5", "-0.2", "-0.5"},
		{"grid:0.25", "1.3", "1.25"},
		{"grid:0.010", "39.9042", "39.900"},
	} {
		if got := maskOne(t, c.rule, c.in); got != c.want {
			t.Errorf("%s on %q = %q, want %q", c.rule, c.in, got, c.want)
		}
	}
	r := mustRule(t, "grid:0.01")
	col := float64Array(t, []float64{39.9042, 0.29, -33.8688, 0}, []bool{true, true, true, false})
	defer col.Release()
	if got := maskStrings(t, r, col); fmt.Sprint(got) != "[39.90 0.29 -33.87 NULL]" {
		t.Errorf("grid:0.01 on float64 = %v", got)
	}
	if _, _, err := r.Apply(maskKey, "north", false); err == nil || strings.Contains(err.Error(), "north") {
		t.Errorf("grid on a non-number: %v", err)
	}
}

func TestMaskSuppressNoneNull(t *testing.T) {
	for _, rule := range []string{"none", "name", "hmac", "month", "suppress", "keep:3,4", "band:5", "grid:0.01"} {
		out, null, err := mustRule(t, rule).Apply(maskKey, "", true)
		if err != nil || !null || out != "" {
			t.Errorf("%s on NULL = %q, %v, %v; want NULL", rule, out, null, err)
		}
	}
	for _, v := range []string{"110101199003071234", "", "佛教", "42"} {
		if got := maskOne(t, "suppress", v); got != "NULL" {
			t.Errorf("suppress on %q = %q", v, got)
		}
		if got := maskOne(t, "none", v); got != v {
			t.Errorf("none on %q = %q", v, got)
		}
	}
	ints := int64Array(t, []int64{1, 2, 3}, []bool{true, false, true})
	defer ints.Release()
	sup, err := MaskArray(mustRule(t, "suppress"), maskKey, ints)
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Release()
	if sup.Len() != 3 || sup.NullN() != 3 || !arrow.TypeEqual(sup.DataType(), arrow.BinaryTypes.String) {
		t.Errorf("suppress on int64 = %v (%s)", sup, sup.DataType())
	}
	none, err := MaskArray(mustRule(t, "none"), maskKey, ints)
	if err != nil {
		t.Fatal(err)
	}
	defer none.Release()
	if !array.Equal(none, ints) {
		t.Errorf("none on int64 = %v, want %v", none, ints)
	}
}

func TestMaskArray(t *testing.T) {
	strs := stringArray(t, []string{"110101199003071234", "", "11010519491231002X", "123"}, []bool{true, false, true, true})
	defer strs.Release()
	for _, c := range []struct {
		rule string
		col  arrow.Array
		want string
	}{
		{"keep:6,4", strs, "[110101********1234 NULL 110105********002X ***]"},
		{"name", strs, "[1***************** NULL 1***************** 1**]"},
	} {
		if got := maskStrings(t, mustRule(t, c.rule), c.col); fmt.Sprint(got) != c.want {
			t.Errorf("%s on %s = %v, want %s", c.rule, c.col.DataType(), got, c.want)
		}
	}
	// an id number held as BIGINT is masked by its decimal text
	ids := int64Array(t, []int64{110101199003071234, 0}, []bool{true, false})
	defer ids.Release()
	if got := maskStrings(t, mustRule(t, "keep:6,4"), ids); fmt.Sprint(got) != "[110101********1234 NULL]" {
		t.Errorf("keep:6,4 on int64 = %v", got)
	}
	// other string layouts and dictionaries give the same as utf8
	lb := array.NewLargeStringBuilder(memory.DefaultAllocator)
	lb.AppendValues([]string{"13812345678", "x"}, []bool{true, false})
	large := lb.NewArray()
	lb.Release()
	defer large.Release()
	if got := maskStrings(t, mustRule(t, "keep:3,4"), large); fmt.Sprint(got) != "[138****5678 NULL]" {
		t.Errorf("keep:3,4 on large_utf8 = %v", got)
	}
	db := array.NewDictionaryBuilder(memory.DefaultAllocator, &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String})
	sb := db.(*array.BinaryDictionaryBuilder)
	for _, v := range []string{"张三", "欧阳娜娜", "张三"} {
		if err := sb.AppendString(v); err != nil {
			t.Fatal(err)
		}
	}
	sb.AppendNull()
	dict := sb.NewArray()
	sb.Release()
	defer dict.Release()
	if got := maskStrings(t, mustRule(t, "name"), dict); fmt.Sprint(got) != "[张* 欧*** 张* NULL]" {
		t.Errorf("name on a dictionary = %v", got)
	}
	// unsupported types are errors naming the type
	bb := array.NewBooleanBuilder(memory.DefaultAllocator)
	bb.Append(true)
	bools := bb.NewArray()
	bb.Release()
	defer bools.Release()
	if _, err := MaskArray(mustRule(t, "hmac"), maskKey, bools); err == nil || !strings.Contains(err.Error(), "bool") {
		t.Errorf("hmac on bool: %v", err)
	}
	// every masked column is utf8 of the input's length
	for _, rule := range []string{"keep:6,4", "name", "hmac", "band:5", "grid:0.01", "suppress"} {
		out, err := MaskArray(mustRule(t, rule), maskKey, ids)
		if err != nil {
			t.Fatalf("%s: %v", rule, err)
		}
		if out.Len() != ids.Len() || !arrow.TypeEqual(out.DataType(), arrow.BinaryTypes.String) || !out.IsNull(1) {
			t.Errorf("%s on int64: %v (%s)", rule, out, out.DataType())
		}
		out.Release()
	}
}

// TestMaskKeepProperty masks random strings under several keep rules: the output has the
// input's length, keeps exactly the shown runes, stars all others, and equals the input only
// when every masked rune of the input was a star.
func TestMaskKeepProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pools := [][2]rune{{'0', '9'}, {'A', 'Z'}, {'a', 'z'}, {0x4E00, 0x9FFF}, {0x1F600, 0x1F64F}, {' ', ' '}, {'*', '*'}, {0x3000, 0x303F}}
	for _, ps := range [][2]int{{6, 4}, {3, 4}, {2, 0}, {1, 0}, {0, 0}, {1, 1}, {0, 3}, {10, 10}} {
		r := mustRule(t, fmt.Sprintf("keep:%d,%d", ps[0], ps[1]))
		for n := 0; n < 10000; n++ {
			runes := make([]rune, rng.IntN(30))
			for i := range runes {
				p := pools[rng.IntN(len(pools))]
				runes[i] = p[0] + rune(rng.IntN(int(p[1]-p[0])+1))
			}
			in := string(runes)
			out, null, err := r.Apply(maskKey, in, false)
			if err != nil || null {
				t.Fatalf("%s: %v %v", r, err, null)
			}
			got := []rune(out)
			if len(got) != len(runes) {
				t.Fatalf("%s on %q = %q: length changed", r, in, out)
			}
			m := len(runes) - ps[0] - ps[1]
			shown := m >= 1 && 3*m >= len(runes)
			if out == in {
				// only when every masked rune was a star already
				lo, hi := 0, len(runes)
				if shown {
					lo, hi = ps[0], len(runes)-ps[1]
				}
				if strings.Trim(string(runes[lo:hi]), "*") != "" {
					t.Fatalf("%s on %q left it unmasked", r, in)
				}
			}
			kept := map[rune]bool{}
			for i := range runes {
				if shown && (i < ps[0] || i >= len(runes)-ps[1]) {
					if got[i] != runes[i] {
						t.Fatalf("%s on %q = %q: rune %d changed", r, in, out, i)
					}
					kept[runes[i]] = true
				} else if got[i] != '*' {
					t.Fatalf("%s on %q = %q: rune %d not masked", r, in, out, i)
				}
			}
			// the middle never appears in the output (when the kept runes cannot spell it)
			lo, hi := min(ps[0], len(runes)), max(len(runes)-ps[1], 0)
			if !shown {
				lo, hi = 0, len(runes)
			}
			if lo < hi {
				middle := runes[lo:hi]
				spellable := true
				for _, c := range middle {
					if c != '*' && !kept[c] {
						spellable = false
					}
				}
				if !spellable && strings.Contains(out, string(middle)) {
					t.Fatalf("%s on %q = %q: contains the middle", r, in, out)
				}
			}
		}
	}
}

// TestMaskNeverRevealsIDs masks generated resident IDs, phones and names under every rule fit
// for an identifier: the birth date of an ID, the middle six digits of a phone and the given
// name never appear in the output, and no output equals its input.
func TestMaskNeverRevealsIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	surnames := []string{"张", "王", "李", "赵", "欧阳", "司马"}
	given := []rune("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂")
	rules := []string{"keep:6,4", "keep:3,4", "keep:2,0", "name", "hmac", "month", "suppress"}
	for n := 0; n < 2000; n++ {
		birth := time.Date(1930+rng.IntN(90), time.Month(1+rng.IntN(12)), 1+rng.IntN(28), 0, 0, 0, 0, time.UTC).Format("20060102")
		id := residentID(fmt.Sprintf("%06d", 110000+rng.IntN(550000)), birth, rng.IntN(1000))
		phone := fmt.Sprintf("1%d%d%08d", 3+rng.IntN(7), rng.IntN(10), rng.IntN(100000000))
		g := string([]rune{given[rng.IntN(len(given))], given[rng.IntN(len(given))]})
		name := surnames[rng.IntN(len(surnames))] + g
		for _, rule := range rules {
			r := mustRule(t, rule)
			for _, c := range []struct{ value, secret string }{
				{id, birth}, {"+86 " + phone, phone[3:9]}, {phone, phone[3:9]}, {name, g},
			} {
				out, _, err := r.Apply(maskKey, c.value, false)
				if err != nil {
					t.Fatalf("%s: %v", rule, err)
				}
				if strings.Contains(out, c.secret) || out == c.value {
					t.Fatalf("%s on %q = %q reveals %q", rule, c.value, out, c.secret)
				}
			}
		}
	}
}

// residentID builds an 18-character resident ID with its ISO 7064 MOD 11-2 check character.
func residentID(area, birth string, seq int) string {
	body := fmt.Sprintf("%s%s%03d", area, birth, seq)
	weights := []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i, c := range body {
		sum += int(c-'0') * weights[i]
	}
	return body + string("10X98765432"[sum%11])
}

func maskStrings(t *testing.T, r MaskRule, a arrow.Array) []string {
	t.Helper()
	out, err := MaskArray(r, maskKey, a)
	if err != nil {
		t.Fatalf("%s on %s: %v", r, a.DataType(), err)
	}
	defer out.Release()
	if out.Len() != a.Len() {
		t.Fatalf("%s on %s: %d rows, want %d", r, a.DataType(), out.Len(), a.Len())
	}
	s, ok := out.(*array.String)
	if !ok {
		t.Fatalf("%s on %s gave %s, want utf8", r, a.DataType(), out.DataType())
	}
	got := make([]string, s.Len())
	for i := range got {
		if s.IsNull(i) {
			got[i] = "NULL"
		} else {
			got[i] = s.Value(i)
		}
	}
	return got
}

func stringArray(t *testing.T, v []string, valid []bool) arrow.Array {
	t.Helper()
	b := array.NewStringBuilder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues(v, valid)
	return b.NewArray()
}

func int64Array(t *testing.T, v []int64, valid []bool) arrow.Array {
	t.Helper()
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues(v, valid)
	return b.NewArray()
}

func float64Array(t *testing.T, v []float64, valid []bool) arrow.Array {
	t.Helper()
	b := array.NewFloat64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.AppendValues(v, valid)
	return b.NewArray()
}
