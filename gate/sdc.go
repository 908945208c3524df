package gate

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/veil-dp/veil/policy"
)

// Statistical disclosure control (SDC) for the outputs of vendors' custom jobs. A custom
// program writes files to /out and a manifest saying what each one is; the daemon reads them
// into the plain values below and these checks return Findings for a human reviewer. The
// checks follow output checking as done by ACRO/SACRO (github.com/AI-SDC/ACRO, whose
// acro/default.yaml gives the defaults used here), the p% and (n,k) dominance rules of the
// Eurostat SDC handbook (Hundepool et al., Statistical Disclosure Control, Wiley 2012, ch. 4)
// and OpenSAFELY's small-number suppression and rounding of counts.
//
// No differential-privacy claim is made for these outputs: the checks catch the common ways
// an aggregate gives a person away, not every way. A release with findings needs a reviewer's
// explicit, recorded override.
//
// A Finding never holds a value from an output or an input: it names the output, the rule,
// the place (a row number, a column name, a cell's key label) and says what to do. Findings
// are shown to reviewers and vendors and written to the audit log, so a data value in one
// would leak past every check. Counts of cells and of rows, and the rule's own thresholds,
// are the only numbers a message may carry.

// SDCRules are the thresholds of the output checks. A rule whose threshold is zero or
// negative is off, so start from DefaultSDCRules and tighten it (a grant's K and RoundTo, for
// instance) rather than building the struct from nothing.
type SDCRules struct {
	// MinCount is the smallest count a frequency cell, and the fewest contributors a
	// magnitude cell, may have when it is not zero (ACRO safe_threshold: 10).
	MinCount int `json:"min_count"`
	// RoundTo: every frequency count must be a multiple of it, as OpenSAFELY rounds counts to
	// multiples of 5 so that differences of tables cannot isolate a person.
	RoundTo int `json:"round_to"`
	// DominanceP is p of the p% rule, in percent (ACRO safe_pratio_p: 10%).
	DominanceP float64 `json:"dominance_p"`
	// DominanceN and DominanceK are n and k of the (n,k) rule, k in percent (ACRO safe_nk_n
	// and safe_nk_k: 2 and 90%).
	DominanceN int     `json:"dominance_n"`
	DominanceK float64 `json:"dominance_k"`
	// MinResidualDF is the fewest residual degrees of freedom a regression may have (ACRO
	// safe_dof_threshold: 10).
	MinResidualDF int `json:"min_residual_df"`
}

// DefaultSDCRules returns ACRO's default thresholds, with OpenSAFELY's rounding to 5.
func DefaultSDCRules() SDCRules {
	return SDCRules{MinCount: 10, RoundTo: 5, DominanceP: 10, DominanceN: 2, DominanceK: 90, MinResidualDF: 10}
}

// Rules a Finding may name.
const (
	RuleMinCount      = "min_count"        // a non-zero cell below MinCount (count or contributors)
	RuleRounding      = "rounding"         // a count not a multiple of RoundTo
	RuleNotCount      = "not_a_count"      // the count column is missing or a cell is not a count
	RuleNotMagnitude  = "not_a_magnitude"  // a contribution is not a finite number
	RuleDominanceP    = "dominance_p"      // the p% rule
	RuleDominanceNK   = "dominance_nk"     // the (n,k) rule
	RuleResidualDF    = "residual_df"      // too few residual degrees of freedom
	RuleNotRegression = "not_a_regression" // a regression summary without observations or parameters
	RuleRowCount      = "row_count"        // as many rows as an input: one row per record
	RuleCopiedColumn  = "copied_column"    // a column that repeats an input column
	RuleMoreFindings  = "more_findings"    // the count of cell findings not listed
)

const (
	sdcMaxCellFindings  = 20 // cell findings listed per output before a summary
	sdcMinCopyRows      = 10 // rows needed to call a column a copy, unless the output is shorter
	sdcCopyMatchPercent = 95 // share of values, in percent, that must match to call a column a copy
)

