package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/veil-dp/veil/dp"
	"github.com/veil-dp/veil/engine"
)

// The built-in trainers of model jobs run here, inside the sandbox (`veil runner`), because
// logistic regression needs its noise between passes over the data: every trainer adds its
// noise before anything leaves the runner, so exact statistics never reach the pipe.

// Trainers.
const (
	Linear    = "linear_regression"
	Logistic  = "logistic_regression"
	Histogram = "histogram"
	Quantiles = "quantiles"
)

// ModelColumn is a column a trainer reads, with the bounds it is clamped to.
type ModelColumn struct {
	Name  string  `json:"name"`
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
}

// scaled is the column clamped to its bounds and mapped onto [-1, 1].
func (c ModelColumn) scaled() string {
	x := fmt.Sprintf("TRY_CAST(%s AS DOUBLE)", engine.Ident(c.Name))
	mid, half := (c.Lower+c.Upper)/2, (c.Upper-c.Lower)/2
	return fmt.Sprintf("((CASE WHEN %[1]s < %[2]g THEN %[2]g WHEN %[1]s > %[3]g THEN %[3]g ELSE %[1]s END) - %[4]g) / %[5]g", x, c.Lower, c.Upper, mid, half)
}

// clamped is the column clamped to its bounds.
func (c ModelColumn) clamped() string {
	x := fmt.Sprintf("TRY_CAST(%s AS DOUBLE)", engine.Ident(c.Name))
	return fmt.Sprintf("(CASE WHEN %[1]s < %[2]g THEN %[2]g WHEN %[1]s > %[3]g THEN %[3]g ELSE %[1]s END)", x, c.Lower, c.Upper)
}

// Model is what a model job runs; it is stored with the job and passed to the runner.
type Model struct {
	Trainer  string        `json:"trainer"`
	Dataset  string        `json:"dataset"`
	Unit     string        `json:"unit"`
	Features []ModelColumn `json:"features,omitempty"`
	Label    *ModelColumn  `json:"label,omitempty"`
	Positive string        `json:"positive,omitempty"`
	Column   *ModelColumn  `json:"column,omitempty"`
	Bins     int           `json:"bins,omitempty"`
	Ranks    []float64     `json:"ranks,omitempty"`
	MaxRows  int64         `json:"max_rows"`
	// Direct: the dataset version was measured to have one row per person and none without a
	// person, so the per-person pass is the identity and is skipped.
	Direct       bool    `json:"direct,omitempty"`
	Iterations   int     `json:"iterations,omitempty"`
	LearningRate float64 `json:"learning_rate,omitempty"`
	Epsilon      float64 `json:"epsilon"` // as charged by the ledger
	Delta        float64 `json:"delta"`
}

// ModelResult is what the runner writes to the pipe: the released table (noisy already) and
// a report of the mechanisms, or a refusal the vendor may read.
type ModelResult struct {
	Error   string         `json:"error,omitempty"`
	Columns []string       `json:"columns,omitempty"`
	Text    []string       `json:"text,omitempty"` // the first column when it is text
	Values  [][]float64    `json:"values,omitempty"`
	Report  map[string]any `json:"report,omitempty"`
}

// errModel is a refusal the vendor may read (it names no value).
type errModel struct{ msg string }

func (e errModel) Error() string { return e.msg }

func train(ctx context.Context, j *engine.Job, spec *Model) (*ModelResult, error) {
	var res *ModelResult
	var err error
	switch spec.Trainer {
	case Linear:
		res, err = trainLinearRegression(ctx, j, spec)
	case Logistic:
		res, err = trainLogisticRegression(ctx, j, spec)
	case Histogram:
		res, err = trainHistogramDP(ctx, j, spec)
	case Quantiles:
		res, err = trainQuantilesDP(ctx, j, spec)
	default:
		return nil, fmt.Errorf("unknown trainer %q", spec.Trainer)
	}
	var em errModel
	if errors.As(err, &em) {
		return &ModelResult{Error: em.msg}, nil
	}
	return res, err
}

