package sql

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/gate"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
)

// Kind is the SQL job kind. It takes every request no other kind takes, so it is registered
// last.
type Kind struct {
	validator *engine.Validator
	box       *launch.Launcher
	cfg       platform.Config
}

// New returns the SQL kind; v validates the queries, box runs them.
func New(v *engine.Validator, box *launch.Launcher, cfg platform.Config) *Kind {
	return &Kind{validator: v, box: box, cfg: cfg}
}

// Name is the key a SQL job's validated plan has always been stored under.
func (*Kind) Name() string { return "plan" }

// Accepts takes any request: a job is SQL unless another kind claimed it first.
func (*Kind) Accepts(*api.SubmitJob) bool { return true }

// jobMode picks a job's mode: the one asked for; dp when dp options are given; else the
// grant's only SQL mode, with threshold where the grant allows both.
func jobMode(req api.SubmitJob) func(g *policy.Grant) (policy.Mode, error) {
	return func(g *policy.Grant) (policy.Mode, error) {
		switch {
		case req.Mode != "":
			m := policy.Mode(req.Mode)
			if m != policy.ModeDP && m != policy.ModeThreshold {
				return "", fmt.Errorf("%w: SQL jobs run in mode dp or threshold, not %q", policy.ErrInvalid, req.Mode)
			}
			if m == policy.ModeDP && req.DP == nil {
				return "", fmt.Errorf("%w: a dp job needs an epsilon (--epsilon)", policy.ErrInvalid)
			}
			return m, nil
		case req.DP != nil:
			return policy.ModeDP, nil
		case slices.Contains(g.Modes, policy.ModeDP) && !slices.Contains(g.Modes, policy.ModeThreshold):
			return "", fmt.Errorf("%w: grant %s releases SQL results only with differential privacy: give an --epsilon", policy.ErrInvalid, g.ID)
		}
		return policy.ModeThreshold, nil
	}
}

func dpOptions(o *api.DPOptions) engine.DPOptions {
	if o == nil {
		return engine.DPOptions{}
	}
	return engine.DPOptions{Epsilon: o.Epsilon, Delta: o.Delta, MaxGroups: o.MaxGroups, MaxRows: o.MaxRows, Bounds: o.Bounds, Noise: o.Noise}
}

// Plan validates the query before anything is stored: a refused query leaves no trace but
// the audit entry.
func (k *Kind) Plan(ctx context.Context, sub *jobs.Submission) (*jobs.Plan, error) {
	req := sub.Request
	if strings.TrimSpace(req.SQL) == "" {
		return nil, fmt.Errorf("%w: the job has no SQL; pass --sql or -f FILE", policy.ErrInvalid)
	}
	if len(req.SQL) > 64<<10 {
		return nil, fmt.Errorf("%w: the SQL is longer than 64 KiB", policy.ErrInvalid)
	}
	var mode policy.Mode
	pick := jobMode(req)
	g, sc, schemas, err := sub.Grant(ctx, func(g *policy.Grant) (policy.Mode, error) {
		m, err := pick(g)
		mode = m
		return m, err
	})
	if err != nil {
		return nil, err
	}
	sc.Tenant = g.Tenant // the validator's caches are per tenant
	var plan *engine.Plan
	var verr error
	if mode == policy.ModeDP {
		plan, verr = k.validator.ValidateDP(ctx, req.SQL, sc, dpOptions(req.DP))
	} else {
		plan, verr = k.validator.Validate(ctx, req.SQL, sc)
	}
	var spend *ledger.Amount
	if verr == nil && plan.DP != nil {
		a, err := ledger.Spend(plan.DP.Epsilon, plan.DP.Delta)
		if err != nil {
			verr = fmt.Errorf("%w: %v", policy.ErrInvalid, err)
		}
		spend = &a
	}
	if verr != nil {
		return nil, sub.Refuse(g, verr)
	}
	pl := &jobs.Plan{Grant: g, Mode: mode, Describe: req.SQL, Spec: plan, Spend: spend,
		Audit: map[string]string{"grant": g.ID, "mode": string(mode), "sql": req.SQL}}
	if spend != nil {
		pl.Datasets, pl.Cap = plan.Tables, ledger.QueryCap(g, schemas)
	}
	if sub.DryRun {
		if pl.Preview, err = preview(plan, g, mode, spend); err != nil {
			return nil, err
		}
	}
	return pl, nil
}

