package dp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// synthPeople is a generated "real" table: one row per person with the quasi-identifiers
// age band (10), sex (2), district (12) and occupation (15). Occupation depends strongly on
// district (the declared pair) and, less so, on age (a correlation no marginal declares).
type synthPeople struct {
	cols    []string
	domains [][]string
	rows    [][]string
}

func synthRealTable(n int) synthPeople {
	label := func(prefix string, k int) []string {
		out := make([]string, k)
		for i := range out {
			out[i] = fmt.Sprintf("%s%02d", prefix, i)
		}
		return out
	}
	ages := make([]string, 10)
	for i := range ages {
		ages[i] = fmt.Sprintf("[%d, %d)", 10*i, 10*i+10)
	}
	p := synthPeople{
		cols:    []string{"age", "sex", "district", "occupation"},
		domains: [][]string{ages, {"F", "M"}, label("d", 12), label("o", 15)},
	}
	rng := rand.New(rand.NewPCG(1, 2)) // test data only
	pick := func(w []float64) int {
		u := rng.Float64() * synthSum(w)
		for i, x := range w {
			if u < x {
				return i
			}
			u -= x
		}
		return len(w) - 1
	}
	ageW := []float64{8, 12, 15, 16, 14, 12, 10, 7, 4, 2}
	distW := []float64{20, 15, 12, 10, 9, 8, 7, 6, 5, 4, 2, 2}
	for range n {
		a, s, d := pick(ageW), rng.IntN(2), pick(distW)
		var o int
		switch {
		case a <= 1 && rng.Float64() < 0.5:
			o = 0 // students
		case rng.Float64() < 0.75:
			o = (d + 1 + rng.IntN(3)) % 15 // the district's three main occupations
		default:
			o = rng.IntN(15)
		}
		p.rows = append(p.rows, []string{p.domains[0][a], p.domains[1][s], p.domains[2][d], p.domains[3][o]})
	}
	return p
}

// exactMarginal counts the rows of data by the given columns, as the engine would in SQL.
func synthExact(p synthPeople, cols ...int) Marginal {
	m := Marginal{Counts: map[string]float64{}}
	for _, c := range cols {
		m.Columns = append(m.Columns, p.cols[c])
		m.Domains = append(m.Domains, p.domains[c])
	}
	for _, r := range p.rows {
		var key []string
		for _, c := range cols {
			key = append(key, r[c])
		}
		m.Counts[CellKey(key...)]++
	}
	return m
}

// synthDist is the distribution of rows over the given columns, as counts by cell key.
func synthDist(rows [][]string, cols ...int) map[string]float64 {
	d := map[string]float64{}
	for _, r := range rows {
		var key []string
		for _, c := range cols {
			key = append(key, r[c])
		}
		d[CellKey(key...)]++
	}
	return d
}

// synthMarginals are the marginals of the twin: each column, and district × occupation.
func synthMarginals(p synthPeople) []Marginal {
	return []Marginal{synthExact(p, 0), synthExact(p, 1), synthExact(p, 2), synthExact(p, 3), synthExact(p, 2, 3)}
}

const synthN = 20000

// TestSynthMarginalsWithinDPError: every synthetic column's distribution is within three
// times the expected error (ExpectedL1Error: noise 2·k·b/n plus sampling sqrt(k/rows)) of
// the real one, at epsilon 1 and 0.1; so is the declared pair at epsilon 1.
func TestSynthMarginalsWithinDPError(t *testing.T) {
	real := synthRealTable(synthN)
	ms := synthMarginals(real)
	for _, eps := range []float64{1, 0.1} {
		noisy, rep, err := NoisyMarginals(ms, eps)
		if err != nil {
			t.Fatal(err)
		}
		b := rep.Marginals[0].Scale
		if want := float64(len(ms)) / eps; math.Abs(b-want) > 1e-9*want {
			t.Fatalf("epsilon %g: scale %g, want %d marginals / epsilon = %g", eps, b, len(ms), want)
		}
		const rows = 20000
		syn, err := Synthesize(noisy, real.cols, rows, 7)
		if err != nil {
			t.Fatal(err)
		}
		for c := range real.cols {
			k := len(real.domains[c])
			d := L1Distance(synthDist(real.rows, c), synthDist(syn, c))
			bound := 3 * ExpectedL1Error(k, b, synthN, rows)
			t.Logf("epsilon %g, %s: L1 %.4f, bound %.4f", eps, real.cols[c], d, bound)
			if d > bound {
				t.Errorf("epsilon %g: column %s is at L1 %.4f from the real one, above 3× the expected DP error %.4f", eps, real.cols[c], d, bound)
			}
		}
		d := L1Distance(synthDist(real.rows, 2, 3), synthDist(syn, 2, 3))
		bound := 3 * ExpectedL1Error(12*15, b, synthN, rows)
		t.Logf("epsilon %g, district × occupation: L1 %.4f, bound %.4f", eps, d, bound)
		if d > bound {
			t.Errorf("epsilon %g: district × occupation is at L1 %.4f from the real one, above %.4f", eps, d, bound)
		}
	}
}