// Finding is one problem with one output, for the reviewer. It holds no data value (see the
// comment at the top of this file).
type Finding struct {
	Output  string `json:"output"`          // the output's name in the manifest
	Rule    string `json:"rule"`            // one of the Rule constants
	Where   string `json:"where,omitempty"` // "row 3", `column "income"`, `cell "district=a"`
	Message string `json:"message"`         // what is wrong and what to do
}

// SDCTable is a tabular output or input as the checker sees it: column names and cells as
// text, read by the daemon from CSV or Parquet. A short row is read as having blank cells.
type SDCTable struct {
	Name    string
	Columns []string
	Rows    [][]string
}

// MagnitudeCell is one cell of a magnitude table (a sum or mean): its key label as the
// manifest gives the group (for example "district=a, sex=f") and one contribution per
// contributing unit (person or enterprise), summed over that unit's rows. The daemon
// recomputes the contributions from the data; the vendor's own figures are never trusted.
type MagnitudeCell struct {
	Key           string
	Contributions []float64
}

// CheckFrequency checks a frequency table: each row is a cell whose count is in countColumn.
//
//   - not_a_count: the column is missing, or a cell is not a whole number of zero or more. A
//     suppressed cell (blank, "*", "-", "NA", "NaN", "null", "[REDACTED]", "redacted",
//     "suppressed", "c" or "x", in any case) is fine. "12.0" is read as 12.
//   - min_count: 0 < count < MinCount (ACRO's threshold rule; OpenSAFELY suppresses small
//     numbers the same way). Zero cells pass: they are taken as structural zeros, where ACRO
//     by default (zeros_are_disclosive) would flag them.
//   - rounding: the count is not a multiple of RoundTo (OpenSAFELY's rounding of counts).
//
// A cell's Where is its row number, counting from 1 after the header: the key labels of a
// vendor-written file are not trusted to be free of data values. At most 20 cell findings
// are listed, then one more_findings finding counts the rest.
func CheckFrequency(t SDCTable, countColumn string, r SDCRules) []Finding {
	j := slices.Index(t.Columns, countColumn)
	if j < 0 {
		return []Finding{{Output: t.Name, Rule: RuleNotCount, Where: fmt.Sprintf("column %q", countColumn),
			Message: fmt.Sprintf("the table has no column named %q; name the column that holds the counts in the manifest", countColumn)}}
	}
	f := sdcFindings{output: t.Name}
	for i, row := range t.Rows {
		where := fmt.Sprintf("row %d", i+1)
		n, suppressed, ok := sdcCount(sdcCell(row, j))
		switch {
		case suppressed:
		case !ok:
			f.add(RuleNotCount, where, fmt.Sprintf("column %q does not hold a whole number of zero or more here; write counts as plain integers and leave suppressed cells blank", countColumn))
		default:
			if r.MinCount > 0 && n > 0 && n < int64(r.MinCount) {
				f.add(RuleMinCount, where, fmt.Sprintf("the count is above zero but below the minimum of %d; suppress the cell (leave it blank) or merge its group with a neighbouring one", r.MinCount))
			}
			if r.RoundTo > 0 && n%int64(r.RoundTo) != 0 {
				f.add(RuleRounding, where, fmt.Sprintf("the count is not a multiple of %d; round every count to the nearest multiple of %d after suppressing small cells", r.RoundTo, r.RoundTo))
			}
		}
	}
	return f.list()
}

// sdcSuppressed are the ways a suppressed frequency cell is commonly written (lower case).
var sdcSuppressed = map[string]bool{"": true, "*": true, "-": true, "na": true, "n/a": true, "nan": true, "null": true,
	"[redacted]": true, "redacted": true, "suppressed": true, "c": true, "x": true}

// sdcCount reads a frequency cell: a suppressed marker, or a non-negative whole number.
func sdcCount(s string) (n int64, suppressed, ok bool) {
	s = strings.TrimSpace(s)
	if sdcSuppressed[strings.ToLower(s)] {
		return 0, true, true
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, false, n >= 0
	}
	// Counts written through a float column ("12.0"); 2^53 keeps the conversion exact.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1<<53 || f != math.Trunc(f) {
		return 0, false, false
	}
	return int64(f), false, true
}

