package train

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/runner"
)

// Model jobs with a built-in trainer: the spec is checked against the grant here, the
// budget is reserved with the job, the trainer runs in the sandbox (package runner) and
// returns only noisy results, which go through review like any dp output.

const (
	maxFeatures   = 20
	maxIterations = 100
	maxBins       = 1000
)

// Kind is the model job kind: a built-in trainer with differential privacy.
type Kind struct {
	box *launch.Launcher
	cfg platform.Config
}

// New returns the model kind; box runs the trainers.
func New(box *launch.Launcher, cfg platform.Config) *Kind { return &Kind{box: box, cfg: cfg} }

// Name is the key a model job's trainer spec is stored under.
func (*Kind) Name() string { return "model" }

// Accepts takes the requests that carry a trainer spec.
func (*Kind) Accepts(req *api.SubmitJob) bool { return req.Train != nil }

// Plan checks the trainer spec against the grant; the job spends what the spec asks.
func (k *Kind) Plan(ctx context.Context, sub *jobs.Submission) (*jobs.Plan, error) {
	req := sub.Request
	if strings.TrimSpace(req.SQL) != "" || req.HE != nil || req.DP != nil {
		return nil, fmt.Errorf("%w: a model job is its spec alone (--train FILE): no SQL, no --epsilon flag (the spec has its epsilon)", policy.ErrInvalid)
	}
	g, sc, schemas, err := sub.Grant(ctx, jobs.Mode(policy.ModeModel))
	if err != nil {
		return nil, err
	}
	spec, spend, verr := modelSpecFor(g, sc, req.Train)
	if verr != nil {
		return nil, sub.Refuse(g, verr)
	}
	desc := describeModel(spec)
	// The spend is in the submission's audit entry even for a dev run, which reserves none.
	return &jobs.Plan{Grant: g, Mode: policy.ModeModel, Describe: desc, Spec: spec, Spend: &spend, Datasets: []string{spec.Dataset}, Cap: ledger.QueryCap(g, schemas),
		Audit: map[string]string{"grant": g.ID, "mode": string(policy.ModeModel), "job": desc,
			"epsilon": ledger.FormatEpsilon(spend.Eps), "delta": ledger.FormatDelta(spend.Delta)}}, nil
}

func describeModel(s *runner.Model) string {
	switch s.Trainer {
	case runner.Linear, runner.Logistic:
		var fs []string
		for _, f := range s.Features {
			fs = append(fs, f.Name)
		}
		return fmt.Sprintf("%s of %s on %s over %s, ε=%g δ=%.3g", s.Trainer, s.Label.Name, strings.Join(fs, ", "), s.Dataset, s.Epsilon, s.Delta)
	case runner.Histogram:
		return fmt.Sprintf("histogram of %s in %d bins over [%g, %g] in %s, ε=%g", s.Column.Name, s.Bins, s.Column.Lower, s.Column.Upper, s.Dataset, s.Epsilon)
	}
	return fmt.Sprintf("quantiles %v of %s in %s, ε=%g", s.Ranks, s.Column.Name, s.Dataset, s.Epsilon)
}

