package gate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/veil-dp/veil/engine"
)

// ThresholdRule is a grant's output rule in threshold mode.
type ThresholdRule struct {
	K       int // a row needs at least K distinct privacy units behind it
	RoundTo int // counts are rounded to a multiple of RoundTo (0 or 1: not rounded)
}

// ThresholdReport says what the gate did, without any data value.
type ThresholdReport struct {
	Groups     int `json:"groups"`     // rows of the exact result
	Released   int `json:"released"`   // rows that passed
	Suppressed int `json:"suppressed"` // rows removed: fewer than K units
	NearK      int `json:"near_k"`     // released rows with fewer than 2K units
	// Dominance counts rows of at least K units suppressed by the dominance check;
	// Differencing those suppressed by the difference check (Paired: against which prior
	// jobs). Suppressed counts neither.
	Dominance    int      `json:"dominance,omitempty"`
	Differencing int      `json:"differencing,omitempty"`
	Paired       []string `json:"paired,omitempty"`
}

// CheckResult is the result of one of a threshold job's checks (engine.Check): the group
// keys of the cells that fail, then for a difference check one flag per prior.
type CheckResult struct {
	Kind   string
	Priors []string
	Rec    arrow.RecordBatch
}

// Threshold turns the exact result of a plan into its protected output: rows with fewer than
// rule.K distinct privacy units are removed, counts are rounded, and the hidden unit columns
// are dropped. The exact record is left to the caller to release.
func Threshold(rec arrow.RecordBatch, plan *engine.Plan, rule ThresholdRule) (arrow.RecordBatch, ThresholdReport, error) {
	return ThresholdChecked(rec, plan, rule, nil)
}

// ThresholdChecked is Threshold that also suppresses the rows the checks name: the cells
// failing a dominance rule, and those whose difference with a prior query isolates fewer
// than K persons.
func ThresholdChecked(rec arrow.RecordBatch, plan *engine.Plan, rule ThresholdRule, checks []CheckResult) (arrow.RecordBatch, ThresholdReport, error) {
	var rep ThresholdReport
	if rule.K < 1 {
		return nil, rep, errors.New("gate: k must be at least 1")
	}
	if len(plan.Units) == 0 {
		return nil, rep, errors.New("gate: the plan counts no privacy units")
	}
	hidden := plan.Units
	bounded := false // the result counts rows (the fast plan), not units
	if int(rec.NumCols()) == plan.Columns+1+len(plan.Keys)+len(plan.Dominance) && rec.Schema().Field(plan.Columns).Name == engine.RowsColumn {
		if plan.FastSQL == "" || plan.MaxRowsPerUnit < 1 {
			return nil, rep, errors.New("gate: a row-counting result for a plan without a fast variant")
		}
		hidden, bounded = []string{engine.RowsColumn}, true
	}
	if want := plan.Columns + len(hidden) + len(plan.Keys) + len(plan.Dominance); int(rec.NumCols()) != want {
		return nil, rep, fmt.Errorf("gate: result has %d columns, the plan %d", rec.NumCols(), want)
	}
	flagged, err := checkCells(rec, plan.Columns+len(hidden), len(plan.Keys), checks)
	if err != nil {
		return nil, rep, err
	}
	paired := map[string]bool{}
	units := make([]*array.Int64, len(hidden))
	for i, name := range hidden {
		col := plan.Columns + i
		if rec.Schema().Field(col).Name != name {
			return nil, rep, fmt.Errorf("gate: column %d is not %s", col, name)
		}
		u, ok := rec.Column(col).(*array.Int64)
		if !ok {
			return nil, rep, fmt.Errorf("gate: %s is %s, not BIGINT", name, rec.Column(col).DataType())
		}
		units[i] = u
	}

	n := int(rec.NumRows())
	rep.Groups = n
	k := int64(rule.K)
	keep := array.NewBooleanBuilder(memory.DefaultAllocator)
	defer keep.Release()
	for r := 0; r < n; r++ {
		least := int64(-1)
		for _, u := range units {
			v := int64(0)
			if u.IsValid(r) {
				v = u.Value(r)
			}
			if least < 0 || v < least {
				least = v
			}
		}
		if bounded {
			// least is a row count: it certainly passes only from K*M rows on, where the
			// units are at least ceil(rows/M). Anything less is suppressed: the runner
			// switches to exact counts whenever a row lies between K and K*M.
			if least >= k*plan.MaxRowsPerUnit {
				least = (least + plan.MaxRowsPerUnit - 1) / plan.MaxRowsPerUnit
			} else {
				least = min(least, k-1)
			}
		}
		ok := least >= k
		f := flagged[r]
		if ok && f.dominance {
			ok = false
			rep.Dominance++
		} else if ok && len(f.priors) > 0 {
			ok = false
			rep.Differencing++
			for _, p := range f.priors {
				if !paired[p] {
					paired[p] = true
					rep.Paired = append(rep.Paired, p)
				}
			}
		} else if !ok {
			rep.Suppressed++
		}
		keep.Append(ok)
		switch {
		case !ok:
		case least < 2*k:
			rep.Released++
			rep.NearK++
		default:
			rep.Released++
		}
	}
	// rep.Paired is in the order the cells and the checks' priors name them (the checks
	// list the grant's priors newest first), not by id: ids are random, and the order must
	// not change from one run to the next.
	mask := keep.NewBooleanArray()
	defer mask.Release()

	filtered, err := filterRows(rec, plan.Columns, plan.Names, mask)
	if err != nil {
		return nil, rep, fmt.Errorf("gate: %w", err)
	}
	if rule.RoundTo <= 1 || len(plan.Counts) == 0 {
		return filtered, rep, nil
	}
	defer filtered.Release()
	cols := make([]arrow.Array, filtered.NumCols())
	for i := range cols {
		cols[i] = filtered.Column(i)
		cols[i].Retain()
	}
	for _, i := range plan.Counts {
		c, ok := cols[i].(*array.Int64)
		if !ok {
			continue
		}
		b := array.NewInt64Builder(memory.DefaultAllocator)
		for r := 0; r < c.Len(); r++ {
			if c.IsNull(r) {
				b.AppendNull()
				continue
			}
			b.Append(roundTo(c.Value(r), int64(rule.RoundTo)))
		}
		cols[i].Release()
		cols[i] = b.NewArray()
		b.Release()
	}
	out := array.NewRecordBatch(filtered.Schema(), cols, filtered.NumRows())
	for _, c := range cols {
		c.Release()
	}
	return out, rep, nil
}