// rowsSQL selects the unit and the given expressions of the rows where every column the
// trainer reads is present.
func (s *Model) rowsSQL(exprs []string) string {
	var present []string
	for _, c := range s.columns() {
		present = append(present, engine.Ident(c)+" IS NOT NULL")
	}
	return fmt.Sprintf("SELECT %s AS u, %s FROM %s WHERE %s IS NOT NULL AND %s", engine.Ident(s.Unit), strings.Join(exprs, ", "),
		engine.Ident(s.Dataset), engine.Ident(s.Unit), strings.Join(present, " AND "))
}

func (s *Model) columns() []string {
	var out []string
	for _, f := range s.Features {
		out = append(out, f.Name)
	}
	if s.Label != nil {
		out = append(out, s.Label.Name)
	}
	if s.Column != nil {
		out = append(out, s.Column.Name)
	}
	return out
}

// boundedSums sums each expression over the rows with every person's contribution bounded:
// a person with c rows counts as min(c, MaxRows) rows of their own average. The result is
// the sums and the (bounded) number of rows.
func (s *Model) boundedSums(ctx context.Context, j *engine.Job, exprs []string) ([]float64, float64, error) {
	var cols []string
	for i := range exprs {
		cols = append(cols, fmt.Sprintf("e%d", i))
	}
	rows := s.rowsSQL(aliased(exprs, cols))
	var q string
	if s.Direct {
		q = fmt.Sprintf("SELECT %s, count(*)::DOUBLE FROM (%s)", sumsOf(cols, ""), rows)
	} else {
		w := fmt.Sprintf(" * least(c, %d) / c", s.MaxRows)
		var inner []string
		for _, c := range cols {
			inner = append(inner, fmt.Sprintf("sum(%s) AS %s", c, c))
		}
		q = fmt.Sprintf("SELECT %s, sum(least(c, %d))::DOUBLE FROM (SELECT count(*) AS c, %s FROM (%s) GROUP BY u)", sumsOf(cols, w), s.MaxRows, strings.Join(inner, ", "), rows)
	}
	out := make([]float64, len(exprs)+1)
	err := engine.Stream(ctx, j, []string{q}, func(_ int, rec arrow.RecordBatch) error {
		if rec.NumRows() != 1 {
			return fmt.Errorf("sums: %d rows", rec.NumRows())
		}
		for i := range out {
			c := rec.Column(i).(*array.Float64)
			if !c.IsNull(0) {
				out[i] = c.Value(0)
			}
		}
		return nil
	})
	return out[:len(exprs)], out[len(exprs)], err
}

func aliased(exprs, names []string) []string {
	out := make([]string, len(exprs))
	for i := range exprs {
		out[i] = exprs[i] + " AS " + names[i]
	}
	return out
}

func sumsOf(cols []string, weight string) string {
	var out []string
	for _, c := range cols {
		out = append(out, fmt.Sprintf("COALESCE(sum(%s%s), 0)::DOUBLE", c, weight))
	}
	return strings.Join(out, ", ")
}

