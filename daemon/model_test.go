package daemon_test

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/testdata"
)

// trainEnv is a daemon with the synthetic regression dataset and a model grant.
type trainEnv struct {
	*env
	acme, rev *client.Client
	file      string
	grant     string
}

func startTrain(t *testing.T, rows int, epsilon float64) *trainEnv {
	dir := t.TempDir()
	if err := testdata.GenerateRegression(context.Background(), dir, rows); err != nil {
		t.Fatal(err)
	}
	e := &trainEnv{env: start(t, nil), file: filepath.Join(dir, "reg_data.parquet")}
	ctx := context.Background()
	e.acme = e.principal("acme analyst", "vendor", "acme")
	prov := e.principal("bench provider", "provider", "bench")
	auth := e.principal("data bureau", "authority", "")
	e.rev = e.principal("reviewer", "reviewer", "")
	schema, err := os.ReadFile(filepath.Join(dir, "reg_data.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: string(schema), Files: []string{e.file}}); err != nil {
		t.Fatal(err)
	}
	cols := []string{"y", "label"}
	for j := range testdata.RegressionBeta {
		cols = append(cols, fmt.Sprintf("x%02d", j+1))
	}
	gr, err := e.acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "risk model", Purpose: "fit a model", Modes: []string{"model"}, Epsilon: epsilon, Delta: 1e-5,
		MaxQuery: epsilon, ValidFor: "30d", Datasets: []api.DatasetAccess{{Name: "reg_data", Columns: cols}}})
	if err != nil {
		t.Fatal(err)
	}
	e.grant = gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, e.grant, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// train runs a model job to review and returns the released rows (approved by the reviewer).
func (e *trainEnv) train(spec api.TrainSpec) (api.Review, [][]any) {
	ctx := context.Background()
	j, err := e.acme.SubmitJob(ctx, api.SubmitJob{Grant: e.grant, Train: &spec})
	if err != nil {
		e.t.Fatal(err)
	}
	if j, err = e.acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		e.t.Fatalf("model job: %+v %v", j, err)
	}
	rv, err := e.rev.Review(ctx, j.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := approve(e.t, e.rev, j.ID); err != nil {
		e.t.Fatal(err)
	}
	return rv, rv.Rows
}

func features() []string {
	var fs []string
	for j := range testdata.RegressionBeta {
		fs = append(fs, fmt.Sprintf("x%02d", j+1))
	}
	return fs
}

// TestDPLinearRegression: at ε=1 on 100k rows, the coefficients of a known linear model are
// recovered within 0.15 (features in [0, 10], y in [-50, 80]); the job spends its epsilon and
// the reviewer sees the mechanism and the budget.
func TestDPLinearRegression(t *testing.T) {
	e := startTrain(t, 100_000, 2)
	rv, rows := e.train(api.TrainSpec{Dataset: "reg_data", Trainer: "linear_regression", Features: features(), Label: "y", Epsilon: 1, Delta: 1e-6})
	if rv.Mechanism.DP == nil || rv.Mechanism.DP.Epsilon != 1 || len(rv.Budget) != 1 || rv.Budget[0].Spent.Epsilon != 1 {
		t.Fatalf("mechanism %+v budget %+v", rv.Mechanism.DP, rv.Budget)
	}
	want := append([]float64{testdata.RegressionIntercept}, testdata.RegressionBeta...)
	if len(rows) != len(want) {
		t.Fatalf("%d coefficients, want %d: %v", len(rows), len(want), rows)
	}
	for i, r := range rows {
		got := r[1].(float64)
		tol := 0.15
		if i == 0 {
			tol = 1.5 // the intercept absorbs the error of every coefficient times its feature's mean (5)
		}
		if math.Abs(got-want[i]) > tol {
			t.Errorf("%v: %.4f, true %.4f (tolerance %g)", r[0], got, want[i], tol)
		}
	}
}