// preview says what a planned query would release: for dp, each aggregate's noise and the
// partition selection, from the plan and the spend alone.
func preview(plan *engine.Plan, g *policy.Grant, mode policy.Mode, spend *ledger.Amount) (*api.JobPlan, error) {
	out := &api.JobPlan{SQL: plan.Query, Datasets: plan.Tables}
	if mode != policy.ModeDP || spend == nil {
		out.K, out.RoundTo = g.K, g.RoundTo
		out.Notes = append(out.Notes, fmt.Sprintf("threshold mode: exact aggregates of groups of at least %d persons; smaller groups are suppressed; no budget is spent", g.K))
		return out, nil
	}
	aggs, sel, err := gate.Forecast(plan, *spend)
	if err != nil {
		return nil, err
	}
	out.Aggregates, out.Selection = aggs, sel
	return out, nil
}

// Run runs the plan in the sandbox and gates its result.
func (k *Kind) Run(ctx context.Context, run *jobs.Run) (*jobs.Output, error) {
	var plan engine.Plan
	if err := json.Unmarshal(run.Spec, &plan); err != nil {
		return nil, err
	}
	tables, err := run.Tables(ctx, plan.Tables)
	if err != nil {
		return nil, err
	}
	g := run.Grant
	// The fast plan relies on the rows-per-unit maximum of the dataset version that runs now
	// (and, where it counts every row, on every row of that version having a unit), the
	// smaller one of a plain key column where that version measured it.
	plan.MaxRowsPerUnit = 0
	fast := ""
	var keyUnits []map[string]engine.ValueUnits // and what that version measured of the keys' values
	if plan.FastSQL != "" && len(plan.Tables) == 1 {
		for _, t := range tables {
			if t.Name == plan.Tables[0] {
				if fast = plan.FastFor(t); fast != "" {
					plan.MaxRowsPerUnit, keyUnits = plan.RowsPerUnit(t), plan.KeyUnits(t)
				}
			}
		}
	}
	plan.FastSQL = fast
	ejob := engine.Job{SQL: plan.SQL, FastSQL: plan.FastSQL, K: g.K, MaxRowsPerUnit: plan.MaxRowsPerUnit, KeyUnits: keyUnits, Tables: tables, Threads: k.cfg.JobThreads, MemoryLimitMB: k.cfg.DuckDBMemoryMB(), MaxResultBytes: k.cfg.MaxResultByte}
	if plan.DP != nil {
		if run.Spend == nil {
			return nil, launch.Fail("the job has no budget reservation; submit it again", nil)
		}
		return k.runDP(ctx, run.ID, &plan, *run.Spend, tables, ejob)
	}
	checks, rules, err := k.checks(ctx, run, &plan, tables)
	if err != nil {
		return nil, err
	}
	for i, c := range checks {
		ejob.Checks, ejob.CheckFast = append(ejob.Checks, c.SQL), append(ejob.CheckFast, c.FastSQL)
		if c.Kind == engine.CheckDominance {
			ejob.DominanceCheck, ejob.DominanceRules, ejob.Dominance = i+1, &rules, plan.Dominance
			ejob.DominanceCells, ejob.DominanceUnits = c.CellSQL, c.UnitsSQL
		}
	}
	var exact bytes.Buffer
	usage, err := k.box.Run(ctx, run.ID, ejob, &exact)
	if err != nil {
		return nil, err
	}
	recs, err := engine.ReadResults(&exact, k.cfg.MaxResultByte, len(checks))
	clear(exact.Bytes()) // the exact result lives only in memory, and not longer than needed
	if err != nil {
		return nil, launch.FailOnData(launch.ClassData, "the runner returned no readable result", err)
	}
	results := make([]gate.CheckResult, len(checks))
	for i, c := range checks {
		results[i] = gate.CheckResult{Kind: c.Kind, Priors: c.Priors, Rec: recs[i+1]}
	}
	protected, rep, err := gate.ThresholdChecked(recs[0], &plan, gate.ThresholdRule{K: g.K, RoundTo: g.RoundTo}, results)
	for _, r := range recs {
		r.Release()
	}
	if err != nil {
		return nil, launch.FailOnData(launch.ClassData, "the output gate refused the result", err)
	}
	msg := fmt.Sprintf("waiting for export review: %d groups released, %d suppressed (fewer than %d persons)", rep.Released, rep.Suppressed, g.K)
	if rep.Dominance > 0 {
		msg += fmt.Sprintf(", %d suppressed by the dominance rules", rep.Dominance)
	}
	if rep.Differencing > 0 {
		msg += fmt.Sprintf(", %d suppressed against differencing with %s", rep.Differencing, strings.Join(rep.Paired, ", "))
	}
	return &jobs.Output{
		Record: protected,
		Mechanism: api.Mechanism{Kind: string(policy.ModeThreshold), K: g.K, RoundTo: g.RoundTo, Groups: rep.Groups, Suppressed: rep.Suppressed, NearK: rep.NearK,
			Dominance: rep.Dominance, Differencing: rep.Differencing, Paired: rep.Paired},
		Message: msg,
		Metering: &api.Metering{WallMS: usage.Wall.Milliseconds(), CPUMS: usage.CPU.Milliseconds(), PeakMemoryMB: usage.PeakMemoryBytes >> 20, PeakResidentMB: usage.PeakResidentBytes >> 20,
			OutputRows: protected.NumRows(), Groups: rep.Groups, Suppressed: rep.Suppressed},
		Log: []any{"isolation", k.box.Name(), "wall_ms", usage.Wall.Milliseconds(),
			"peak_mb", usage.PeakMemoryBytes >> 20, "peak_resident_mb", usage.PeakResidentBytes >> 20, "groups", rep.Groups, "suppressed", rep.Suppressed},
		Audit: map[string]string{
			"mechanism": "threshold", "k": fmt.Sprint(g.K), "groups": fmt.Sprint(rep.Groups), "suppressed": fmt.Sprint(rep.Suppressed),
			"dominance": fmt.Sprint(rep.Dominance), "differencing": fmt.Sprint(rep.Differencing), "paired": strings.Join(rep.Paired, ","),
			"wall_ms": fmt.Sprint(usage.Wall.Milliseconds())},
	}, nil
}