// synthProduct is the product of the 1-way distributions of columns a and b of rows.
func synthProduct(rows [][]string, a, b int) map[string]float64 {
	pa, pb := synthDist(rows, a), synthDist(rows, b)
	out := map[string]float64{}
	for x, cx := range pa {
		for y, cy := range pb {
			out[CellKey(x, y)] = cx * cy
		}
	}
	return out
}

// TestSynthPairKeepsCorrelation: the declared pair's synthetic 2-way distribution is close
// to the real one, and much closer (at most a third of the distance) than the product of
// the real 1-way distributions, which is what a twin without the pair would give. The test
// has power: a twin without the pair marginal fails it.
func TestSynthPairKeepsCorrelation(t *testing.T) {
	real := synthRealTable(synthN)
	ms := synthMarginals(real)
	noisy, _, err := NoisyMarginals(ms, 1)
	if err != nil {
		t.Fatal(err)
	}
	realPair := synthDist(real.rows, 2, 3)
	indep := L1Distance(realPair, synthProduct(real.rows, 2, 3))
	if indep < 0.8 {
		t.Fatalf("the generated pair is barely correlated (L1 to independence %.3f): the test would prove nothing", indep)
	}
	syn, err := Synthesize(noisy, real.cols, 20000, 11)
	if err != nil {
		t.Fatal(err)
	}
	d := L1Distance(realPair, synthDist(syn, 2, 3))
	t.Logf("district × occupation: synthetic L1 %.4f, independent product L1 %.4f", d, indep)
	if d > indep/3 {
		t.Errorf("the synthetic pair is at L1 %.4f from the real one, not well below the independent product's %.4f", d, indep)
	}
	// Without the pair marginal, the same check fails.
	noPair, err := Synthesize(noisy[:4], real.cols, 20000, 11)
	if err != nil {
		t.Fatal(err)
	}
	if d := L1Distance(realPair, synthDist(noPair, 2, 3)); d <= indep/3 {
		t.Errorf("a twin without the pair marginal passes the correlation check (L1 %.4f): the check has no power", d)
	}
	// Raking: the pair's columns keep their noisy 1-way distributions.
	for c, m := range map[int]Marginal{2: noisy[2], 3: noisy[3]} {
		if d := L1Distance(m.Counts, synthDist(syn, c)); d > 3*ExpectedL1Error(len(real.domains[c]), 0, 1, 20000) {
			t.Errorf("column %s drawn from the pair is at L1 %.4f from its noisy 1-way marginal", real.cols[c], d)
		}
	}
}

// synthModel is the distribution Synthesize draws the test table's rows from, given noisy
// marginals in synthMarginals order: age and sex independently, (district, occupation)
// from the pair table raked to the two 1-way marginals.
func synthModel(real synthPeople, noisy []Marginal) func(key string) float64 {
	var q [5][]float64
	for i, m := range noisy {
		d, err := m.dense(false)
		if err != nil {
			panic(err)
		}
		q[i] = synthNormalise(d)
	}
	pair := synthRake(q[4], 12, 15, q[2], q[3])
	index := make([]map[string]int, 4)
	for c, dom := range real.domains {
		index[c] = map[string]int{}
		for i, v := range dom {
			index[c][v] = i
		}
	}
	return func(key string) float64 {
		f := strings.Split(key, KeySep)
		return q[0][index[0][f[0]]] * q[1][index[1][f[1]]] * pair[index[2][f[2]]*15+index[3][f[3]]]
	}
}

