package gate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// rulesOf lists the rules of fs in order, and checks that every finding says where it came
// from and what to do.
func rulesOf(t *testing.T, fs []Finding) []string {
	t.Helper()
	var rules []string
	for _, f := range fs {
		if f.Output == "" || f.Rule == "" || f.Message == "" {
			t.Errorf("finding %+v lacks an output, a rule or a message", f)
		}
		rules = append(rules, f.Rule)
	}
	return rules
}

func TestDefaultSDCRules(t *testing.T) {
	// ACRO's acro/default.yaml: safe_threshold 10, safe_dof_threshold 10, safe_nk_n 2,
	// safe_nk_k 0.90, safe_pratio_p 0.10; OpenSAFELY rounds counts to multiples of 5.
	want := SDCRules{MinCount: 10, RoundTo: 5, DominanceP: 10, DominanceN: 2, DominanceK: 90, MinResidualDF: 10}
	if got := DefaultSDCRules(); got != want {
		t.Errorf("DefaultSDCRules() = %+v, want %+v", got, want)
	}
}

func TestCheckFrequency(t *testing.T) {
	def := DefaultSDCRules()
	noRounding := def
	noRounding.RoundTo = 0
	cases := []struct {
		name  string
		count string
		rules SDCRules
		want  []string
	}{
		{"at the minimum", "10", def, nil},
		{"one below the minimum", "9", noRounding, []string{RuleMinCount}},
		{"small and not rounded", "7", def, []string{RuleMinCount, RuleRounding}},
		{"rounded but small", "5", def, []string{RuleMinCount}},
		{"structural zero", "0", def, nil},
		{"rounded", "15", def, nil},
		{"not rounded", "12", def, []string{RuleRounding}},
		{"not rounded, no rounding rule", "12", noRounding, nil},
		{"float spelling", "20.0", def, nil},
		{"float spelling not rounded", "12.0", def, []string{RuleRounding}},
		{"spaces", " 20 ", def, nil},
		{"blank is suppressed", "", def, nil},
		{"redacted", "[REDACTED]", def, nil},
		{"star", "*", def, nil},
		{"negative", "-5", def, []string{RuleNotCount}},
		{"fraction", "2.5", def, []string{RuleNotCount}},
		{"text", "many", def, []string{RuleNotCount}},
		{"infinite", "Inf", def, []string{RuleNotCount}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tab := SDCTable{Name: "counts.csv", Columns: []string{"district", "n"}, Rows: [][]string{{"a", tc.count}}}
			fs := CheckFrequency(tab, "n", tc.rules)
			if got := rulesOf(t, fs); !slices.Equal(got, tc.want) {
				t.Fatalf("rules = %v, want %v (%+v)", got, tc.want, fs)
			}
			for _, f := range fs {
				if f.Where != "row 1" {
					t.Errorf("where = %q, want row 1", f.Where)
				}
			}
		})
	}
}

func TestCheckFrequencyMissingColumn(t *testing.T) {
	tab := SDCTable{Name: "counts.csv", Columns: []string{"district", "n"}, Rows: [][]string{{"a", "10"}}}
	fs := CheckFrequency(tab, "count", DefaultSDCRules())
	if got := rulesOf(t, fs); !slices.Equal(got, []string{RuleNotCount}) || !strings.Contains(fs[0].Message, `no column named "count"`) {
		t.Fatalf("findings = %+v, want one not_a_count naming the column", fs)
	}
}

func TestCheckFrequencyShortRow(t *testing.T) {
	// A row without its count cell reads as blank: suppressed, not a finding.
	tab := SDCTable{Name: "counts.csv", Columns: []string{"district", "n"}, Rows: [][]string{{"a"}, {"b", "3"}}}
	fs := CheckFrequency(tab, "n", DefaultSDCRules())
	if got := rulesOf(t, fs); !slices.Equal(got, []string{RuleMinCount, RuleRounding}) || fs[0].Where != "row 2" {
		t.Fatalf("findings = %+v", fs)
	}
}

func TestCheckFrequencySummarisesManyCells(t *testing.T) {
	tab := SDCTable{Name: "counts.csv", Columns: []string{"g", "n"}}
	for i := range 30 {
		tab.Rows = append(tab.Rows, []string{strconv.Itoa(i), "3"}) // min_count and rounding each
	}
	fs := CheckFrequency(tab, "n", DefaultSDCRules())
	rulesOf(t, fs)
	if len(fs) != sdcMaxCellFindings+1 {
		t.Fatalf("got %d findings, want %d listed and one summary", len(fs), sdcMaxCellFindings)
	}
	last := fs[len(fs)-1]
	if last.Rule != RuleMoreFindings || !strings.Contains(last.Message, "40 further findings") ||
		!strings.Contains(last.Message, "min_count: 20, rounding: 20") {
		t.Errorf("summary = %+v", last)
	}
}