// checks builds a threshold job's dominance and differencing checks (engine.Checks): against
// the grant's latest engine.MaxPriors threshold queries in production, against none in a dev
// run (twins are not the data). A plan stored without its group keys, from before the
// checks, cannot be checked and must be submitted again.
func (k *Kind) checks(ctx context.Context, run *jobs.Run, plan *engine.Plan, tables []engine.Table) ([]engine.Check, engine.CheckRules, error) {
	var priors []engine.Prior
	if !run.Dev {
		var err error
		if priors, err = run.Priors(ctx, engine.MaxPriors); err != nil {
			var pu *jobs.PriorUnreadable
			if errors.As(err, &pu) {
				return nil, engine.CheckRules{}, launch.Fail(fmt.Sprintf("the job cannot be checked for differencing against the grant's earlier job %s: its stored record cannot be read, so a difference between the two cannot be ruled out and the job does not run; ask the operator to run veil doctor on the store", pu.Job), err)
			}
			return nil, engine.CheckRules{}, err
		}
	}
	sdc := gate.DefaultSDCRules()
	rules := engine.CheckRules{K: run.Grant.K, DominanceN: sdc.DominanceN, DominanceK: sdc.DominanceK, DominanceP: sdc.DominanceP}
	checks, err := k.validator.Checks(ctx, plan, engine.Scope{Mode: string(policy.ModeThreshold), Tables: tables, Tenant: run.Grant.Tenant}, priors, rules)
	if errors.Is(err, engine.ErrKeysChanged) {
		return nil, rules, launch.Fail("the job was queued before threshold jobs were checked for dominance and differencing; submit it again", nil)
	}
	var pe *engine.PriorError
	if errors.As(err, &pe) {
		return nil, rules, launch.Fail(fmt.Sprintf("the job cannot be checked for differencing against the grant's earlier threshold job %s: that job's query no longer reads this query's tables as they are now, so a difference between the two cannot be ruled out and the job does not run; ask the data bureau (the operator) to review job %s, or apply for a new grant", pe.Job, pe.Job), err)
	}
	if err != nil {
		return nil, rules, launch.Fail("the threshold checks could not be prepared", err)
	}
	return checks, rules, nil
}