// TestDPLogisticRegression: on a separable task (label = x01 + x02 > 10), DP gradient
// descent at ε=1 on 100k rows classifies at least 90% of the rows right.
func TestDPLogisticRegression(t *testing.T) {
	e := startTrain(t, 100_000, 2)
	_, rows := e.train(api.TrainSpec{Dataset: "reg_data", Trainer: "logistic_regression", Features: []string{"x01", "x02", "x03"}, Label: "label",
		Iterations: 20, LearningRate: 5, Epsilon: 1, Delta: 1e-6})
	coef := map[string]float64{}
	for _, r := range rows {
		coef[r[0].(string)] = r[1].(float64)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var acc float64
	q := fmt.Sprintf("SELECT avg(CASE WHEN (%g + %g * x01 + %g * x02 + %g * x03 > 0) = (label = 1) THEN 1.0 ELSE 0.0 END) FROM read_parquet('%s')",
		coef["intercept"], coef["x01"], coef["x02"], coef["x03"], e.file)
	if err := db.QueryRow(q).Scan(&acc); err != nil {
		t.Fatal(err)
	}
	if acc < 0.9 {
		t.Errorf("accuracy %.3f < 0.9 with coefficients %v", acc, coef)
	}
	t.Logf("accuracy %.4f, coefficients %v", acc, coef)
}

// TestDPHistogramQuantiles: every bin is released (public bins) close to the truth, and the
// median of a uniform column is near its middle; histograms and quantiles need no delta.
func TestDPHistogramQuantiles(t *testing.T) {
	e := startTrain(t, 100_000, 3)
	_, rows := e.train(api.TrainSpec{Dataset: "reg_data", Trainer: "histogram", Column: "x01", Bins: 10, Epsilon: 1})
	if len(rows) != 10 {
		t.Fatalf("%d bins, want 10", len(rows))
	}
	for _, r := range rows {
		if c := r[2].(float64); math.Abs(c-10_000) > 500 {
			t.Errorf("bin [%v, %v): %v, want about 10000", r[0], r[1], c)
		}
	}
	_, rows = e.train(api.TrainSpec{Dataset: "reg_data", Trainer: "quantiles", Column: "x01", Ranks: []float64{0.25, 0.5, 0.75}, Epsilon: 1})
	for i, want := range []float64{2.5, 5, 7.5} {
		if v := rows[i][1].(float64); math.Abs(v-want) > 0.2 {
			t.Errorf("quantile %v: %.3f, want about %g", rows[i][0], v, want)
		}
	}
}

// TestModelRefusals: specs the grant does not allow are refused before anything is spent.
func TestModelRefusals(t *testing.T) {
	e := startTrain(t, 1000, 1)
	ctx := context.Background()
	for _, tc := range []struct {
		spec api.TrainSpec
		want string
	}{
		{api.TrainSpec{Dataset: "reg_data", Trainer: "linear_regression", Features: []string{"person_id"}, Label: "y", Epsilon: 0.5, Delta: 1e-6}, "privacy unit"},
		{api.TrainSpec{Dataset: "reg_data", Trainer: "linear_regression", Features: []string{"x99"}, Label: "y", Epsilon: 0.5, Delta: 1e-6}, "not a granted column"},
		{api.TrainSpec{Dataset: "reg_data", Trainer: "linear_regression", Features: []string{"x01"}, Label: "y", Epsilon: 0.5}, "delta"},
		{api.TrainSpec{Dataset: "reg_data", Trainer: "histogram", Column: "x01", Epsilon: 0.5, Delta: 1e-6}, "no delta"},
		{api.TrainSpec{Dataset: "reg_data", Trainer: "svm", Epsilon: 0.5}, "unknown trainer"},
		{api.TrainSpec{Dataset: "reg_data", Trainer: "histogram", Column: "x01", Epsilon: 2}, "per-query cap"},
	} {
		if _, err := e.acme.SubmitJob(ctx, api.SubmitJob{Grant: e.grant, Train: &tc.spec}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %q", tc.spec, err, tc.want)
		}
	}
	b, err := e.acme.Budgets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range b.Grants {
		if g.Spent.EpsilonUnits != 0 {
			t.Errorf("refused specs spent %v", g.Spent)
		}
	}
}