// CheckMagnitude checks the cells of a magnitude table (sums, means) from the contributions
// the daemon recomputed. Contributions are taken as absolute values, one of the treatments
// the handbook discusses for negative and mixed-sign magnitudes (losses, refunds): a unit's
// size, not its sign, is what the rules protect. A cell with no contributors passes.
//
//   - not_a_magnitude: a contribution is NaN or infinite; the cell cannot be checked.
//   - min_count: fewer than MinCount contributors (ACRO's threshold rule).
//   - dominance_p: with x1 >= x2 >= ... the cell fails if x3 + ... + xn < p/100 × x1: the
//     second largest contributor could estimate the largest to within p% (Hundepool et al.
//     ch. 4; ACRO's p-ratio test).
//   - dominance_nk: the DominanceN largest contributions exceed DominanceK% of the cell total
//     (Hundepool et al. ch. 4; ACRO's nk test).
//
// A cell's Where is its key label, or its position when the key is empty. At most 20 cell
// findings are listed, then one more_findings finding counts the rest.
func CheckMagnitude(name string, cells []MagnitudeCell, r SDCRules) []Finding {
	f := sdcFindings{output: name}
	for i, c := range cells {
		where := fmt.Sprintf("cell %q", c.Key)
		if c.Key == "" {
			where = fmt.Sprintf("cell %d", i+1)
		}
		if len(c.Contributions) == 0 {
			continue
		}
		xs, ok := sdcSizes(c.Contributions)
		if !ok {
			f.add(RuleNotMagnitude, where, "a contribution to this cell is not a finite number, so the cell could not be checked; fix the computation or drop the cell")
			continue
		}
		if r.MinCount > 0 && len(xs) < r.MinCount {
			f.add(RuleMinCount, where, fmt.Sprintf("the cell has fewer than %d contributors; suppress it or merge its group with a neighbouring one", r.MinCount))
		}
		if r.DominanceP > 0 && sdcFailsP(xs, r.DominanceP) {
			f.add(RuleDominanceP, where, fmt.Sprintf("the contributors other than the two largest add up to less than %s%% of the largest (p%% rule), so the second largest could estimate the largest closely; suppress the cell or merge its group", policy.FormatFloat(r.DominanceP)))
		}
		if r.DominanceN > 0 && r.DominanceK > 0 && sdcFailsNK(xs, r.DominanceN, r.DominanceK) {
			f.add(RuleDominanceNK, where, fmt.Sprintf("the %d largest contributors make up more than %s%% of the cell total ((n,k) rule); suppress the cell or merge its group", r.DominanceN, policy.FormatFloat(r.DominanceK)))
		}
	}
	return f.list()
}

// sdcSizes returns the absolute contributions, largest first, or false if one is not finite.
func sdcSizes(contributions []float64) ([]float64, bool) {
	xs := make([]float64, len(contributions))
	for i, x := range contributions {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false
		}
		xs[i] = math.Abs(x)
	}
	slices.SortFunc(xs, func(a, b float64) int { return cmp.Compare(b, a) })
	return xs, true
}

// sdcSum adds xs (sorted largest first) from the smallest up, so small values are not lost
// next to large ones.
func sdcSum(xs []float64) float64 {
	s := 0.0
	for i := len(xs) - 1; i >= 0; i-- {
		s += xs[i]
	}
	return s
}

// sdcFailsP is the p% rule on sizes sorted largest first. The remainder is summed directly,
// not as total-x1-x2, which would cancel badly when x1 dominates.
func sdcFailsP(xs []float64, p float64) bool {
	if len(xs) == 0 || xs[0] == 0 {
		return false
	}
	rest := 0.0
	if len(xs) > 2 {
		rest = sdcSum(xs[2:])
	}
	return rest < p/100*xs[0]
}

// sdcFailsNK is the (n,k) rule on sizes sorted largest first.
func sdcFailsNK(xs []float64, n int, k float64) bool {
	total := sdcSum(xs)
	if total == 0 {
		return false
	}
	return sdcSum(xs[:min(n, len(xs))]) > k/100*total
}

