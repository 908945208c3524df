// Synthetic twins (仿真数据).
//
// A synthetic twin is a dataset with the real schema whose rows are drawn from
// differentially private marginals of the real data: every column's 1-way distribution and
// the 2-way distributions of the column pairs the provider declares. It is meant for
// development (writing and testing queries against something shaped like the data), not for
// analysis: only the declared marginals are preserved, every other relationship is lost. A
// twin is an export like any other: it goes through review before it leaves the sandbox.
//
// NoisyMarginals is the only step that sees private data: exact per-cell counts that the
// engine computed in SQL, already bounded to one row per person, so that each person adds 1
// to exactly one cell of each marginal. It adds Laplace noise from the library (through
// Count) to every cell of every public domain. Synthesize and everything after it are
// post-processing of those noisy marginals: they touch no private data and cost no budget.
//
// What this file must never do: read data itself (no I/O, no SQL: counts are passed in);
// add noise from anything but the library; sample rows from exact counts (Synthesize must
// only ever be given the output of NoisyMarginals); return an exact count in an error.
//
// The one exception to "this package draws no randomness of its own" is Synthesize's
// sampler, a math/rand/v2 PCG seeded by the caller. That is safe because it only chooses
// among categories in proportion to already released noisy counts: whatever it outputs is
// a function of a differentially private release and of a seed that is independent of the
// data, so by the post-processing property it is exactly as private as the marginals,
// whether or not the seed is known. Being seeded makes a twin reproducible for review. It
// is never used for noise.

package dp

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// KeySep joins the categories of a cell key.
const KeySep = "\x1f"

// MaxMarginalCells bounds the cells of one marginal: beyond it the per-cell noise swamps
// the counts of any realistic dataset, and the table becomes costly to hold.
const MaxMarginalCells = 10000

// MaxSynthRows bounds the rows Synthesize makes in one call.
const MaxSynthRows = 10_000_000

// CellKey is the key of the cell with these categories, one per column of a marginal.
func CellKey(categories ...string) string { return strings.Join(categories, KeySep) }

// Marginal is a 1-way or 2-way contingency table over public category domains.
type Marginal struct {
	Columns []string // 1 or 2 column names
	// Domains holds the public categories of each column, in order (numeric columns come
	// binned by the caller, with bin labels such as "[10, 20)").
	Domains [][]string
	// Counts by cell key (CellKey of one category per column); absent cells are 0. Exact
	// counts are whole numbers; noisy ones hold every cell of the domain.
	Counts map[string]float64
}

// MarginalReport says how one marginal was released.
type MarginalReport struct {
	Columns   []string `json:"columns"`
	Epsilon   float64  `json:"epsilon"`
	Mechanism string   `json:"mechanism"`
	Scale     float64  `json:"scale"` // Laplace b of every cell
	Cells     int      `json:"cells"`
}

// SynthReport says how a set of marginals was released.
type SynthReport struct {
	Epsilon   float64          `json:"epsilon"` // total, split evenly over the marginals
	Marginals []MarginalReport `json:"marginals"`
}

// check returns the number of cells of the marginal's domain, or an error for a malformed
// marginal.
func (m Marginal) check() (int, error) {
	if len(m.Columns) < 1 || len(m.Columns) > 2 {
		return 0, fmt.Errorf("synthetic data: a marginal has %d columns, want 1 or 2", len(m.Columns))
	}
	if len(m.Domains) != len(m.Columns) {
		return 0, fmt.Errorf("synthetic data: marginal %v has %d domains for %d columns", m.Columns, len(m.Domains), len(m.Columns))
	}
	if len(m.Columns) == 2 && m.Columns[0] == m.Columns[1] {
		return 0, fmt.Errorf("synthetic data: marginal %v pairs a column with itself", m.Columns)
	}
	cells := 1
	for i, d := range m.Domains {
		if m.Columns[i] == "" {
			return 0, errors.New("synthetic data: a marginal has an empty column name")
		}
		if len(d) == 0 {
			return 0, fmt.Errorf("synthetic data: column %q of marginal %v has an empty domain: declare its categories", m.Columns[i], m.Columns)
		}
		if len(d) > MaxMarginalCells {
			return 0, fmt.Errorf("synthetic data: column %q has %d categories, more than %d", m.Columns[i], len(d), MaxMarginalCells)
		}
		seen := make(map[string]bool, len(d))
		for _, c := range d {
			if strings.Contains(c, KeySep) {
				return 0, fmt.Errorf("synthetic data: a category of column %q contains the key separator \\x1f", m.Columns[i])
			}
			if seen[c] {
				return 0, fmt.Errorf("synthetic data: column %q lists category %q twice", m.Columns[i], c)
			}
			seen[c] = true
		}
		cells *= len(d)
	}
	if cells > MaxMarginalCells {
		return 0, fmt.Errorf("synthetic data: marginal %v has %d cells, more than %d: bin the columns more coarsely or drop the pair", m.Columns, cells, MaxMarginalCells)
	}
	return cells, nil
}

