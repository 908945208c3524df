package gate

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/veil-dp/veil/dp"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/ledger"
)

// The SQL the engine writes buckets quantile values into as many leaves as the library's
// tree has; this fails to compile if the two ever differ.
const _ = uint(engine.DPQuantileLeaves-dp.QuantileLeaves) + uint(dp.QuantileLeaves-engine.DPQuantileLeaves)

// DPRelease describes how one released column was made; it goes with the output to the
// reviewer, the vendor and the certificate.
type DPRelease struct {
	Column      string  `json:"column"`
	Aggregate   string  `json:"aggregate"`
	Mechanism   string  `json:"mechanism"`
	Scale       float64 `json:"noise_scale"`
	Epsilon     float64 `json:"epsilon"`
	Delta       float64 `json:"delta,omitempty"`
	L0          int64   `json:"max_groups"`
	LInf        float64 `json:"max_contribution"` // per unit and group
	Lower       float64 `json:"lower,omitempty"`
	Upper       float64 `json:"upper,omitempty"`
	HasInterval bool    `json:"interval"` // the output has <column>_ci_lower and _ci_upper
}

// DPReport says what the DP gate did. It holds no exact value: the number of exact groups
// is not in it, because it is not differentially private.
type DPReport struct {
	Released  int           `json:"released"`
	Columns   []DPRelease   `json:"columns"`
	Selection *DPRelease    `json:"partition_selection,omitempty"`
	Spend     ledger.Amount `json:"spend"`
}