// trainLinearRegression releases least-squares coefficients from noisy sufficient statistics
// (Wang 2018; Sheffet 2017): with a = (1, z_1..z_k), z the features scaled to [-1, 1] and u
// the label scaled to [-1, 1], every entry of Σ a·aᵀ and Σ a·u moves by at most MaxRows when
// one person is added or removed. Gaussian noise from the DP library, calibrated to that
// sensitivity over all m entries together, then a ridge of a few noise deviations keeps the
// noisy matrix positive definite.
func trainLinearRegression(ctx context.Context, j *engine.Job, s *Model) (*ModelResult, error) {
	k := len(s.Features)
	a := []string{"1.0"}
	for _, f := range s.Features {
		a = append(a, f.scaled())
	}
	u := s.Label.scaled()
	var exprs []string
	for p := 0; p <= k; p++ {
		for q := p; q <= k; q++ {
			exprs = append(exprs, fmt.Sprintf("(%s) * (%s)", a[p], a[q]))
		}
	}
	for p := 0; p <= k; p++ {
		exprs = append(exprs, fmt.Sprintf("(%s) * (%s)", a[p], u))
	}
	sums, _, err := s.boundedSums(ctx, j, exprs)
	if err != nil {
		return nil, err
	}
	m := int64(len(exprs))
	for i := range sums {
		r, err := dp.Sum(sums[i], m, float64(s.MaxRows), s.Epsilon, s.Delta, dp.Gaussian)
		if err != nil {
			return nil, err
		}
		sums[i] = r.Value
	}
	sigma := dp.Scale(dp.Gaussian, m, float64(s.MaxRows), s.Epsilon, s.Delta)
	A := make([][]float64, k+1)
	for p := range A {
		A[p] = make([]float64, k+1)
	}
	i := 0
	for p := 0; p <= k; p++ {
		for q := p; q <= k; q++ {
			A[p][q], A[q][p] = sums[i], sums[i]
			i++
		}
	}
	b := sums[i:]
	ridge := 3 * sigma
	for p := range A {
		A[p][p] += ridge
	}
	beta, err := solve(A, b)
	if err != nil {
		return nil, errModel{"the noisy statistics do not determine the coefficients (too few rows for this epsilon, or features that are constant); use more data or a larger epsilon"}
	}
	// Back to the original units: y = c_y + h_y (β0 + Σ β_j (x_j - c_j) / h_j).
	cy, hy := (s.Label.Lower+s.Label.Upper)/2, (s.Label.Upper-s.Label.Lower)/2
	terms := []string{"intercept"}
	intercept := cy + hy*beta[0]
	coefs := []float64{0}
	for jx, f := range s.Features {
		c, h := (f.Lower+f.Upper)/2, (f.Upper-f.Lower)/2
		coefs = append(coefs, hy*beta[jx+1]/h)
		intercept -= hy * beta[jx+1] * c / h
		terms = append(terms, f.Name)
	}
	coefs[0] = intercept
	return &ModelResult{Columns: []string{"term", "coefficient"}, Text: terms, Values: [][]float64{coefs},
		Report: map[string]any{"trainer": Linear, "mechanism": "gaussian noise on the sufficient statistics", "statistics": m,
			"noise_stddev": sigma, "ridge": ridge, "noisy_rows": sums[0], "epsilon": s.Epsilon, "delta": s.Delta, "max_rows": s.MaxRows}}, nil
}