// balanced returns n contributions of v.
func balanced(n int, v float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = v
	}
	return xs
}

func TestCheckMagnitude(t *testing.T) {
	def := DefaultSDCRules()
	pOnly := def
	pOnly.DominanceN = 0
	cases := []struct {
		name  string
		xs    []float64
		rules SDCRules
		want  []string
	}{
		{"balanced", balanced(12, 100), def, nil},
		{"dominated by one", append([]float64{1000}, balanced(11, 5)...), def, []string{RuleDominanceP, RuleDominanceNK}},
		{"dominated, negative", append([]float64{-1000}, balanced(11, 5)...), def, []string{RuleDominanceP, RuleDominanceNK}},
		{"mixed signs balanced", append(balanced(6, -100), balanced(6, 100)...), def, nil},
		// x3..x12 add up to exactly 10% of x1: the rule is strict, so this passes.
		{"p rule boundary", append([]float64{1000, 10}, balanced(10, 10)...), pOnly, nil},
		{"p rule just below", append([]float64{1000, 10}, balanced(10, 9.99)...), pOnly, []string{RuleDominanceP}},
		// Two equal giants: neither learns the other from the rest, but together they are 91%.
		{"two dominate", append([]float64{100, 100}, balanced(10, 2)...), def, []string{RuleDominanceNK}},
		{"at the minimum", balanced(10, 100), def, nil},
		{"one below the minimum", balanced(9, 100), def, []string{RuleMinCount}},
		{"single contributor", []float64{500}, def, []string{RuleMinCount, RuleDominanceP, RuleDominanceNK}},
		{"no contributors", nil, def, nil},
		{"all zero", balanced(12, 0), def, nil},
		{"not finite", append(balanced(11, 100), math.NaN()), def, []string{RuleNotMagnitude}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := CheckMagnitude("income_by_district.csv", []MagnitudeCell{{Key: "district=a", Contributions: tc.xs}}, tc.rules)
			if got := rulesOf(t, fs); !slices.Equal(got, tc.want) {
				t.Fatalf("rules = %v, want %v (%+v)", got, tc.want, fs)
			}
			for _, f := range fs {
				if f.Where != `cell "district=a"` {
					t.Errorf("where = %q", f.Where)
				}
			}
		})
	}
}

func TestCheckMagnitudeUnnamedCell(t *testing.T) {
	cells := []MagnitudeCell{{Key: "a", Contributions: balanced(12, 1)}, {Contributions: balanced(3, 1)}}
	fs := CheckMagnitude("m", cells, DefaultSDCRules())
	if len(fs) == 0 || fs[0].Where != "cell 2" {
		t.Fatalf("findings = %+v, want the second cell named by position", fs)
	}
}

func TestCheckRegression(t *testing.T) {
	cases := []struct {
		name          string
		nObs, nParams int
		want          []string
	}{
		{"residual df at the minimum", 20, 10, nil},
		{"plenty", 1000, 5, nil},
		{"residual df one below", 19, 10, []string{RuleResidualDF}},
		{"more parameters than observations", 5, 10, []string{RuleResidualDF}},
		{"no observations", 0, 3, []string{RuleNotRegression}},
		{"no parameters", 100, 0, []string{RuleNotRegression}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := CheckRegression("model.json", tc.nObs, tc.nParams, DefaultSDCRules())
			if got := rulesOf(t, fs); !slices.Equal(got, tc.want) {
				t.Fatalf("rules = %v, want %v (%+v)", got, tc.want, fs)
			}
		})
	}
}

// people is a made-up input of n rows: id, district, age, income.
func people(n int) SDCTable {
	rng := rand.New(rand.NewPCG(1, 2)) // fixed: the checks are deterministic, the data need only look real
	t := SDCTable{Name: "residents", Columns: []string{"resident_id", "district", "age", "income"}}
	for i := range n {
		t.Rows = append(t.Rows, []string{
			fmt.Sprintf("R%06d", i+1),
			fmt.Sprintf("d%d", rng.IntN(10)),
			strconv.Itoa(18 + rng.IntN(70)),
			strconv.FormatFloat(float64(rng.IntN(10_000_000))/100, 'f', 2, 64),
		})
	}
	return t
}

