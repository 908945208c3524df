package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/testdata"
)

// linregRows is the size of the DP linear regression benchmark (the 10M rows).
const linregRows = 10_000_000

// benchLinreg measures a DP linear regression job end to end on 10M rows with 10 features
// against the plaintext normal equations in DuckDB (the same sums of products, over the same
// Parquet file, solved in Go) in the same run.
func benchLinreg(ctx context.Context, o Options, data string, c heClients) ([]Figure, error) {
	file := filepath.Join(data, "reg_data.parquet")
	if _, err := os.Stat(file); err != nil {
		fmt.Fprintf(o.Log, "generating reg_data: %d rows, %d features...\n", linregRows, len(testdata.RegressionBeta))
		if err := testdata.GenerateRegression(ctx, data, linregRows); err != nil {
			return nil, err
		}
	}
	schema, err := os.ReadFile(filepath.Join(data, "reg_data.yaml"))
	if err != nil {
		return nil, err
	}
	if _, err := c.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: string(schema), Files: []string{file}}); err != nil {
		return nil, err
	}
	var feats []string
	for j := range testdata.RegressionBeta {
		feats = append(feats, fmt.Sprintf("x%02d", j+1))
	}
	gid, err := approvedGrant(ctx, c.vendor, api.ApplyGrant{Scenario: "bench model", Purpose: "benchmark", Modes: []string{"model"}, Epsilon: 10, Delta: 1e-5, MaxQuery: 1, ValidFor: "1d",
		Datasets: []api.DatasetAccess{{Name: "reg_data", Columns: append([]string{"y"}, feats...)}}}, c.op, c.auth, c.prov)
	if err != nil {
		return nil, err
	}
	var ds []time.Duration
	for i := 0; i <= min(o.Reps, 3); i++ {
		start := time.Now()
		j, err := c.vendor.SubmitJob(ctx, api.SubmitJob{Grant: gid, Train: &api.TrainSpec{Dataset: "reg_data", Trainer: "linear_regression", Features: feats, Label: "y", Epsilon: 1, Delta: 1e-6}})
		if err != nil {
			return nil, err
		}
		if j, err = c.vendor.Wait(ctx, j.ID, nil); err != nil {
			return nil, err
		}
		if j.Status != "review" {
			return nil, fmt.Errorf("bench model job ended %s: %s", j.Status, j.Message)
		}
		if i > 0 {
			ds = append(ds, time.Since(start))
		}
	}
	tDP := median(ds)
	// The plaintext normal equations: Σ x_i x_j, Σ x_i y with an intercept column, in one pass.
	a := append([]string{"1.0"}, feats...)
	var sums []string
	for p := range a {
		for q := p; q < len(a); q++ {
			sums = append(sums, fmt.Sprintf("sum(%s * %s)", a[p], a[q]))
		}
		sums = append(sums, fmt.Sprintf("sum(%s * y)", a[p]))
	}
	tPlain, err := timeQuery(ctx, fmt.Sprintf("SELECT %s FROM read_parquet('%s')", strings.Join(sums, ", "), file), o.Reps)
	if err != nil {
		return nil, err
	}
	now, mach := time.Now().UTC().Format("2006-01-02"), machine()
	return []Figure{{Name: "dp_linreg_10m_vs_plain_ratio", Value: float64(tDP) / float64(tPlain), Unit: "ratio", BaseName: "plaintext normal equations in DuckDB (same sums of products, same file)",
		Baseline: ms(tPlain), Ratio: float64(tDP) / float64(tPlain), Command: o.Command, Machine: mach, Date: now,
		Note: fmt.Sprintf("Veil %.1f ms vs DuckDB %.1f ms. DP linear regression (noisy sufficient statistics, ε=1, δ=1e-6), %d rows, %d features, one row per person, isolation=%s: submit to noisy coefficients in the review queue",
			ms(tDP), ms(tPlain), linregRows, len(feats), o.Isolation)}}, nil
}