// dense returns the counts in domain order (row-major for a pair). Counts must be finite
// and non-negative, whole numbers if whole is set, and keyed by cells of the domain. Errors
// name no count and no key: a key outside the public domain is itself private.
func (m Marginal) dense(whole bool) ([]float64, error) {
	cells, err := m.check()
	if err != nil {
		return nil, err
	}
	index := make(map[string]int, cells)
	out := make([]float64, cells)
	if len(m.Domains) == 1 {
		for i, c := range m.Domains[0] {
			index[c] = i
		}
	} else {
		k := len(m.Domains[1])
		for i, a := range m.Domains[0] {
			for j, b := range m.Domains[1] {
				index[CellKey(a, b)] = i*k + j
			}
		}
	}
	for key, v := range m.Counts {
		i, ok := index[key]
		if !ok {
			return nil, fmt.Errorf("synthetic data: marginal %v has a count for a cell outside its declared domains", m.Columns)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || (whole && v != math.Trunc(v)) || v > 1e15 {
			return nil, fmt.Errorf("synthetic data: marginal %v has a count that is not a non-negative whole number", m.Columns)
		}
		out[i] = v
	}
	return out, nil
}

func (m Marginal) name() string { return strings.Join(m.Columns, KeySep) }

// NoisyMarginals releases the marginals with total budget epsilon (and delta 0), split
// evenly: each gets epsilon/len(ms). Every person is in exactly one cell of each marginal,
// so under add/remove-one a marginal has L1 sensitivity 1 (l0 = 1, lInf = 1) and each of its
// cells gets independent Laplace noise of scale b = len(ms)/epsilon from the library,
// including empty cells, since the domains are public. Results are clamped at 0. By
// sequential composition the whole release costs epsilon.
//
// Every marginal must count the same persons (the same total): a marginal that counts a
// person twice would break the sensitivity, and one that drops persons (say, NULLs) should
// give them a category instead.
func NoisyMarginals(ms []Marginal, epsilon float64) ([]Marginal, SynthReport, error) {
	if len(ms) == 0 {
		return nil, SynthReport{}, errors.New("synthetic data: no marginals to release")
	}
	if math.IsNaN(epsilon) || math.IsInf(epsilon, 0) || epsilon <= 0 {
		return nil, SynthReport{}, fmt.Errorf("%w: synthetic data needs a positive, finite epsilon", ErrAmount)
	}
	eps := epsilon / float64(len(ms))
	seen := map[string]bool{}
	exact := make([][]float64, len(ms))
	for i, m := range ms {
		d, err := m.dense(true)
		if err != nil {
			return nil, SynthReport{}, err
		}
		if seen[m.name()] {
			return nil, SynthReport{}, fmt.Errorf("synthetic data: marginal %v is declared twice", m.Columns)
		}
		seen[m.name()] = true
		exact[i] = d
	}
	total := synthSum(exact[0])
	for _, d := range exact[1:] {
		if synthSum(d) != total {
			return nil, SynthReport{}, errors.New("synthetic data: the marginals count different numbers of persons: each person must be in exactly one cell of every marginal")
		}
	}
	rep := SynthReport{Epsilon: epsilon}
	out := make([]Marginal, len(ms))
	for i, m := range ms {
		counts := make(map[string]float64, len(exact[i]))
		var scale float64
		for j, c := range exact[i] {
			r, err := Count(int64(c), 1, 1, eps, 0, Laplace)
			if err != nil {
				return nil, SynthReport{}, fmt.Errorf("synthetic data: marginal %v: %w", m.Columns, err)
			}
			counts[m.key(j)] = r.Value // Count clamps at 0
			scale = r.Scale
		}
		out[i] = Marginal{Columns: slices.Clone(m.Columns), Domains: synthCloneDomains(m.Domains), Counts: counts}
		rep.Marginals = append(rep.Marginals, MarginalReport{Columns: slices.Clone(m.Columns), Epsilon: eps,
			Mechanism: string(Laplace), Scale: scale, Cells: len(exact[i])})
	}
	return out, rep, nil
}

// key is the cell key of dense index j.
func (m Marginal) key(j int) string {
	if len(m.Domains) == 1 {
		return m.Domains[0][j]
	}
	k := len(m.Domains[1])
	return CellKey(m.Domains[0][j/k], m.Domains[1][j%k])
}

func synthCloneDomains(d [][]string) [][]string {
	out := make([][]string, len(d))
	for i := range d {
		out[i] = slices.Clone(d[i])
	}
	return out
}

func synthSum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}