// column returns column j of t's first n rows, each passed through f.
func column(t SDCTable, j, n int, f func(string) string) [][]string {
	rows := make([][]string, n)
	for i := range n {
		rows[i] = []string{f(t.Rows[i][j])}
	}
	return rows
}

func same(s string) string { return s }

// aggregate is a genuine summary of in: per district, the count (rounded) and mean income.
func aggregate(in SDCTable) SDCTable {
	count := map[string]int{}
	sum := map[string]float64{}
	for _, r := range in.Rows {
		x, _ := strconv.ParseFloat(r[3], 64)
		count[r[1]]++
		sum[r[1]] += x
	}
	out := SDCTable{Name: "by_district.csv", Columns: []string{"district", "n", "mean_income"}}
	for d := range 10 {
		k := fmt.Sprintf("d%d", d)
		out.Rows = append(out.Rows, []string{k, strconv.Itoa(count[k] / 5 * 5), strconv.FormatFloat(sum[k]/float64(count[k]), 'f', 2, 64)})
	}
	return out
}

func TestCheckRowLevel(t *testing.T) {
	in := people(200)
	shuffled := column(in, 3, 200, same)[:195] // drop 5 rows: 97.5% of the input's values
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	constant := make([][]string, 150)
	for i := range constant {
		constant[i] = []string{"1"}
	}
	cases := []struct {
		name      string
		out       SDCTable
		inputRows int64
		want      []string
		where     string
	}{
		{"genuine aggregate", aggregate(in), 200, nil, ""},
		{"copy in order", SDCTable{Name: "o", Columns: []string{"x"}, Rows: column(in, 3, 150, same)}, 0, []string{RuleCopiedColumn}, `column "x"`},
		{"head of an id column", SDCTable{Name: "o", Columns: []string{"who"}, Rows: column(in, 0, 12, same)}, 0, []string{RuleCopiedColumn}, `column "who"`},
		{"shuffled copy", SDCTable{Name: "o", Columns: []string{"x"}, Rows: shuffled}, 0, []string{RuleCopiedColumn}, `column "x"`},
		{"numbers respelled", SDCTable{Name: "o", Columns: []string{"x"}, Rows: column(in, 2, 150, func(s string) string { return " " + s + ".0" })}, 0, []string{RuleCopiedColumn}, `column "x"`},
		{"whole copy", SDCTable{Name: "o", Columns: []string{"x"}, Rows: column(in, 3, 200, same)}, 0, []string{RuleRowCount, RuleCopiedColumn}, "rows"},
		{"as many rows as the job's input", SDCTable{Name: "o", Columns: []string{"x"}, Rows: constant[:50]}, 50, []string{RuleRowCount}, "rows"},
		{"constant column skipped", SDCTable{Name: "o", Columns: []string{"x"}, Rows: constant}, 0, nil, ""},
		{"empty output", SDCTable{Name: "o", Columns: []string{"x"}}, 0, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fs := CheckRowLevel(tc.out, []SDCTable{in}, tc.inputRows)
			if got := rulesOf(t, fs); !slices.Equal(got, tc.want) {
				t.Fatalf("rules = %v, want %v (%+v)", got, tc.want, fs)
			}
			if len(fs) > 0 && fs[0].Where != tc.where {
				t.Errorf("where = %q, want %q", fs[0].Where, tc.where)
			}
		})
	}
}

func TestCheckRowLevelSpellings(t *testing.T) {
	in := SDCTable{Name: "in", Columns: []string{"v"}}
	out := SDCTable{Name: "o", Columns: []string{"v"}}
	for i := range 12 {
		in.Rows = append(in.Rows, []string{strconv.Itoa(i)})
		out.Rows = append(out.Rows, []string{[]string{"%d", "%d.0", " %d ", "%d.00", "%de0"}[i%5]})
		out.Rows[i][0] = fmt.Sprintf(out.Rows[i][0], i)
	}
	out.Rows[0][0] = "-0" // equals 0
	fs := CheckRowLevel(out, []SDCTable{in}, 0)
	if got := rulesOf(t, fs); !slices.Equal(got, []string{RuleRowCount, RuleCopiedColumn}) || !strings.Contains(fs[1].Message, "row for row") {
		t.Fatalf("findings = %+v", fs)
	}
}