// DP turns the exact, contribution-bounded partial aggregates of a dp plan into the
// released output: noisy values with 95% intervals, for the groups that pass partition
// selection (or every group of the public domain). spend is what the ledger charged; the
// noise is calibrated to exactly that. The exact record is left to the caller to release.
// Errors name columns and types, never values.
func DP(rec arrow.RecordBatch, plan *engine.Plan, spend ledger.Amount) (arrow.RecordBatch, DPReport, error) {
	p := plan.DP
	var rep DPReport
	if p == nil {
		return nil, rep, errors.New("dp gate: not a dp plan")
	}
	noise := dp.Noise(p.Noise)
	rep.Spend = spend
	find := func(name string) (arrow.Array, error) {
		idx := rec.Schema().FieldIndices(name)
		if len(idx) != 1 {
			return nil, fmt.Errorf("dp gate: result has no column %s", name)
		}
		return rec.Column(idx[0]), nil
	}

	_, eps, aggDelta, selDelta, err := split(p, spend)
	if err != nil {
		return nil, rep, err
	}

	// Exact partial aggregates by group key.
	type group struct {
		keys  []string
		units int64
		n     []int64
		s     []float64
		h     []map[int64]int64
	}
	newGroup := func(keys []string) *group {
		return &group{keys: keys, n: make([]int64, len(p.Aggs)), s: make([]float64, len(p.Aggs)), h: make([]map[int64]int64, len(p.Aggs))}
	}
	rows := int(rec.NumRows())
	keyCols := make([]*array.String, len(p.Keys))
	for i := range p.Keys {
		c, err := find(fmt.Sprintf("__veil_k%d", i))
		if err != nil {
			return nil, rep, err
		}
		s, ok := c.(*array.String)
		if !ok {
			return nil, rep, fmt.Errorf("dp gate: key %d is %s, not VARCHAR", i, c.DataType())
		}
		keyCols[i] = s
	}
	uc, err := find(engine.DPUnitsColumn)
	if err != nil {
		return nil, rep, err
	}
	units, ok := uc.(*array.Int64)
	if !ok {
		return nil, rep, fmt.Errorf("dp gate: %s is %s", engine.DPUnitsColumn, uc.DataType())
	}
	groups := map[string]*group{}
	var order []string
	for r := range rows {
		keys := make([]string, len(p.Keys))
		for i, c := range keyCols {
			if c.IsNull(r) {
				keys[i] = "\x00NULL"
			} else {
				keys[i] = c.Value(r)
			}
		}
		g := newGroup(keys)
		g.units = units.Value(r)
		id := strings.Join(keys, "\x1f")
		groups[id] = g
		order = append(order, id)
	}
	for i, a := range p.Aggs {
		cols := engine.DPColumns(i, a.Kind)
		arrs := make([]arrow.Array, len(cols))
		for j, name := range cols {
			if arrs[j], err = find(name); err != nil {
				return nil, rep, err
			}
		}
		for r, id := range order {
			g := groups[id]
			switch a.Kind {
			case engine.AggCount, engine.AggAvg:
				n, ok := arrs[0].(*array.Int64)
				if !ok {
					return nil, rep, fmt.Errorf("dp gate: %s is %s", cols[0], arrs[0].DataType())
				}
				g.n[i] = n.Value(r)
				if a.Kind == engine.AggAvg {
					g.s[i] = arrs[1].(*array.Float64).Value(r)
				}
			case engine.AggSum:
				s, ok := arrs[0].(*array.Float64)
				if !ok {
					return nil, rep, fmt.Errorf("dp gate: %s is %s", cols[0], arrs[0].DataType())
				}
				g.s[i] = s.Value(r)
			case engine.AggQuantile:
				h, err := histogram(arrs[0], r)
				if err != nil {
					return nil, rep, err
				}
				g.h[i] = h
			}
		}
	}

	// Which groups appear: the public domain, or those passing partition selection, or the
	// single group of an ungrouped query.
	var out []*group
	switch {
	case p.PublicKeys:
		for _, keys := range domainProduct(p.Keys) {
			id := strings.Join(keys, "\x1f")
			if g, ok := groups[id]; ok {
				out = append(out, g)
			} else {
				out = append(out, newGroup(keys))
			}
		}
	case len(p.Keys) == 0:
		if len(order) == 1 {
			out = append(out, groups[order[0]])
		} else {
			out = append(out, newGroup(nil))
		}
	default:
		for _, id := range order {
			g := groups[id]
			keep, err := dp.KeepPartition(g.units, p.MaxGroups, eps, selDelta)
			if err != nil {
				return nil, rep, err
			}
			if keep {
				out = append(out, g)
			}
		}
		rep.Selection = &DPRelease{Column: "(groups)", Aggregate: "partition selection", Mechanism: "pre-aggregated partition selection (Google DP library)",
			Epsilon: eps, Delta: selDelta, L0: p.MaxGroups, LInf: 1}
	}
	sort.Slice(out, func(a, b int) bool { return slicesLess(out[a].keys, out[b].keys) })
	rep.Released = len(out)

	// Release every aggregate of every group.
	vals := make([][]dp.Released, len(p.Aggs))
	for i, a := range p.Aggs {
		vals[i] = make([]dp.Released, len(out))
		info := DPRelease{Column: a.Name, Aggregate: a.Kind, L0: p.MaxGroups, LInf: lInf(p, a), Lower: a.Lower, Upper: a.Upper, Epsilon: eps, Delta: aggDelta}
		for gi, g := range out {
			var r dp.Released
			var err error
			switch a.Kind {
			case engine.AggCount:
				r, err = dp.Count(g.n[i], p.MaxGroups, p.MaxRows, eps, aggDelta, noise)
			case engine.AggCountUnits:
				r, err = dp.Count(g.units, p.MaxGroups, 1, eps, aggDelta, noise)
			case engine.AggSum:
				r, err = dp.Sum(g.s[i], p.MaxGroups, info.LInf, eps, aggDelta, noise)
			case engine.AggAvg:
				r, err = dp.Mean(g.n[i], g.s[i], p.MaxGroups, p.MaxRows, a.Lower, a.Upper, eps, aggDelta, noise)
			case engine.AggQuantile:
				r, err = dp.Quantile(g.h[i], a.Rank, p.MaxGroups, a.Lower, a.Upper, eps, aggDelta, noise)
			}
			if err != nil {
				return nil, rep, err
			}
			vals[i][gi] = r
			info.Mechanism, info.Scale, info.HasInterval = r.Mechanism, r.Scale, r.HasCI
		}
		if len(out) == 0 { // still describe the column
			info.Mechanism = p.Noise
		}
		rep.Columns = append(rep.Columns, info)
	}

	// Build the output in the vendor's column order.
	mem := memory.DefaultAllocator
	var fields []arrow.Field
	var arrs []arrow.Array
	defer func() {
		for _, a := range arrs {
			a.Release()
		}
	}()
	for _, it := range p.Items {
		if it.Key {
			b := array.NewStringBuilder(mem)
			for _, g := range out {
				if k := g.keys[it.Index]; k == "\x00NULL" {
					b.AppendNull()
				} else {
					b.Append(k)
				}
			}
			fields = append(fields, arrow.Field{Name: p.Keys[it.Index].Name, Type: arrow.BinaryTypes.String, Nullable: true})
			arrs = append(arrs, b.NewArray())
			b.Release()
			continue
		}
		a := p.Aggs[it.Index]
		if a.Kind == engine.AggCount || a.Kind == engine.AggCountUnits {
			b := array.NewInt64Builder(mem)
			for _, r := range vals[it.Index] {
				b.Append(int64(r.Value))
			}
			fields = append(fields, arrow.Field{Name: a.Name, Type: arrow.PrimitiveTypes.Int64})
			arrs = append(arrs, b.NewArray())
			b.Release()
		} else {
			b := array.NewFloat64Builder(mem)
			for _, r := range vals[it.Index] {
				b.Append(r.Value)
			}
			fields = append(fields, arrow.Field{Name: a.Name, Type: arrow.PrimitiveTypes.Float64})
			arrs = append(arrs, b.NewArray())
			b.Release()
		}
		for _, side := range []string{"_ci_lower", "_ci_upper"} {
			b := array.NewFloat64Builder(mem)
			for _, r := range vals[it.Index] {
				switch {
				case !r.HasCI:
					b.AppendNull()
				case side == "_ci_lower":
					b.Append(r.Lower)
				default:
					b.Append(r.Upper)
				}
			}
			fields = append(fields, arrow.Field{Name: a.Name + side, Type: arrow.PrimitiveTypes.Float64, Nullable: true})
			arrs = append(arrs, b.NewArray())
			b.Release()
		}
	}
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), arrs, int64(len(out))), rep, nil
}