// synthPairTable is a noisy 2-way marginal as a normalised dense table, with the columns'
// positions in the output.
type synthPairTable struct {
	a, b  int       // output column indexes
	k     int       // categories of b
	joint []float64 // cumulative over all cells, row-major
	rows  [][]float64
	cols  [][]float64 // cumulative slices: rows[i] over b given a = i, cols[j] over a given b = j
}

// Synthesize draws rows synthetic rows, each with one category per column in columns order,
// from noisy marginals (the output of NoisyMarginals, never exact counts):
//   - every 2-way marginal, in the given order, draws its pair jointly from its table; if
//     one of its columns was already drawn by an earlier pair, it draws the other from the
//     table's slice at that value, or, if that slice is all zero, from the other column's
//     1-way marginal; if both were drawn, it adds nothing;
//   - every column in no pair is drawn independently from its 1-way marginal.
//
// Before sampling, each pair table is raked (iterative proportional fitting) so that its
// row and column sums match the 1-way marginals of its columns where those are given: a
// column then has the same distribution whether it is drawn from a pair or alone, and the
// 1-way marginals, with far fewer cells for the same noise, fix the totals. Raking keeps
// the table's odds ratios, that is its correlation. A distribution that is all zero is
// sampled uniformly over its domain.
//
// Every column needs a 1-way marginal or a pair; every marginal must be over columns in
// columns. The draw is a deterministic function of the marginals and seed (see the file
// comment for why a seeded PRNG is safe here).
func Synthesize(noisy []Marginal, columns []string, rows int, seed uint64) ([][]string, error) {
	if rows < 0 || rows > MaxSynthRows {
		return nil, fmt.Errorf("synthetic data: %d rows requested, want 0 to %d", rows, MaxSynthRows)
	}
	pos := make(map[string]int, len(columns))
	for i, c := range columns {
		if _, dup := pos[c]; dup {
			return nil, fmt.Errorf("synthetic data: column %q is listed twice", c)
		}
		pos[c] = i
	}
	domains := make([][]string, len(columns))
	one := make([][]float64, len(columns)) // normalised noisy 1-way marginals
	var pairs []Marginal
	var pairCounts [][]float64
	seen := map[string]bool{}
	for _, m := range noisy {
		d, err := m.dense(false)
		if err != nil {
			return nil, err
		}
		if seen[m.name()] {
			return nil, fmt.Errorf("synthetic data: marginal %v is given twice", m.Columns)
		}
		seen[m.name()] = true
		for i, c := range m.Columns {
			p, ok := pos[c]
			if !ok {
				return nil, fmt.Errorf("synthetic data: marginal %v is over column %q, which is not among the columns", m.Columns, c)
			}
			if domains[p] != nil && !slices.Equal(domains[p], m.Domains[i]) {
				return nil, fmt.Errorf("synthetic data: column %q has different domains in different marginals", c)
			}
			domains[p] = m.Domains[i]
		}
		if len(m.Columns) == 1 {
			one[pos[m.Columns[0]]] = synthNormalise(d)
		} else {
			pairs = append(pairs, m)
			pairCounts = append(pairCounts, d)
		}
	}
	for i, c := range columns {
		if domains[i] == nil {
			return nil, fmt.Errorf("synthetic data: column %q has no marginal", c)
		}
	}

	tables := make([]synthPairTable, len(pairs))
	for t, m := range pairs {
		a, b := pos[m.Columns[0]], pos[m.Columns[1]]
		ka, kb := len(m.Domains[0]), len(m.Domains[1])
		p := synthRake(synthNormalise(pairCounts[t]), ka, kb, one[a], one[b])
		pt := synthPairTable{a: a, b: b, k: kb, joint: synthCumulative(p), rows: make([][]float64, ka), cols: make([][]float64, kb)}
		col := make([]float64, ka)
		for i := range ka {
			pt.rows[i] = synthCumulative(p[i*kb : (i+1)*kb])
		}
		for j := range kb {
			for i := range ka {
				col[i] = p[i*kb+j]
			}
			pt.cols[j] = synthCumulative(col)
		}
		tables[t] = pt
		// A column with no 1-way marginal falls back on the pair's.
		if one[a] == nil {
			one[a] = synthRowSums(p, ka, kb)
		}
		if one[b] == nil {
			one[b] = synthColSums(p, ka, kb)
		}
	}
	oneCum := make([][]float64, len(columns))
	for i := range columns {
		oneCum[i] = synthCumulative(one[i])
	}

	rng := rand.New(rand.NewPCG(seed, 0x7665696c2d73796e)) // "veil-syn": a fixed stream
	out := make([][]string, rows)
	drawn := make([]int, len(columns))
	for r := range out {
		for i := range drawn {
			drawn[i] = -1
		}
		for _, pt := range tables {
			switch {
			case drawn[pt.a] < 0 && drawn[pt.b] < 0:
				c := synthDraw(rng, pt.joint)
				drawn[pt.a], drawn[pt.b] = c/pt.k, c%pt.k
			case drawn[pt.b] < 0:
				drawn[pt.b] = synthDrawOr(rng, pt.rows[drawn[pt.a]], oneCum[pt.b])
			case drawn[pt.a] < 0:
				drawn[pt.a] = synthDrawOr(rng, pt.cols[drawn[pt.b]], oneCum[pt.a])
			}
		}
		row := make([]string, len(columns))
		for i := range columns {
			if drawn[i] < 0 {
				drawn[i] = synthDraw(rng, oneCum[i])
			}
			row[i] = domains[i][drawn[i]]
		}
		out[r] = row
	}
	return out, nil
}