// TestSynthNoMoreMatchesThanChance: synthetic rows reproduce real quasi-identifier tuples,
// and unique real persons' tuples, no more often than chance. Chance is a generator that
// knows the exact real marginals and nothing else, with the same structure as the twin:
// (district, occupation) from the real 2-way distribution, age and sex independently from
// the real 1-way ones; its match probability p is computed exactly. "No more often than
// chance" means: the synthetic match rate is at most p + 4 standard errors, where the
// standard error covers both sources of randomness of a twin, the sampling of rows
// (binomial, p(1-p)/rows) and the DP noise in the marginals (the mean squared deviation of the
// twin's own match probability from p over 200 independent noisy releases). Four rather than three standard
// errors because the noise comes from crypto/rand and cannot be seeded: at three, the three
// statistics below would fail about one run in 250 by chance alone.
//
// The statistics: rows matching any real tuple; rows matching a unique person's tuple; and
// rows matching a rare unique person, one whose tuple chance would draw less than once in
// the synthetic rows. The first and third have power: a generator that copies real rows
// fails them by far. (The second has none here: with 3,600 tuples for 20,000 persons most
// unique persons sit in tuples that chance finds typical, so copying hits them less often
// than chance does.)
//
// The test also checks the sampler alone: given the twin's own noisy marginals, its match
// rate is within 4 binomial standard errors of what those marginals imply, that is,
// Synthesize knows nothing about the real rows beyond the marginals it is given.
func TestSynthNoMoreMatchesThanChance(t *testing.T) {
	real := synthRealTable(synthN)
	ms := synthMarginals(real)
	noisy, _, err := NoisyMarginals(ms, 1)
	if err != nil {
		t.Fatal(err)
	}
	const rows = 20000
	syn, err := Synthesize(noisy, real.cols, rows, 3)
	if err != nil {
		t.Fatal(err)
	}
	tuples := synthDist(real.rows, 0, 1, 2, 3)
	age, sex, do := synthDist(real.rows, 0), synthDist(real.rows, 1), synthDist(real.rows, 2, 3)
	chance := func(key string) float64 {
		f := strings.Split(key, KeySep)
		return age[f[0]] / synthN * sex[f[1]] / synthN * do[CellKey(f[2], f[3])] / synthN
	}
	type stat struct {
		name    string
		keys    []string // the real tuples it counts
		p       float64  // chance a row matches
		members int      // real persons matched
	}
	stats := []*stat{{name: "a real tuple"}, {name: "a unique person"}, {name: "a rare unique person"}}
	for key, n := range tuples {
		for i, in := range []bool{true, n == 1, n == 1 && chance(key)*rows < 1} {
			if in {
				stats[i].keys = append(stats[i].keys, key)
				stats[i].p += chance(key)
				stats[i].members += int(n)
			}
		}
	}
	if stats[2].members < 30 {
		t.Fatalf("only %d rare unique persons in the generated data: the test would prove nothing", stats[2].members)
	}
	// The spread of the twin's match probability over independent releases.
	const releases = 200
	var mean, meanSq [3]float64
	for range releases {
		again, _, err := NoisyMarginals(ms, 1)
		if err != nil {
			t.Fatal(err)
		}
		q := synthModel(real, again)
		for i, s := range stats {
			x := 0.0
			for _, k := range s.keys {
				x += q(k)
			}
			mean[i] += x / releases
			meanSq[i] += x * x / releases
		}
	}
	model := synthModel(real, noisy)
	for i, s := range stats {
		in := map[string]bool{}
		own := 0.0
		for _, k := range s.keys {
			in[k] = true
			own += model(k)
		}
		hits := 0
		for _, r := range syn {
			if in[CellKey(r...)] {
				hits++
			}
		}
		f := float64(hits) / rows
		noiseVar := max(meanSq[i]-2*s.p*mean[i]+s.p*s.p, 0) // E[(x - p)²]: spread and any bias
		se := math.Sqrt(s.p*(1-s.p)/rows + noiseVar)
		limit := s.p + 4*se
		copying := float64(s.members) / synthN // the rate of a generator that copies real rows
		t.Logf("rows matching %s (%d persons): %.5f; chance %.5f, standard error %.5f (noise %.5f), limit %.5f; copying real rows %.5f",
			s.name, s.members, f, s.p, se, math.Sqrt(noiseVar), limit, copying)
		if f > limit {
			t.Errorf("%.5f of synthetic rows match %s, above chance %.5f + 4 standard errors = %.5f", f, s.name, s.p, limit)
		}
		if s.name != "a unique person" && copying < limit+3*se {
			t.Errorf("%s: copying real rows (%.5f) is not far above the limit %.5f: the check has no power", s.name, copying, limit)
		}
		if ownSE := math.Sqrt(own * (1 - own) / rows); f > own+4*ownSE {
			t.Errorf("%.5f of synthetic rows match %s, above the %.5f their own noisy marginals imply + 4 standard errors", f, s.name, own)
		}
	}
}