// trainLogisticRegression runs full-batch gradient descent with noisy gradients (DP-GD,
// Abadi et al. 2016 without sampling): a = (1, z)/√(k+1) has norm at most 1 and so does each
// row's gradient (σ(w·a) − y)·a; a person moves the gradient sum by at most MaxRows in L2.
// Each step adds Gaussian noise from the DP library; ε and δ are split evenly over the steps
// and one Laplace count (basic composition, a safe upper bound).
func trainLogisticRegression(ctx context.Context, j *engine.Job, s *Model) (*ModelResult, error) {
	k := len(s.Features)
	norm := math.Sqrt(float64(k + 1))
	a := []string{fmt.Sprintf("%g", 1/norm)}
	for _, f := range s.Features {
		a = append(a, fmt.Sprintf("(%s) / %g", f.scaled(), norm))
	}
	positive := strings.ReplaceAll(s.Positive, "'", "''")
	y := fmt.Sprintf("(CASE WHEN CAST(%s AS VARCHAR) = '%s' THEN 1.0 ELSE 0.0 END)", engine.Ident(s.Label.Name), positive)
	T := s.Iterations
	epsStep, deltaStep := s.Epsilon/float64(T+1), s.Delta/float64(T)
	L := float64(s.MaxRows)

	_, n, err := s.boundedSums(ctx, j, []string{"1.0"})
	if err != nil {
		return nil, err
	}
	cn, err := dp.Count(int64(math.Round(n)), 1, s.MaxRows, epsStep, 0, dp.Laplace)
	if err != nil {
		return nil, err
	}
	noisyN := math.Max(cn.Value, 1)
	w := make([]float64, k+1)
	for range T {
		margin := make([]string, len(a))
		for p := range a {
			margin[p] = fmt.Sprintf("%g * %s", w[p], a[p])
		}
		pr := fmt.Sprintf("(1 / (1 + exp(-(%s))) - %s)", strings.Join(margin, " + "), y)
		var exprs []string
		for p := range a {
			exprs = append(exprs, fmt.Sprintf("%s * %s", pr, a[p]))
		}
		g, _, err := s.boundedSums(ctx, j, exprs)
		if err != nil {
			return nil, err
		}
		for p := range g {
			r, err := dp.Sum(g[p], 1, L, epsStep, deltaStep, dp.Gaussian)
			if err != nil {
				return nil, err
			}
			w[p] -= s.LearningRate * r.Value / noisyN
		}
	}
	// logit = Σ w_p a_p with a_0 = 1/norm and a_j = (x_j - c_j) / (h_j norm).
	intercept := w[0] / norm
	terms, coefs := []string{"intercept"}, []float64{0}
	for jx, f := range s.Features {
		c, h := (f.Lower+f.Upper)/2, (f.Upper-f.Lower)/2
		coefs = append(coefs, w[jx+1]/(h*norm))
		intercept -= w[jx+1] * c / (h * norm)
		terms = append(terms, f.Name)
	}
	coefs[0] = intercept
	return &ModelResult{Columns: []string{"term", "coefficient"}, Text: terms, Values: [][]float64{coefs},
		Report: map[string]any{"trainer": Logistic, "mechanism": "gradient descent with gaussian noise on each full gradient (basic composition)",
			"iterations": T, "learning_rate": s.LearningRate, "step_epsilon": epsStep, "step_delta": deltaStep,
			"gradient_noise_stddev": dp.Scale(dp.Gaussian, 1, L, epsStep, deltaStep), "noisy_rows": noisyN,
			"epsilon": s.Epsilon, "delta": s.Delta, "max_rows": s.MaxRows}}, nil
}