// synthNormalise scales xs to sum 1; all zeros stay zeros.
func synthNormalise(xs []float64) []float64 {
	s := synthSum(xs)
	out := make([]float64, len(xs))
	if s > 0 {
		for i, x := range xs {
			out[i] = x / s
		}
	}
	return out
}

// synthRake fits the ka×kb table p (sum 1) to row sums ra and column sums cb (either may be nil:
// not fitted) by iterative proportional fitting. Rows or columns of p that are all zero
// stay zero, so the fit may be inexact where the noisy table has no mass at all.
func synthRake(p []float64, ka, kb int, ra, cb []float64) []float64 {
	if synthSum(p) == 0 || (ra == nil && cb == nil) {
		return p
	}
	if ra != nil && synthSum(ra) == 0 {
		ra = nil
	}
	if cb != nil && synthSum(cb) == 0 {
		cb = nil
	}
	for range 50 {
		worst := 0.0
		if ra != nil {
			s := synthRowSums(p, ka, kb)
			for i := range ka {
				worst = math.Max(worst, math.Abs(s[i]-ra[i]))
				if s[i] > 0 {
					f := ra[i] / s[i]
					for j := range kb {
						p[i*kb+j] *= f
					}
				}
			}
		}
		if cb != nil {
			s := synthColSums(p, ka, kb)
			for j := range kb {
				worst = math.Max(worst, math.Abs(s[j]-cb[j]))
				if s[j] > 0 {
					f := cb[j] / s[j]
					for i := range ka {
						p[i*kb+j] *= f
					}
				}
			}
		}
		if worst < 1e-9 {
			break
		}
	}
	return p
}