func TestCheckRowLevelTextIsNotANumber(t *testing.T) {
	// "1" and "one" differ, and text that looks like a key prefix does not collide with a number.
	in := SDCTable{Name: "in", Columns: []string{"v"}}
	out := SDCTable{Name: "o", Columns: []string{"v"}}
	for i := range 20 {
		in.Rows = append(in.Rows, []string{strconv.Itoa(i)})
		out.Rows = append(out.Rows, []string{"n" + strconv.Itoa(i)})
	}
	out.Rows = out.Rows[:19] // not as many rows as the input
	if fs := CheckRowLevel(out, []SDCTable{in}, 1000); len(fs) != 0 {
		t.Fatalf("findings = %+v, want none", fs)
	}
}

// TestSDCFindingsHoldNoValues runs every check on outputs full of distinctive values and
// fails if any finding repeats one: findings go to reviewers and the audit log.
func TestSDCFindingsHoldNoValues(t *testing.T) {
	freq := SDCTable{Name: "counts.csv", Columns: []string{"name", "id_number", "n"}, Rows: [][]string{
		{"Zhang Sanfeng", "110101199003071234", "987654321"}, // rounding
		{"Li Siguang", "110101198512125678", "7"},            // min_count
		{"Wang Wuyi", "110101197701019012", "987654.321"},    // not a count
		{"Zhao Liuxing", "110101196612313456", "-4455"},      // not a count
	}}
	in := SDCTable{Name: "residents", Columns: []string{"resident_id", "income"}}
	out := SDCTable{Name: "leak.csv", Columns: []string{"income_copy"}}
	for i := range 30 {
		v := strconv.FormatFloat(987654.321+float64(i)*1111.111, 'f', 3, 64)
		in.Rows = append(in.Rows, []string{fmt.Sprintf("R%09d", 555000111+i), v})
		out.Rows = append(out.Rows, []string{v})
	}
	cells := []MagnitudeCell{
		{Key: "district=a", Contributions: append([]float64{987654.321}, balanced(11, 123.456)...)},
		{Key: "district=b", Contributions: []float64{4242.4242, 8484.8484}},
	}

	var fs []Finding
	fs = append(fs, CheckFrequency(freq, "n", DefaultSDCRules())...)
	fs = append(fs, CheckMagnitude("income.csv", cells, DefaultSDCRules())...)
	fs = append(fs, CheckRowLevel(out, []SDCTable{in}, 30)...)
	if got := rulesOf(t, fs); len(got) < 8 {
		t.Fatalf("only %d findings (%v); the test needs every rule to fire", len(got), got)
	}

	var values []string
	for _, tab := range []SDCTable{freq, in, out} {
		for _, row := range tab.Rows {
			values = append(values, row...)
		}
	}
	for _, c := range cells {
		total := 0.0
		for _, x := range c.Contributions {
			total += x
			values = append(values, spellings(x)...)
		}
		values = append(values, spellings(total)...)
		values = append(values, spellings(total/float64(len(c.Contributions)))...)
	}
	for _, f := range fs {
		for _, v := range values {
			// Short values ("7") turn up in any sentence with a number; every other value
			// is distinctive.
			if len(v) >= 3 && (strings.Contains(f.Message, v) || strings.Contains(f.Where, v)) {
				t.Errorf("finding %+v contains the data value %q", f, v)
			}
		}
	}
}

// spellings are the ways a message could print x.
func spellings(x float64) []string {
	return []string{strconv.FormatFloat(x, 'g', -1, 64), strconv.FormatFloat(x, 'f', 2, 64),
		strconv.FormatFloat(x, 'f', 0, 64), fmt.Sprint(x), fmt.Sprintf("%.1f", x)}
}

func BenchmarkCheckRowLevel(b *testing.B) {
	// 100k rows × 20 columns against an input of the same shape: the size the daemon expects.
	const rows, cols = 100_000, 20
	mk := func(name string, seed uint64) SDCTable {
		rng := rand.New(rand.NewPCG(seed, seed))
		t := SDCTable{Name: name}
		for j := range cols {
			t.Columns = append(t.Columns, fmt.Sprintf("c%d", j))
		}
		for range rows {
			row := make([]string, cols)
			for j := range row {
				row[j] = strconv.FormatFloat(rng.Float64()*1000, 'f', 3, 64)
			}
			t.Rows = append(t.Rows, row)
		}
		return t
	}
	in, out := mk("in", 1), mk("out", 2)
	out.Rows = out.Rows[:rows-1]
	b.ResetTimer()
	for b.Loop() {
		if fs := CheckRowLevel(out, []SDCTable{in}, 0); len(fs) != 0 {
			b.Fatalf("findings = %+v", fs)
		}
	}
}