// modelSpecFor checks a trainer spec against the grant: granted, numeric, bounded columns;
// limits on sizes; a budget to spend from. It returns what the job runs and what it spends.
func modelSpecFor(g *policy.Grant, sc engine.Scope, t *api.TrainSpec) (*runner.Model, ledger.Amount, error) {
	bad := func(format string, a ...any) (*runner.Model, ledger.Amount, error) {
		return nil, ledger.Amount{}, fmt.Errorf("%w: "+format, append([]any{policy.ErrInvalid}, a...)...)
	}
	if !slices.Contains(g.Modes, policy.ModeModel) || g.Budget.Epsilon <= 0 {
		return bad("grant %s has no privacy budget for model jobs; apply with --mode model --epsilon E", g.ID)
	}
	var tbl *engine.Table
	for i := range sc.Tables {
		if sc.Tables[i].Name == t.Dataset {
			tbl = &sc.Tables[i]
		}
	}
	if tbl == nil {
		return bad("grant %s does not include dataset %q", g.ID, t.Dataset)
	}
	spec := &runner.Model{Trainer: t.Trainer, Dataset: t.Dataset, MaxRows: t.MaxRows, Iterations: t.Iterations, LearningRate: t.LearningRate,
		Bins: t.Bins, Ranks: t.Ranks, Positive: t.Positive}
	for _, c := range tbl.Columns {
		if c.PrivacyUnit {
			spec.Unit = c.Name
		}
	}
	if spec.Unit == "" {
		return bad("dataset %s has no privacy unit in the grant", t.Dataset)
	}
	// column finds a granted column the trainer may read; numeric ones get their bounds.
	column := func(name, role string, numeric bool) (*runner.ModelColumn, error) {
		for _, c := range tbl.Columns {
			if c.Name != name {
				continue
			}
			if c.PrivacyUnit || c.Identifier {
				return nil, fmt.Errorf("%w: %s %s is the privacy unit or a direct identifier; a trainer may not read it", policy.ErrInvalid, role, name)
			}
			if !numeric {
				return &runner.ModelColumn{Name: name}, nil
			}
			if !policy.NumericType(c.Type) {
				return nil, fmt.Errorf("%w: %s %s is %s, not a number", policy.ErrInvalid, role, name, c.Type)
			}
			b, ok := t.Bounds[name]
			if !ok && len(c.Bounds) == 2 {
				b, ok = [2]float64{c.Bounds[0], c.Bounds[1]}, true
			}
			if !ok {
				return nil, fmt.Errorf("%w: %s %s has no bounds in the catalog; give them in the spec (bounds: {%s: [LOWER, UPPER]})", policy.ErrInvalid, role, name, name)
			}
			if !(b[0] < b[1]) {
				return nil, fmt.Errorf("%w: the bounds of %s must have lower < upper", policy.ErrInvalid, name)
			}
			return &runner.ModelColumn{Name: name, Lower: b[0], Upper: b[1]}, nil
		}
		return nil, fmt.Errorf("%w: %s %q is not a granted column of %s", policy.ErrInvalid, role, name, t.Dataset)
	}
	if spec.MaxRows == 0 {
		spec.MaxRows = 1
	}
	if spec.MaxRows < 1 || spec.MaxRows > 100 {
		return bad("max_rows must be between 1 and 100")
	}
	if !(t.Epsilon > 0) || t.Epsilon > 100 {
		return bad("the spec needs an epsilon in (0, 100], for example epsilon: 1")
	}
	gaussian := false
	switch t.Trainer {
	case runner.Linear, runner.Logistic:
		gaussian = true
		if len(t.Features) == 0 || len(t.Features) > maxFeatures {
			return bad("a regression needs 1 to %d features", maxFeatures)
		}
		for i, f := range t.Features {
			if slices.Contains(t.Features[:i], f) || f == t.Label {
				return bad("feature %s is named twice or is the label", f)
			}
			c, err := column(f, "feature", true)
			if err != nil {
				return nil, ledger.Amount{}, err
			}
			spec.Features = append(spec.Features, *c)
		}
		if t.Label == "" {
			return bad("a regression needs a label")
		}
		c, err := column(t.Label, "label", t.Trainer == runner.Linear)
		if err != nil {
			return nil, ledger.Amount{}, err
		}
		spec.Label = c
		if t.Trainer == runner.Logistic {
			if spec.Positive == "" {
				spec.Positive = "1"
			}
			if spec.Iterations == 0 {
				spec.Iterations = 10
			}
			if spec.LearningRate == 0 {
				spec.LearningRate = 1
			}
			if spec.Iterations < 1 || spec.Iterations > maxIterations || !(spec.LearningRate > 0 && spec.LearningRate <= 100) {
				return bad("iterations must be 1 to %d and learning_rate in (0, 100]", maxIterations)
			}
		}
		if !(t.Delta > 0) || t.Delta >= 1e-3 {
			return bad("a regression adds Gaussian noise and needs a delta in (0, 1e-3), for example delta: 1e-6")
		}
	case runner.Histogram, runner.Quantiles:
		if t.Column == "" {
			return bad("a %s needs a column", t.Trainer)
		}
		c, err := column(t.Column, "column", true)
		if err != nil {
			return nil, ledger.Amount{}, err
		}
		spec.Column = c
		if t.Delta != 0 {
			return bad("a %s uses Laplace noise and spends no delta; leave delta out", t.Trainer)
		}
		if t.Trainer == runner.Histogram {
			if spec.Bins == 0 {
				spec.Bins = 10
			}
			if spec.Bins < 1 || spec.Bins > maxBins {
				return bad("bins must be 1 to %d", maxBins)
			}
		} else {
			if len(spec.Ranks) == 0 || len(spec.Ranks) > 20 {
				return bad("quantiles need 1 to 20 ranks, for example ranks: [0.1, 0.5, 0.9]")
			}
			for _, r := range spec.Ranks {
				if !(r >= 0 && r <= 1) {
					return bad("ranks must lie in [0, 1]")
				}
			}
		}
	default:
		return bad("unknown trainer %q (linear_regression, logistic_regression, histogram, quantiles)", t.Trainer)
	}
	delta := 0.0
	if gaussian {
		delta = t.Delta
	}
	spend, err := ledger.Spend(t.Epsilon, delta)
	if err != nil {
		return bad("%v", err)
	}
	// The noise is calibrated to what the ledger charges.
	spec.Epsilon, spec.Delta = spend.Epsilon(), spend.DeltaValue()
	return spec, spend, nil
}