// split divides a query's spend: one share of epsilon per aggregate and one for partition
// selection if it is needed; delta goes to partition selection, or with Gaussian noise one
// share to each.
func split(p *engine.DPPlan, spend ledger.Amount) (selection bool, eps, aggDelta, selDelta float64, err error) {
	selection = !p.PublicKeys && len(p.Keys) > 0
	shares := len(p.Aggs)
	if selection {
		shares++
	}
	eps = spend.Epsilon() / float64(shares)
	if dp.Noise(p.Noise) == dp.Gaussian {
		aggDelta = spend.DeltaValue() / float64(shares)
		selDelta = aggDelta
	} else if selection {
		selDelta = spend.DeltaValue()
	}
	if selection && selDelta <= 0 {
		return false, 0, 0, 0, errors.New("dp gate: partition selection needs a delta")
	}
	return selection, eps, aggDelta, selDelta, nil
}

// lInf is what one unit may change aggregate a of one group by.
func lInf(p *engine.DPPlan, a engine.DPAgg) float64 {
	switch a.Kind {
	case engine.AggCount:
		return float64(p.MaxRows)
	case engine.AggSum:
		return float64(p.MaxRows) * max(abs(a.Lower), abs(a.Upper))
	case engine.AggAvg:
		return float64(p.MaxRows) * (a.Upper - a.Lower) / 2
	}
	return 1 // count_units, quantile
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func slicesLess(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// domainProduct lists every combination of the keys' public domains.
func domainProduct(keys []engine.DPKey) [][]string {
	out := [][]string{{}}
	for _, k := range keys {
		var next [][]string
		for _, prefix := range out {
			for _, v := range k.Domain {
				next = append(next, append(append([]string{}, prefix...), v))
			}
		}
		out = next
	}
	return out
}

// histogram reads row r of a MAP(BIGINT, UBIGINT) column (DuckDB's histogram()).
func histogram(a arrow.Array, r int) (map[int64]int64, error) {
	m, ok := a.(*array.Map)
	if !ok {
		return nil, fmt.Errorf("dp gate: histogram column is %s", a.DataType())
	}
	h := map[int64]int64{}
	if m.IsNull(r) {
		return h, nil
	}
	start, end := m.ValueOffsets(r)
	keys, items := m.Keys(), m.Items()
	for i := start; i < end; i++ {
		var k, v int64
		switch ka := keys.(type) {
		case *array.Int64:
			k = ka.Value(int(i))
		default:
			return nil, fmt.Errorf("dp gate: histogram keys are %s", keys.DataType())
		}
		switch ia := items.(type) {
		case *array.Uint64:
			v = int64(ia.Value(int(i)))
		case *array.Int64:
			v = ia.Value(int(i))
		default:
			return nil, fmt.Errorf("dp gate: histogram counts are %s", items.DataType())
		}
		h[k] = v
	}
	return h, nil
}