// CheckRegression checks a regression's summary (ACRO's rule for analytical outputs): its
// residual degrees of freedom, nObs - nParams, must be at least MinResidualDF, or the fitted
// model comes too close to describing the few people it was fitted on.
//
//   - not_a_regression: nObs or nParams is not positive.
//   - residual_df: nObs - nParams < MinResidualDF.
func CheckRegression(name string, nObs, nParams int, r SDCRules) []Finding {
	if nObs <= 0 || nParams <= 0 {
		return []Finding{{Output: name, Rule: RuleNotRegression,
			Message: "the regression summary needs a positive number of observations and of parameters; declare both in the manifest"}}
	}
	if df := nObs - nParams; df < r.MinResidualDF {
		return []Finding{{Output: name, Rule: RuleResidualDF,
			Message: fmt.Sprintf("the model has %d residual degrees of freedom (observations minus parameters), fewer than the minimum of %d; fit fewer parameters or use more observations", df, r.MinResidualDF)}}
	}
	return nil
}

// CheckRowLevel looks for an output that carries row-level data rather than aggregates,
// given the job's input tables (or any of them) and inputRows, the number of rows of the
// job's input (0 if unknown).
//
//   - row_count: the output has exactly as many rows as an input table, or as inputRows.
//   - copied_column: a column of the output repeats a column of an input, either row for
//     row (the same value at the same row index in at least 95% of the rows compared; at
//     least 10 rows compared, unless the output is shorter) or as a shuffled copy (the output
//     has at least 10 rows and the two columns hold the same multiset of values, up to 5% of
//     the longer one). One finding per output column, naming the first input column it
//     matches.
//
// Values are compared after trimming spaces, and numerically when both parse as numbers, so
// "1" equals "1.0". An output column holding a single value is skipped: it carries nothing
// about any one row. Each column pair costs O(n) after each column is sorted once.
//
// These rules catch plain copies. A sample of rows, rounded or perturbed values, or a column
// derived from several are left to the reviewer.
func CheckRowLevel(out SDCTable, inputs []SDCTable, inputRows int64) []Finding {
	var fs []Finding
	if f, ok := sdcRowCount(out, inputs, inputRows); ok {
		fs = append(fs, f)
	}
	ins := make([][]sdcColumn, len(inputs))
	for k, in := range inputs {
		ins[k] = sdcColumns(in)
	}
	for j, o := range sdcColumns(out) {
		if len(o.keys) == 0 || o.sorted[0] == o.sorted[len(o.sorted)-1] {
			continue
		}
		if f, ok := sdcCopied(out, j, o, inputs, ins); ok {
			fs = append(fs, f)
		}
	}
	return fs
}

func sdcRowCount(out SDCTable, inputs []SDCTable, inputRows int64) (Finding, bool) {
	n := len(out.Rows)
	if n == 0 {
		return Finding{}, false
	}
	f := Finding{Output: out.Name, Rule: RuleRowCount, Where: "rows"}
	if int64(n) == inputRows {
		f.Message = "the output has exactly as many rows as the job's input, so it looks like one row per record; release aggregates instead"
		return f, true
	}
	for _, in := range inputs {
		if len(in.Rows) == n {
			f.Message = fmt.Sprintf("the output has exactly as many rows as input %q, so it looks like one row per record; release aggregates instead", in.Name)
			return f, true
		}
	}
	return Finding{}, false
}

// sdcColumn is one column's values as comparison keys, in row order and sorted.
type sdcColumn struct {
	keys, sorted []string
}

func sdcColumns(t SDCTable) []sdcColumn {
	width := len(t.Columns)
	for _, row := range t.Rows {
		width = max(width, len(row))
	}
	cols := make([]sdcColumn, width)
	for j := range cols {
		keys := make([]string, len(t.Rows))
		for i, row := range t.Rows {
			keys[i] = sdcKey(sdcCell(row, j))
		}
		cols[j] = sdcColumn{keys: keys, sorted: slices.Sorted(slices.Values(keys))}
	}
	return cols
}

// sdcKey is the value a cell is compared by: a number by its float64 bits, so "1", "1.0" and
// "1e0" are one key; text as it is. The prefixes keep the two apart. Keys are only compared
// for equality, so their order does not matter.
func sdcKey(s string) string {
	s = strings.TrimSpace(s)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return "s" + s
	}
	if f == 0 {
		f = 0 // -0 equals 0
	}
	var b [9]byte
	b[0] = 'n'
	binary.BigEndian.PutUint64(b[1:], math.Float64bits(f))
	return string(b[:])
}