// TestNoisyMarginalsNoise: every cell of the domain gets noise, empty ones included, counts
// are never negative, and the report says how the budget was split.
func TestNoisyMarginalsNoise(t *testing.T) {
	ms := []Marginal{
		{Columns: []string{"x"}, Domains: [][]string{{"a", "b", "c"}}, Counts: map[string]float64{"a": 100, "b": 50}},
		{Columns: []string{"y", "x"}, Domains: [][]string{{"u", "v"}, {"a", "b", "c"}},
			Counts: map[string]float64{CellKey("u", "a"): 100, CellKey("v", "b"): 50}},
	}
	const eps = 0.5 // 0.25 each: b = 4
	emptyNonZero, fullMoved := 0, 0
	for range 50 {
		noisy, rep, err := NoisyMarginals(ms, eps)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rep.Marginals {
			if r.Epsilon != eps/2 || r.Scale != 2/eps || r.Mechanism != "laplace" || !slices.Equal(r.Columns, ms[i].Columns) {
				t.Fatalf("report %+v", r)
			}
		}
		if rep.Epsilon != eps || rep.Marginals[0].Cells != 3 || rep.Marginals[1].Cells != 6 {
			t.Fatalf("report %+v", rep)
		}
		for i, m := range noisy {
			if len(m.Counts) != rep.Marginals[i].Cells {
				t.Fatalf("marginal %v: %d cells released, want all %d", m.Columns, len(m.Counts), rep.Marginals[i].Cells)
			}
			for k, v := range m.Counts {
				if v < 0 || v != math.Trunc(v) {
					t.Fatalf("marginal %v cell %q released %v", m.Columns, k, v)
				}
			}
		}
		if noisy[0].Counts["c"] != 0 {
			emptyNonZero++
		}
		if noisy[1].Counts[CellKey("u", "c")] != 0 {
			emptyNonZero++
		}
		if noisy[0].Counts["a"] != 100 {
			fullMoved++
		}
	}
	// An empty cell stays 0 with probability P(round(Lap(4)) <= 0) ≈ 0.56: never above 0 in
	// 100 draws has probability below 1e-25.
	if emptyNonZero == 0 {
		t.Error("empty cells were never noised")
	}
	if fullMoved < 25 {
		t.Errorf("a count of 100 came out unchanged %d times in 50", 50-fullMoved)
	}
}

func TestNoisyMarginalsRefusesBadInput(t *testing.T) {
	one := func(counts map[string]float64, dom ...string) Marginal {
		return Marginal{Columns: []string{"x"}, Domains: [][]string{dom}, Counts: counts}
	}
	ok := one(map[string]float64{"a": 2}, "a", "b")
	big := make([]string, 101)
	for i := range big {
		big[i] = fmt.Sprint(i)
	}
	cases := []struct {
		name string
		ms   []Marginal
		eps  float64
		want string
	}{
		{"no marginals", nil, 1, "no marginals"},
		{"zero epsilon", []Marginal{ok}, 0, "positive"},
		{"NaN epsilon", []Marginal{ok}, math.NaN(), "positive"},
		{"empty domain", []Marginal{one(nil)}, 1, "empty domain"},
		{"too many cells", []Marginal{{Columns: []string{"x", "y"}, Domains: [][]string{big, big}}}, 1, "more than 10000"},
		{"three columns", []Marginal{{Columns: []string{"x", "y", "z"}, Domains: [][]string{{"a"}, {"a"}, {"a"}}}}, 1, "want 1 or 2"},
		{"no columns", []Marginal{{}}, 1, "want 1 or 2"},
		{"domains mismatch", []Marginal{{Columns: []string{"x", "y"}, Domains: [][]string{{"a"}}}}, 1, "1 domains for 2 columns"},
		{"self pair", []Marginal{{Columns: []string{"x", "x"}, Domains: [][]string{{"a"}, {"a"}}}}, 1, "with itself"},
		{"duplicate category", []Marginal{one(nil, "a", "a")}, 1, "twice"},
		{"separator in category", []Marginal{one(nil, "a\x1fb")}, 1, "separator"},
		{"negative count", []Marginal{one(map[string]float64{"a": -1}, "a")}, 1, "non-negative whole"},
		{"fractional count", []Marginal{one(map[string]float64{"a": 1.5}, "a")}, 1, "non-negative whole"},
		{"cell outside domain", []Marginal{one(map[string]float64{"secret": 1}, "a")}, 1, "outside its declared domains"},
		{"declared twice", []Marginal{ok, ok}, 1, "declared twice"},
		{"different totals", []Marginal{ok, {Columns: []string{"y"}, Domains: [][]string{{"a"}}, Counts: map[string]float64{"a": 3}}}, 1, "different numbers of persons"},
	}
	for _, c := range cases {
		_, _, err := NoisyMarginals(c.ms, c.eps)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error names a private key: %v", c.name, err)
		}
	}
}