// runDP runs a dp job: the bounded partial aggregates come from the sandbox, the noise from
// the DP gate here.
func (k *Kind) runDP(ctx context.Context, id string, plan *engine.Plan, spend ledger.Amount, tables []engine.Table, ejob engine.Job) (*jobs.Output, error) {
	ejob.FastSQL, ejob.K, ejob.MaxRowsPerUnit = "", 0, 0
	// Where the dataset version that runs now has one row per unit and no row without one,
	// bounding is the identity and the direct plan computes the same partial aggregates
	// faster.
	if plan.DP.DirectSQL != "" && len(tables) > 0 {
		for _, t := range tables {
			if t.Name == plan.Tables[0] && t.MaxRowsPerUnit == 1 && t.UnitComplete {
				ejob.SQL = plan.DP.DirectSQL
			}
		}
	}
	var secret [8]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, err
	}
	ejob.Secret = int64(binary.LittleEndian.Uint64(secret[:]) | 1)
	ejob.DPStateBytes = plan.DP.StateBytes()
	var exact bytes.Buffer
	usage, err := k.box.Run(ctx, id, ejob, &exact)
	if err != nil {
		return nil, err
	}
	rec, err := engine.ReadResult(&exact, k.cfg.MaxResultByte)
	clear(exact.Bytes())
	if err != nil {
		return nil, launch.FailOnData(launch.ClassData, "the runner returned no readable result", err)
	}
	protected, rep, err := gate.DP(rec, plan, spend)
	rec.Release()
	if err != nil {
		return nil, launch.FailOnData(launch.ClassData, "the output gate refused the result", err)
	}
	report, _ := json.Marshal(rep)
	d := plan.DP
	return &jobs.Output{
		Record: protected,
		Mechanism: api.Mechanism{Kind: string(policy.ModeDP), Groups: rep.Released, DP: &api.DPMechanism{Epsilon: spend.Epsilon(), Delta: spend.DeltaValue(),
			MaxGroups: d.MaxGroups, MaxRows: d.MaxRows, Noise: d.Noise, Report: report}},
		Message: fmt.Sprintf("waiting for export review: %d groups released with differential privacy (%s)", rep.Released, spend),
		Metering: &api.Metering{WallMS: usage.Wall.Milliseconds(), CPUMS: usage.CPU.Milliseconds(), PeakMemoryMB: usage.PeakMemoryBytes >> 20, PeakResidentMB: usage.PeakResidentBytes >> 20,
			OutputRows: protected.NumRows(), Groups: rep.Released},
		Log: []any{"isolation", k.box.Name(), "mechanism", "dp", "wall_ms", usage.Wall.Milliseconds(),
			"peak_mb", usage.PeakMemoryBytes >> 20, "peak_resident_mb", usage.PeakResidentBytes >> 20, "released", rep.Released},
		Audit: map[string]string{
			"mechanism": "dp", "epsilon": ledger.FormatEpsilon(spend.Eps), "delta": ledger.FormatDelta(spend.Delta),
			"released": fmt.Sprint(rep.Released), "wall_ms": fmt.Sprint(usage.Wall.Milliseconds())},
	}, nil
}