// sdcCopied reports the first input column that output column j repeats.
func sdcCopied(out SDCTable, j int, o sdcColumn, inputs []SDCTable, ins [][]sdcColumn) (Finding, bool) {
	for k, cols := range ins {
		for c, in := range cols {
			how := ""
			switch {
			case sdcSameOrder(o.keys, in.keys):
				how = "row for row"
			case sdcSameValues(o.sorted, in.sorted):
				how = "in another order"
			default:
				continue
			}
			return Finding{Output: out.Name, Rule: RuleCopiedColumn, Where: "column " + sdcColumnName(out, j),
				Message: fmt.Sprintf("the column repeats column %s of input %q %s, so the output carries row-level data; release aggregates instead or drop the column",
					sdcColumnName(inputs[k], c), inputs[k].Name, how)}, true
		}
	}
	return Finding{}, false
}

// sdcSameOrder: the same key at the same row index in at least 95% of the rows compared.
// It stops at the first mismatch too many, so unrelated columns cost little.
func sdcSameOrder(o, in []string) bool {
	m := min(len(o), len(in))
	if m == 0 || (m < len(o) && m < sdcMinCopyRows) {
		return false
	}
	allowed := m - sdcShare(m)
	for i := range m {
		if o[i] != in[i] {
			if allowed--; allowed < 0 {
				return false
			}
		}
	}
	return true
}

// sdcSameValues: sorted key lists sharing at least 95% of the longer one's values, counted
// with multiplicity by one merge, which stops once too many values are left unmatched.
func sdcSameValues(o, in []string) bool {
	if len(o) < sdcMinCopyRows {
		return false
	}
	need := sdcShare(max(len(o), len(in)))
	if min(len(o), len(in)) < need {
		return false
	}
	// Each side may leave at most its length minus need values unmatched.
	missO, missIn, common := len(o)-need, len(in)-need, 0
	for i, k := 0, 0; i < len(o) && k < len(in); {
		switch strings.Compare(o[i], in[k]) {
		case 0:
			i++
			k++
			common++
		case -1:
			i++
			missO--
		default:
			k++
			missIn--
		}
		if missO < 0 || missIn < 0 {
			return false
		}
	}
	return common >= need
}

// sdcShare is the number of values, of n, that must match to call a column a copy.
func sdcShare(n int) int {
	return (n*sdcCopyMatchPercent + 99) / 100
}

func sdcColumnName(t SDCTable, j int) string {
	if j < len(t.Columns) && t.Columns[j] != "" {
		return strconv.Quote(t.Columns[j])
	}
	return strconv.Itoa(j + 1)
}

func sdcCell(row []string, j int) string {
	if j < len(row) {
		return row[j]
	}
	return ""
}

// sdcFindings collects one output's cell findings: the first 20 in full, then counts by rule.
type sdcFindings struct {
	output string
	listed []Finding
	more   map[string]int
	rules  []string // the rules of the unlisted findings, in order of first appearance
}

func (f *sdcFindings) add(rule, where, message string) {
	if len(f.listed) < sdcMaxCellFindings {
		f.listed = append(f.listed, Finding{Output: f.output, Rule: rule, Where: where, Message: message})
		return
	}
	if f.more == nil {
		f.more = map[string]int{}
	}
	if f.more[rule] == 0 {
		f.rules = append(f.rules, rule)
	}
	f.more[rule]++
}

func (f *sdcFindings) list() []Finding {
	if len(f.rules) == 0 {
		return f.listed
	}
	total := 0
	parts := make([]string, len(f.rules))
	for i, rule := range f.rules {
		total += f.more[rule]
		parts[i] = fmt.Sprintf("%s: %d", rule, f.more[rule])
	}
	return append(f.listed, Finding{Output: f.output, Rule: RuleMoreFindings,
		Message: fmt.Sprintf("%d further findings are not listed (%s); the same fixes apply to them", total, strings.Join(parts, ", "))})
}