// trainHistogramDP releases a count for every bin of equal width over the column's bounds
// (the bins are public: no partition selection). A person's weights over the bins add up to
// at most MaxRows, so Laplace noise of scale MaxRows/ε on every bin is ε-DP.
func trainHistogramDP(ctx context.Context, j *engine.Job, s *Model) (*ModelResult, error) {
	c := s.Column
	B := s.Bins
	bin := fmt.Sprintf("least(CAST(floor((%s - %g) / %g * %d) AS BIGINT), %d)", c.clamped(), c.Lower, c.Upper-c.Lower, B, B-1)
	rows := s.rowsSQL([]string{bin + " AS bin"})
	var q string
	if s.Direct {
		q = fmt.Sprintf("SELECT bin, count(*)::DOUBLE FROM (%s) GROUP BY bin", rows)
	} else {
		q = fmt.Sprintf(`SELECT bin, sum(n * least(c, %d) / c)::DOUBLE FROM (SELECT u, bin, count(*) AS n FROM (%[2]s) GROUP BY u, bin)
			JOIN (SELECT u, count(*) AS c FROM (%[2]s) GROUP BY u) USING (u) GROUP BY bin`, s.MaxRows, rows)
	}
	counts := make([]float64, B)
	err := engine.Stream(ctx, j, []string{q}, func(_ int, rec arrow.RecordBatch) error {
		bins, vals := rec.Column(0).(*array.Int64), rec.Column(1).(*array.Float64)
		for r := 0; r < int(rec.NumRows()); r++ {
			if b := bins.Value(r); b >= 0 && b < int64(B) {
				counts[b] = vals.Value(r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	lower, upper, noisy := make([]float64, B), make([]float64, B), make([]float64, B)
	width := (c.Upper - c.Lower) / float64(B)
	for b := range counts {
		r, err := dp.Sum(counts[b], 1, float64(s.MaxRows), s.Epsilon, 0, dp.Laplace)
		if err != nil {
			return nil, err
		}
		lower[b], upper[b] = c.Lower+float64(b)*width, c.Lower+float64(b+1)*width
		noisy[b] = math.Max(math.Round(r.Value), 0)
	}
	clear(counts)
	return &ModelResult{Columns: []string{"bin_lower", "bin_upper", "count"}, Values: [][]float64{lower, upper, noisy},
		Report: map[string]any{"trainer": Histogram, "mechanism": "laplace noise on every bin", "noise_scale": dp.Scale(dp.Laplace, 1, float64(s.MaxRows), s.Epsilon, 0),
			"bins": B, "epsilon": s.Epsilon, "max_rows": s.MaxRows}}, nil
}

// trainQuantilesDP releases quantiles of the column from the DP library's quantile tree; each
// person contributes one value (the median of their rows), and the ranks share one tree.
func trainQuantilesDP(ctx context.Context, j *engine.Job, s *Model) (*ModelResult, error) {
	c := s.Column
	rows := s.rowsSQL([]string{c.clamped() + " AS v"})
	q := fmt.Sprintf("SELECT median(v)::DOUBLE FROM (%s) GROUP BY u", rows)
	if s.Direct {
		q = fmt.Sprintf("SELECT v::DOUBLE FROM (%s)", rows)
	}
	var values []float64
	err := engine.Stream(ctx, j, []string{q}, func(_ int, rec arrow.RecordBatch) error {
		v := rec.Column(0).(*array.Float64)
		for r := 0; r < v.Len(); r++ {
			if !v.IsNull(r) {
				values = append(values, v.Value(r))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rs, err := dp.Quantiles(values, s.Ranks, c.Lower, c.Upper, s.Epsilon, 0, dp.Laplace)
	clear(values)
	if err != nil {
		return nil, err
	}
	var vals []float64
	for _, r := range rs {
		vals = append(vals, r.Value)
	}
	return &ModelResult{Columns: []string{"rank", "value"}, Values: [][]float64{s.Ranks, vals},
		Report: map[string]any{"trainer": Quantiles, "mechanism": "laplace quantile tree (one tree for all ranks)", "noise_scale": rs[0].Scale,
			"epsilon": s.Epsilon, "max_rows": 1}}, nil
}

// solve solves A x = b by Gaussian elimination with partial pivoting (A is small: one row per
// feature). It fails on a singular matrix.
func solve(A [][]float64, b []float64) ([]float64, error) {
	n := len(b)
	M := make([][]float64, n)
	for i := range A {
		M[i] = append(append([]float64{}, A[i]...), b[i])
	}
	for col := 0; col < n; col++ {
		piv := col
		for r := col + 1; r < n; r++ {
			if math.Abs(M[r][col]) > math.Abs(M[piv][col]) {
				piv = r
			}
		}
		if math.Abs(M[piv][col]) < 1e-12 {
			return nil, errors.New("singular")
		}
		M[col], M[piv] = M[piv], M[col]
		for r := col + 1; r < n; r++ {
			f := M[r][col] / M[col][col]
			for c := col; c <= n; c++ {
				M[r][c] -= f * M[col][c]
			}
		}
	}
	x := make([]float64, n)
	for i := n - 1; i >= 0; i-- {
		s := M[i][n]
		for c := i + 1; c < n; c++ {
			s -= M[i][c] * x[c]
		}
		x[i] = s / M[i][i]
	}
	return x, nil
}