func synthRowSums(p []float64, ka, kb int) []float64 {
	s := make([]float64, ka)
	for i := range ka {
		s[i] = synthSum(p[i*kb : (i+1)*kb])
	}
	return s
}

func synthColSums(p []float64, ka, kb int) []float64 {
	s := make([]float64, kb)
	for i := range ka {
		for j := range kb {
			s[j] += p[i*kb+j]
		}
	}
	return s
}

// synthCumulative returns the running sums of w.
func synthCumulative(w []float64) []float64 {
	c := make([]float64, len(w))
	s := 0.0
	for i, x := range w {
		s += x
		c[i] = s
	}
	return c
}

// synthDraw picks index i with probability proportional to the weight cum[i]-cum[i-1], or
// uniformly if all weights are zero.
func synthDraw(rng *rand.Rand, cum []float64) int {
	total := cum[len(cum)-1]
	if total <= 0 {
		return rng.IntN(len(cum))
	}
	u := rng.Float64() * total
	i, _ := slices.BinarySearchFunc(cum, u, func(c, u float64) int {
		if c <= u {
			return -1
		}
		return 1
	})
	return min(i, len(cum)-1)
}

// synthDrawOr draws from cum, or from fallback if cum is all zero.
func synthDrawOr(rng *rand.Rand, cum, fallback []float64) int {
	if cum[len(cum)-1] <= 0 {
		return synthDraw(rng, fallback)
	}
	return synthDraw(rng, cum)
}

// L1Distance is the L1 distance between the distributions p and q normalise to (each
// divided by its sum), over the union of their keys: 0 for equal distributions, 2 for
// disjoint ones. An empty or all-zero argument is at distance 2 from anything else, 0 from
// another such.
func L1Distance(p, q map[string]float64) float64 {
	sp, sq := 0.0, 0.0
	for _, v := range p {
		sp += v
	}
	for _, v := range q {
		sq += v
	}
	switch {
	case sp <= 0 && sq <= 0:
		return 0
	case sp <= 0 || sq <= 0:
		return 2
	}
	d := 0.0
	for k, v := range p {
		d += math.Abs(v/sp - q[k]/sq)
	}
	for k, v := range q {
		if _, ok := p[k]; !ok {
			d += v / sq
		}
	}
	return d
}

// ExpectedL1Error bounds the expected L1 distance between a column's (or pair's) real
// distribution over cells categories and its distribution in rows synthetic rows drawn
// from its noisy marginal, released with Laplace scale b per cell, for n persons (the noisy
// total will do):
//
//	2·cells·b/n + sqrt(cells/rows)
//
// Noise: each noisy count is off by at most |Z_i| (clamping at 0 only moves it towards the
// exact count, which is ≥ 0), so the normalised distribution is off by at most
// Σ|Z_i|/n for the counts plus as much again for the total, and E|Z_i| = b. Sampling: a
// multinomial of rows draws is off by Σ sqrt(p_i(1-p_i)/rows) ≤ sqrt(cells/rows) in
// expectation (Cauchy–Schwarz). A marginal that is sampled jointly with others, or raked,
// is not covered exactly, but the bound is loose enough in practice.
func ExpectedL1Error(cells int, b, n float64, rows int) float64 {
	e := 0.0
	if n > 0 {
		e += 2 * float64(cells) * b / n
	} else {
		e += 2
	}
	if rows > 0 {
		e += math.Sqrt(float64(cells) / float64(rows))
	}
	return e
}