func TestSynthesizeDeterministic(t *testing.T) {
	real := synthRealTable(2000)
	noisy, _, err := NoisyMarginals(synthMarginals(real), 1)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Synthesize(noisy, real.cols, 500, 42)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Synthesize(noisy, real.cols, 500, 42)
	c, _ := Synthesize(noisy, real.cols, 500, 43)
	eq := func(x, y [][]string) bool { return slices.EqualFunc(x, y, slices.Equal[[]string]) }
	if len(a) != 500 || len(a[0]) != 4 {
		t.Fatalf("got %d rows of %d columns", len(a), len(a[0]))
	}
	if !eq(a, b) {
		t.Error("the same marginals and seed gave different rows")
	}
	if eq(a, c) {
		t.Error("different seeds gave the same rows")
	}
	// Column order follows the columns argument.
	rev := []string{"occupation", "district", "sex", "age"}
	r, err := Synthesize(noisy, rev, 10, 42)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range r {
		if !strings.HasPrefix(row[0], "o") || !strings.HasPrefix(row[1], "d") || !strings.HasPrefix(row[3], "[") {
			t.Fatalf("row %q is not in the order %v", row, rev)
		}
	}
	for name, f := range map[string]func() error{
		"negative rows":       func() error { _, err := Synthesize(noisy, real.cols, -1, 1); return err },
		"column no marginal":  func() error { _, err := Synthesize(noisy, append(slices.Clone(real.cols), "income"), 1, 1); return err },
		"marginal not listed": func() error { _, err := Synthesize(noisy, real.cols[:3], 1, 1); return err },
		"column listed twice": func() error { _, err := Synthesize(noisy, append(slices.Clone(real.cols), "age"), 1, 1); return err },
		"negative noisy count": func() error {
			_, err := Synthesize([]Marginal{{Columns: []string{"x"}, Domains: [][]string{{"a"}}, Counts: map[string]float64{"a": -1}}}, []string{"x"}, 1, 1)
			return err
		},
	} {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSynthesizeChainsPairs: a column in two pairs links them (x = y from the first pair,
// z = y from the second), and an all-zero slice falls back on the 1-way marginal.
func TestSynthesizeChainsPairs(t *testing.T) {
	dom := []string{"p", "q", "r"}
	diag := func(a, b string, skip string) Marginal {
		m := Marginal{Columns: []string{a, b}, Domains: [][]string{dom, dom}, Counts: map[string]float64{}}
		for _, v := range dom {
			if v != skip {
				m.Counts[CellKey(v, v)] = 10
			}
		}
		return m
	}
	ms := []Marginal{
		diag("x", "y", ""),
		diag("y", "z", "r"), // no y = r row: z given y = r comes from z's 1-way marginal
		{Columns: []string{"z"}, Domains: [][]string{dom}, Counts: map[string]float64{"q": 1}},
	}
	rows, err := Synthesize(ms, []string{"x", "y", "z"}, 3000, 5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range rows {
		if r[0] != r[1] {
			t.Fatalf("row %q breaks the x × y pair", r)
		}
		if r[1] == "r" && r[2] != "q" {
			t.Fatalf("row %q: an empty slice did not fall back on z's 1-way marginal", r)
		}
		seen[CellKey(r...)]++
	}
	// Raking fits the (y, z) table to z's 1-way marginal, all on q: y = q, z = q survives,
	// y = p has nothing left and falls back to z = q too.
	for k := range seen {
		if !strings.HasSuffix(k, KeySep+"q") {
			t.Errorf("tuple %q: z should always be q", k)
		}
	}
	if len(seen) != 3 {
		t.Errorf("tuples %v, want x = y over all of p, q, r", seen)
	}
}

func TestL1Distance(t *testing.T) {
	for _, c := range []struct {
		p, q map[string]float64
		want float64
	}{
		{map[string]float64{"a": 1, "b": 1}, map[string]float64{"a": 5, "b": 5}, 0},
		{map[string]float64{"a": 1}, map[string]float64{"b": 3}, 2},
		{map[string]float64{"a": 3, "b": 1}, map[string]float64{"a": 1, "b": 1, "c": 0}, 0.5},
		{nil, nil, 0},
		{nil, map[string]float64{"a": 1}, 2},
	} {
		if got := L1Distance(c.p, c.q); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("L1Distance(%v, %v) = %v, want %v", c.p, c.q, got, c.want)
		}
	}
	if got := ExpectedL1Error(10, 5, 20000, 10000); math.Abs(got-(2*10*5.0/20000+math.Sqrt(0.001))) > 1e-12 {
		t.Errorf("ExpectedL1Error = %v", got)
	}
}