// roundTo rounds a non-negative count to the nearest multiple of m, halves up.
func roundTo(v, m int64) int64 {
	return (v + m/2) / m * m
}

// filterRows keeps the first ncols columns of rec and the rows where mask is true, by
// concatenating slices of the kept runs of rows (results are small: one row per group).
// Column i is renamed names[i] where that is set: the output's names are the same in every
// mode (engine.Plan.Names), not the engine's (count_star()).
func filterRows(rec arrow.RecordBatch, ncols int, names []string, mask *array.Boolean) (arrow.RecordBatch, error) {
	type run struct{ from, to int64 }
	var runs []run
	var rows int64
	for r := 0; r < mask.Len(); r++ {
		if !mask.Value(r) {
			continue
		}
		rows++
		if k := len(runs); k > 0 && runs[k-1].to == int64(r) {
			runs[k-1].to++
			continue
		}
		runs = append(runs, run{int64(r), int64(r) + 1})
	}
	fields := slices.Clone(rec.Schema().Fields()[:ncols])
	for i := range fields {
		if i < len(names) && names[i] != "" {
			fields[i].Name = names[i]
		}
	}
	cols := make([]arrow.Array, ncols)
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i := range cols {
		if len(runs) == 0 {
			cols[i] = array.MakeArrayOfNull(memory.DefaultAllocator, fields[i].Type, 0)
			continue
		}
		parts := make([]arrow.Array, len(runs))
		for k, ru := range runs {
			parts[k] = array.NewSlice(rec.Column(i), ru.from, ru.to)
		}
		c, err := array.Concatenate(parts, memory.DefaultAllocator)
		for _, p := range parts {
			p.Release()
		}
		if err != nil {
			return nil, err
		}
		cols[i] = c
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rows), nil
}

type cellFlags struct {
	dominance bool
	priors    []string
}

// checkCells finds, for each row of rec, whether a check names its cell: rows and check
// results are matched on their group keys (nkeys columns from column from in rec, the first
// nkeys columns of a check's result).
func checkCells(rec arrow.RecordBatch, from, nkeys int, checks []CheckResult) ([]cellFlags, error) {
	flags := make([]cellFlags, rec.NumRows())
	if len(checks) == 0 {
		return flags, nil
	}
	byKey := map[string][]int{}
	for r := 0; r < int(rec.NumRows()); r++ {
		k := cellKey(rec, from, nkeys, r)
		byKey[k] = append(byKey[k], r)
	}
	for _, c := range checks {
		if c.Rec == nil {
			return nil, fmt.Errorf("gate: the %s check returned no result", c.Kind)
		}
		if c.Rec != nil && c.Rec.NumRows() == 0 {
			continue // nothing fails (or the runner skipped a check the result decided)
		}
		if int(c.Rec.NumCols()) < nkeys {
			return nil, fmt.Errorf("gate: the %s check returned %d columns for %d keys", c.Kind, c.Rec.NumCols(), nkeys)
		}
		for r := 0; r < int(c.Rec.NumRows()); r++ {
			rows := byKey[cellKey(c.Rec, 0, nkeys, r)]
			switch c.Kind {
			case engine.CheckDominance:
				for _, i := range rows {
					flags[i].dominance = true
				}
			case engine.CheckDifference:
				if int(c.Rec.NumCols()) != nkeys+len(c.Priors) {
					return nil, fmt.Errorf("gate: the difference check returned %d columns for %d keys and %d priors", c.Rec.NumCols(), nkeys, len(c.Priors))
				}
				for p, job := range c.Priors {
					b, ok := c.Rec.Column(nkeys + p).(*array.Boolean)
					if !ok {
						return nil, errors.New("gate: a difference flag is not BOOLEAN")
					}
					if b.IsValid(r) && b.Value(r) {
						for _, i := range rows {
							flags[i].priors = append(flags[i].priors, job)
						}
					}
				}
			default:
				return nil, fmt.Errorf("gate: unknown check %q", c.Kind)
			}
		}
	}
	return flags, nil
}

// cellKey is a row's group keys as one string (NULL distinct from every value).
func cellKey(rec arrow.RecordBatch, from, n, r int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		c := rec.Column(i)
		if c.IsNull(r) {
			b.WriteString("\x00N\x00")
			continue
		}
		v := c.ValueStr(r)
		fmt.Fprintf(&b, "\x01%d:%s", len(v), v)
	}
	return b.String()
}