// Run trains in the sandbox; what comes back is noisy already.
func (k *Kind) Run(ctx context.Context, run *jobs.Run) (*jobs.Output, error) {
	spec := &runner.Model{}
	if err := json.Unmarshal(run.Spec, spec); err != nil {
		return nil, err
	}
	all, err := run.Tables(ctx, []string{spec.Dataset})
	if err != nil {
		return nil, err
	}
	id := run.ID
	var tables []engine.Table
	for _, t := range all {
		if t.Name == spec.Dataset {
			tables = append(tables, t)
			// The per-person pass is the identity on the version that runs now when it has
			// one row per person and none without one.
			spec.Direct = t.MaxRowsPerUnit == 1 && t.UnitComplete
		}
	}
	ejob := engine.Job{Kind: runner.KindModel, Tables: tables, Threads: k.cfg.JobThreads, MemoryLimitMB: k.cfg.DuckDBMemoryMB(), MaxResultBytes: k.cfg.MaxResultByte}
	var res runner.ModelResult
	usage, err := k.box.RunSpec(ctx, id, ejob, spec, &res, &res.Error)
	if err != nil {
		return nil, err
	}
	rec, err := modelRecord(&res)
	if err != nil {
		return nil, launch.FailOnData(launch.ClassData, "the runner returned no readable result", err)
	}
	rep, _ := json.Marshal(res.Report)
	noise := "laplace"
	if spec.Trainer == runner.Linear || spec.Trainer == runner.Logistic {
		noise = "gaussian"
	}
	return &jobs.Output{
		Record: rec,
		Mechanism: api.Mechanism{Kind: string(policy.ModeModel), Groups: int(rec.NumRows()),
			DP: &api.DPMechanism{Epsilon: spec.Epsilon, Delta: spec.Delta, MaxRows: spec.MaxRows, Noise: noise, Report: rep}},
		Message:  fmt.Sprintf("waiting for export review: %s with differential privacy (ε=%g), %d rows of output", spec.Trainer, spec.Epsilon, rec.NumRows()),
		Metering: &api.Metering{WallMS: usage.Wall.Milliseconds(), CPUMS: usage.CPU.Milliseconds(), PeakMemoryMB: usage.PeakMemoryBytes >> 20, OutputRows: rec.NumRows()},
		Audit: map[string]string{
			"mechanism": "model", "trainer": spec.Trainer, "epsilon": fmt.Sprint(spec.Epsilon), "wall_ms": fmt.Sprint(usage.Wall.Milliseconds())},
	}, nil
}

// modelRecord is a trainer's output as a table: an optional text column, then numbers.
func modelRecord(res *runner.ModelResult) (arrow.RecordBatch, error) {
	var fields []arrow.Field
	nText := 0
	if res.Text != nil {
		nText = 1
	}
	if len(res.Columns) != nText+len(res.Values) {
		return nil, fmt.Errorf("%d columns named, %d given", len(res.Columns), nText+len(res.Values))
	}
	for i, c := range res.Columns {
		t := arrow.PrimitiveTypes.Float64
		if i < nText {
			t = arrow.BinaryTypes.String
		}
		fields = append(fields, arrow.Field{Name: c, Type: t})
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, arrow.NewSchema(fields, nil))
	defer b.Release()
	if nText == 1 {
		b.Field(0).(*array.StringBuilder).AppendValues(res.Text, nil)
	}
	for i, v := range res.Values {
		b.Field(nText+i).(*array.Float64Builder).AppendValues(v, nil)
	}
	return b.NewRecordBatch(), nil
}
