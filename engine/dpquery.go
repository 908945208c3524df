package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DPOptions are what a vendor states with a dp query: the budget it spends and the
// contribution bounds.
type DPOptions struct {
	Epsilon   float64 `json:"epsilon"`
	Delta     float64 `json:"delta,omitempty"`
	MaxGroups int64   `json:"max_groups,omitempty"` // groups one privacy unit may contribute to (default 1)
	MaxRows   int64   `json:"max_rows,omitempty"`   // rows one unit may contribute to one group (default 1)
	// Bounds clamp a column's values, overriding the catalog's: "column" or "alias.column"
	// → [lower, upper].
	Bounds map[string][2]float64 `json:"bounds,omitempty"`
	Noise  string                `json:"noise,omitempty"` // laplace (default) or gaussian
}

// Noise mechanisms a dp query may ask for; package dp implements them.
const (
	NoiseLaplace  = "laplace"
	NoiseGaussian = "gaussian"
)

// DPQuantileLeaves is the number of leaves the SQL buckets quantile values into: the leaves
// of the default quantile tree of Google's library (branching 16, height 4). The daemon
// checks at compile time that it equals dp.QuantileLeaves.
const DPQuantileLeaves = 65536

// Limits on what one query may ask for.
const (
	MaxDPGroups       = 1000
	MaxDPRows         = 10000
	MaxDPAggregates   = 20
	MaxDPDomainGroups = 100000
)

// DP aggregate kinds.
const (
	AggCount      = "count"       // COUNT(*)
	AggCountUnits = "count_units" // COUNT(DISTINCT unit)
	AggSum        = "sum"
	AggAvg        = "avg"
	AggQuantile   = "quantile"
)

// DPKey is a group-by key of a dp query.
type DPKey struct {
	Name   string   `json:"name"`             // output column name
	Domain []string `json:"domain,omitempty"` // public domain: every value is released
}

// DPAgg is one aggregate of a dp query.
type DPAgg struct {
	Name   string  `json:"name"` // output column name
	Kind   string  `json:"kind"`
	Column string  `json:"column,omitempty"` // the aggregated column, as written
	Lower  float64 `json:"lower,omitempty"`
	Upper  float64 `json:"upper,omitempty"`
	Rank   float64 `json:"rank,omitempty"` // quantiles
}

// DPItem places a key (Key true) or an aggregate at its position in the vendor's SELECT.
type DPItem struct {
	Key   bool `json:"key,omitempty"`
	Index int  `json:"index"`
}

// DPPlan is what the DP gate needs to release a dp query's result.
type DPPlan struct {
	Keys      []DPKey  `json:"keys"`
	Aggs      []DPAgg  `json:"aggs"`
	Items     []DPItem `json:"items"`
	MaxGroups int64    `json:"max_groups"`
	MaxRows   int64    `json:"max_rows"`
	Noise     string   `json:"noise"`
	Epsilon   float64  `json:"epsilon"` // what the query asked for; the daemon turns it into a ledger spend
	Delta     float64  `json:"delta"`
	// PublicKeys is true when every key has a public domain: no partition selection.
	PublicKeys bool `json:"public_keys"`
	// DirectSQL computes the same partial aggregates without the per-unit pass. It is exact
	// only when every privacy unit has at most one row and every row has a unit
	// (single-dataset queries whose dataset's measured maximum of rows per unit is 1 and
	// whose Table.UnitComplete holds): bounding would then change nothing.
	DirectSQL string `json:"direct_sql,omitempty"`
}

// Hidden columns of a dp result, after the keys: the number of distinct (bounded) privacy
// units per group, then each aggregate's partial values.
const (
	DPUnitsColumn = "__veil_units"
	dpPrefix      = "__veil_a"
)

// DPColumns names the hidden result columns of aggregate i.
func DPColumns(i int, kind string) []string {
	p := fmt.Sprintf("%s%d", dpPrefix, i)
	switch kind {
	case AggCount:
		return []string{p + "_n"}
	case AggSum:
		return []string{p + "_s"}
	case AggAvg:
		return []string{p + "_n", p + "_s"}
	case AggQuantile:
		return []string{p + "_h"}
	}
	return nil // count_units reads the units column
}

// ValidateDP checks a dp query and plans its contribution-bounded evaluation. The query must
// be SELECT keys, aggregates FROM datasets [JOIN ... ON unit = unit] [WHERE ...] GROUP BY
// keys, with keys plain columns and aggregates COUNT(*), COUNT(DISTINCT unit), SUM, AVG,
// MEDIAN or QUANTILE_CONT of plain columns.
func (v *Validator) ValidateDP(ctx context.Context, query string, sc Scope, opt DPOptions) (*Plan, error) {
	if err := checkDPOptions(&opt); err != nil {
		return nil, err
	}
	return v.plan("dp", query, &sc, opt, func() (*Plan, error) {
		var plan *Plan
		err := v.run(ctx, func(ctx context.Context, s *vsession) error {
			var err error
			s.tenant = sc.Tenant
			plan, err = s.validateDP(ctx, query, &sc, opt)
			return err
		})
		return plan, err
	})
}

func (s *vsession) validateDP(ctx context.Context, query string, sc *Scope, opt DPOptions) (*Plan, error) {
	p, node, err := s.parseOne(ctx, query)
	if err != nil {
		return nil, err
	}
	resolveSources(node, sc)
	w := newWalker(sc)
	w.query = query
	if err := w.selectNode(node); err != nil {
		return nil, err
	}
	// The vendor's query as DuckDB regenerates it: the bound-plan check decides on it, and
	// its FROM and WHERE are what the rewrite runs.
	vendorSQL, err := s.deserialize(ctx, p.Statements[0])
	if err != nil {
		return nil, err
	}
	if _, ok := node["having"].(map[string]any); ok {
		return nil, refuse("HAVING", "HAVING is not allowed in dp mode: filter the released output instead")
	}
	if len(list(node, "modifiers")) > 0 {
		return nil, refuse("ORDER BY / LIMIT", "ORDER BY and LIMIT are not allowed in dp mode: which groups are released is decided by partition selection, and they come back sorted by key")
	}
	if err := w.dpFrom(obj(node, "from_table")); err != nil {
		return nil, err
	}

	dpp := &DPPlan{MaxGroups: opt.MaxGroups, MaxRows: opt.MaxRows, Noise: opt.Noise}
	// Keys: the GROUP BY columns.
	var keyRefs []string
	keyByRef := map[string]int{}
	for _, g := range list(node, "group_expressions") {
		e := g.(map[string]any)
		if str(e, "class") != "COLUMN_REF" {
			return nil, refuse("GROUP BY", "dp mode groups by plain columns only")
		}
		cols := w.resolve(names(e))
		if len(cols) != 1 {
			return nil, refuse("GROUP BY", "column %s is ambiguous or not granted", strings.Join(names(e), "."))
		}
		ref, id := qualified(names(e)), w.columnID(names(e))
		if _, dup := keyByRef[id]; dup {
			return nil, refuse("GROUP BY", "%s appears twice", strings.Join(names(e), "."))
		}
		keyByRef[id] = len(keyRefs)
		keyRefs = append(keyRefs, ref)
		dpp.Keys = append(dpp.Keys, DPKey{Name: names(e)[len(names(e))-1], Domain: cols[0].Domain})
	}
	dpp.PublicKeys = len(dpp.Keys) > 0
	domainGroups := 1
	for _, k := range dpp.Keys {
		if len(k.Domain) == 0 {
			dpp.PublicKeys = false
		}
		domainGroups *= max(len(k.Domain), 1)
	}
	if dpp.PublicKeys && domainGroups > MaxDPDomainGroups {
		return nil, refuse("GROUP BY", "the keys' public domains make %d groups; at most %d may be released", domainGroups, MaxDPDomainGroups)
	}

	// The select list: keys and aggregates.
	var valueRefs []string // per aggregate: the clamped column, "" for counts
	seenKey := map[int]bool{}
	for _, it := range list(node, "select_list") {
		e := it.(map[string]any)
		switch str(e, "class") {
		case "COLUMN_REF":
			i, ok := keyByRef[w.columnID(names(e))]
			if !ok {
				return nil, refuse("SELECT", "%s is not a GROUP BY key: dp mode selects keys and aggregates only", strings.Join(names(e), "."))
			}
			if seenKey[i] {
				return nil, refuse("SELECT", "key %s is selected twice", strings.Join(names(e), "."))
			}
			seenKey[i] = true
			dpp.Keys[i].Name = w.outputName(e)
			dpp.Items = append(dpp.Items, DPItem{Key: true, Index: i})
		case "FUNCTION":
			a, ref, err := w.dpAggregate(e, opt)
			if err != nil {
				return nil, err
			}
			if n := w.outputName(e); n != "" {
				a.Name = n
			}
			dpp.Items = append(dpp.Items, DPItem{Index: len(dpp.Aggs)})
			dpp.Aggs = append(dpp.Aggs, a)
			valueRefs = append(valueRefs, ref)
		default:
			return nil, refuse("SELECT", "dp mode selects GROUP BY keys and the aggregates COUNT(*), COUNT(DISTINCT unit), SUM, AVG, MEDIAN and QUANTILE_CONT of columns; expressions are not allowed")
		}
	}
	if len(dpp.Aggs) == 0 {
		return nil, refuse("SELECT", "a dp query needs at least one aggregate")
	}
	if len(dpp.Aggs) > MaxDPAggregates {
		return nil, refuse("SELECT", "at most %d aggregates per dp query", MaxDPAggregates)
	}
	var outNames []string
	for _, it := range dpp.Items {
		n := dpp.Aggs[min(it.Index, len(dpp.Aggs)-1)].Name
		if it.Key {
			n = dpp.Keys[it.Index].Name
		}
		if strings.HasSuffix(n, "_ci_lower") || strings.HasSuffix(n, "_ci_upper") {
			return nil, refuse("SELECT", "output column %s is ambiguous (dp adds the interval columns NAME_ci_lower and NAME_ci_upper): give it another name (AS ...)", n)
		}
		outNames = append(outNames, n)
	}
	if err := distinctNames(outNames); err != nil {
		return nil, err
	}
	if !dpp.PublicKeys && opt.Delta == 0 && len(dpp.Keys) > 0 {
		return nil, refuse("delta", "the group keys have no public domain in the catalog, so which groups exist is itself private and is decided by partition selection, which needs a delta: pass a delta (for example --delta 1e-6)")
	}
	if opt.Noise == NoiseGaussian && opt.Delta == 0 {
		return nil, refuse("delta", "gaussian noise needs a delta")
	}
	dpp.Epsilon, dpp.Delta = opt.Epsilon, opt.Delta

	// The rows relation: the vendor's FROM and WHERE, selecting the unit, the keys and the
	// clamped values. It is built as a tree and serialized by DuckDB, like the threshold plan.
	alias := w.order[0]
	u, _ := w.tables[alias].unit()
	items := []string{fmt.Sprintf("%s.%s AS __veil_u", quoteIdent(alias), quoteIdent(u.Name))}
	for i, k := range keyRefs {
		items = append(items, fmt.Sprintf("%s AS __veil_k%d", k, i))
	}
	for i, ref := range valueRefs {
		if ref == "" {
			continue
		}
		a := dpp.Aggs[i]
		// A CASE rather than greatest and least: it keeps a missing value missing (a
		// comparison with NULL is not true) and costs DuckDB a tenth of what the functions do.
		// NaN compares above every number in DuckDB and becomes the upper bound.
		x := fmt.Sprintf("TRY_CAST(%s AS DOUBLE)", ref)
		items = append(items, fmt.Sprintf("CASE WHEN %[1]s < %[2]s THEN %[2]s WHEN %[1]s > %[3]s THEN %[3]s ELSE %[1]s END AS __veil_v%[4]d",
			x, lit(a.Lower)+"::DOUBLE", lit(a.Upper)+"::DOUBLE", i))
	}
	var list []any
	for _, it := range items {
		e, err := s.expression(ctx, it)
		if err != nil {
			return nil, err
		}
		list = append(list, e)
	}
	node["select_list"] = list
	node["group_expressions"] = []any{}
	node["group_sets"] = []any{}
	node["aggregate_handling"] = "STANDARD_HANDLING"
	rowsSQL, err := s.deserialize(ctx, p.Statements[0])
	if err != nil {
		return nil, err
	}
	var domain []string
	for i, k := range dpp.Keys {
		if len(k.Domain) > 0 {
			domain = append(domain, fmt.Sprintf("CAST(__veil_k%d AS VARCHAR) IN (%s)", i, litList(k.Domain)))
		}
	}
	where := func(conds []string) string {
		if len(conds) == 0 {
			return "(" + rowsSQL + ")"
		}
		return fmt.Sprintf("(SELECT * FROM (%s) WHERE %s)", rowsSQL, strings.Join(conds, " AND "))
	}
	// A row without a privacy unit belongs to no one the bound can count: the bounded plan
	// drops it. The direct plan does not test for it (reading the unit column costs as much
	// as the rest of its work); the daemon runs it only on data measured to have no such row.
	rows := where(append([]string{"__veil_u IS NOT NULL"}, domain...))

	plan := &Plan{Query: query, DP: dpp, Tables: w.tableNames(), Columns: len(dpp.Items)}
	plan.SQL = dpBoundedSQL(dpp, rows)
	if len(w.order) == 1 {
		dpp.DirectSQL = dpDirectSQL(dpp, where(domain))
	}
	if err := s.check(ctx, sc, plan.Tables, []string{vendorSQL}, []string{plan.SQL, dpp.DirectSQL}); err != nil {
		return nil, err
	}
	return plan, nil
}

// columnID names the column a reference resolves to (its table's alias and its name, in
// lower case), so that two spellings of one column are one key.
func (w *walker) columnID(parts []string) string {
	if o := w.owners(parts); len(o) == 1 {
		return o[0] + "." + lowerASCII(parts[len(parts)-1])
	}
	return lowerASCII(strings.Join(parts, "."))
}

func qualified(parts []string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = quoteIdent(p)
	}
	return strings.Join(q, ".")
}

func lit(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func litList(vals []string) string {
	q := make([]string, len(vals))
	for i, s := range vals {
		q[i] = "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return strings.Join(q, ", ")
}

func keyCols(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s__veil_k%d", prefix, i)
	}
	return out
}

// leaf buckets a clamped value into the quantile tree's leaves.
func leaf(a DPAgg, v string) string {
	return fmt.Sprintf("least(CAST(floor((%s - %s) / %s * %d) AS BIGINT), %d)", v, lit(a.Lower), lit(a.Upper-a.Lower), DPQuantileLeaves, DPQuantileLeaves-1)
}

// dpBoundedSQL aggregates per (unit, group), keeps at most MaxGroups groups per unit (those
// with the smallest keyed hash: a random choice the vendor cannot steer), caps each unit's
// rows per group at MaxRows (a unit with more rows counts as MaxRows rows of its own
// average), and sums per group. Aggregates and joins, never window functions, which sort.
//
// With MaxGroups 1 the unit's group is chosen first, by one aggregation per unit over the
// rows (the smallest hash of unit, key and secret), and only the rows of chosen groups are
// aggregated per unit: the choice costs less than the per-(unit, group) aggregation it
// shrinks. With more groups per unit the choice needs every (unit, group) first, so the
// per-(unit, group) partials are kept whole and arg_min picks the G of them with the
// smallest hashes. Both compute the same partials for the same secret.
func dpBoundedSQL(p *DPPlan, rows string) string {
	keys := keyCols(len(p.Keys), "")
	per := []string{"__veil_u"}
	per = append(per, keys...)
	per = append(per, "count(*) AS __veil_n")
	fields := []string{}
	for _, k := range keys {
		fields = append(fields, fmt.Sprintf("'%s': %s", k, k))
	}
	fields = append(fields, "'__veil_n': __veil_n")
	for i, a := range p.Aggs {
		switch a.Kind {
		case AggSum, AggAvg:
			per = append(per, fmt.Sprintf("count(__veil_v%d) AS __veil_c%d, sum(__veil_v%d) AS __veil_s%d", i, i, i, i))
			fields = append(fields, fmt.Sprintf("'__veil_c%d': __veil_c%d, '__veil_s%d': __veil_s%d", i, i, i, i))
		case AggQuantile:
			per = append(per, fmt.Sprintf("median(__veil_v%d) AS __veil_m%d", i, i))
			fields = append(fields, fmt.Sprintf("'__veil_m%d': __veil_m%d", i, i))
		}
	}
	groupBy := strings.Join(append([]string{"__veil_u"}, keys...), ", ")
	hash := choiceHash(strings.Join(append(append([]string{"__veil_u"}, keys...), "getvariable('veil_secret')"), ", "))
	var bounded, r string
	switch {
	case len(keys) == 0:
		// One group: every unit is in it, nothing to choose.
		bounded = fmt.Sprintf("SELECT %s FROM %s GROUP BY __veil_u", strings.Join(per, ", "), rows)
	case p.MaxGroups == 1:
		// The unit's smallest hash names its group: the rows of that hash are the rows of
		// the group (arg_min of the key by the same hash), found by comparing each row's
		// hash, a number, with its unit's, without carrying the keys through the choice.
		// Should two of a unit's keys share a 64-bit hash, their rows count as one group's
		// (the keys' least): the unit still has one group and at most MaxRows rows in it.
		//
		// The rows join the choice on the unit alone, which the choice has once (it is
		// grouped by it), and the hash is compared after the join: a join on one integer
		// column is one DuckDB answers from an array where the units are dense integers,
		// and where they are not it is no slower than the join on both. IS TRUE keeps the
		// optimizer from moving the comparison into the join's condition; it drops
		// nothing, as neither hash is ever NULL.
		eh := choiceHash(strings.Join(append(append([]string{"__veil_e.__veil_u"}, prefixed("__veil_e.", keys)...), "getvariable('veil_secret')"), ", "))
		chosen := fmt.Sprintf("SELECT __veil_u AS __veil_cu, min(%s) AS __veil_ch FROM %s GROUP BY __veil_u", hash, rows)
		one := []string{"__veil_u"}
		for _, k := range keys {
			one = append(one, fmt.Sprintf("min(%s) AS %s", k, k))
		}
		one = append(one, per[1+len(keys):]...)
		bounded = fmt.Sprintf("SELECT %s FROM %s AS __veil_e JOIN (%s) AS __veil_x ON __veil_e.__veil_u = __veil_x.__veil_cu WHERE (%s = __veil_x.__veil_ch) IS TRUE GROUP BY __veil_u",
			strings.Join(one, ", "), rows, chosen, eh)
	default:
		perSQL := fmt.Sprintf("SELECT %s FROM %s GROUP BY %s", strings.Join(per, ", "), rows, groupBy)
		bounded = fmt.Sprintf("SELECT unnest(arg_min({%s}, %s, %d)) AS r FROM (%s) GROUP BY __veil_u", strings.Join(fields, ", "), hash, p.MaxGroups, perSQL)
		r = "r."
	}
	L := strconv.FormatInt(p.MaxRows, 10)
	out := []string{}
	for i := range p.Keys {
		out = append(out, fmt.Sprintf("CAST(%s__veil_k%d AS VARCHAR) AS __veil_k%d", r, i, i))
	}
	out = append(out, "count(*) AS "+DPUnitsColumn)
	for i, a := range p.Aggs {
		cols := DPColumns(i, a.Kind)
		c, s := fmt.Sprintf("%s__veil_c%d", r, i), fmt.Sprintf("%s__veil_s%d", r, i)
		switch a.Kind {
		case AggCount:
			out = append(out, fmt.Sprintf("CAST(sum(least(%s__veil_n, %s)) AS BIGINT) AS %s", r, L, cols[0]))
		case AggSum:
			out = append(out, fmt.Sprintf("COALESCE(sum(CASE WHEN %s > 0 THEN %s * least(%s, %s) / %s END), 0)::DOUBLE AS %s", c, s, c, L, c, cols[0]))
		case AggAvg:
			mid := lit(a.Lower + (a.Upper-a.Lower)/2)
			out = append(out, fmt.Sprintf("CAST(COALESCE(sum(least(%s, %s)), 0) AS BIGINT) AS %s", c, L, cols[0]))
			out = append(out, fmt.Sprintf("COALESCE(sum(CASE WHEN %s > 0 THEN (%s / %s - %s) * least(%s, %s) END), 0)::DOUBLE AS %s", c, s, c, mid, c, L, cols[1]))
		case AggQuantile:
			m := fmt.Sprintf("%s__veil_m%d", r, i)
			out = append(out, fmt.Sprintf("histogram(%s) FILTER (WHERE %s IS NOT NULL) AS %s", leaf(a, m), m, cols[0]))
		}
	}
	group := ""
	if len(keys) > 0 {
		group = " GROUP BY " + strings.Join(keyCols(len(keys), r), ", ")
	}
	return fmt.Sprintf("SELECT %s FROM (%s)%s", strings.Join(out, ", "), bounded, group)
}

// StateBytes is about how much one entry of the plan's per-unit aggregations holds: the
// aggregate states of one unit (count(*), each key's min, each aggregate's count and sum or
// median, arg_min's per unit where MaxGroups > 1). Where DuckDB aggregates per unit into an
// array (DPPerfectHashBits), each thread and the merge hold one entry for every possible unit
// of the units' range, outside DuckDB's memory_limit; the runner sizes that array by it.
// Measured on DuckDB 1.5 (peak resident memory per entry and state), rounded up.
func (p *DPPlan) StateBytes() int64 {
	n := int64(16 + 32*len(p.Keys))
	if p.MaxGroups > 1 {
		n += 64
	}
	for _, a := range p.Aggs {
		switch a.Kind {
		case AggSum, AggAvg:
			n += 64
		case AggQuantile:
			n += 96
		default:
			n += 16
		}
	}
	return n
}

// choiceHash is the keyed hash of a unit's group (args: unit, keys, secret) that decides
// which groups a unit keeps: DuckDB's 64-bit hash. Tests make it coarse to force ties.
var choiceHash = func(args string) string { return "hash(" + args + ")" }

// prefixed prefixes each of names with p.
func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

// dpDirectSQL is dpBoundedSQL for data where every unit has one row: each unit is then in
// one group with one row, and the per-unit pass is the identity.
func dpDirectSQL(p *DPPlan, rows string) string {
	keys := keyCols(len(p.Keys), "")
	out := []string{}
	for i := range p.Keys {
		out = append(out, fmt.Sprintf("CAST(__veil_k%d AS VARCHAR) AS __veil_k%d", i, i))
	}
	out = append(out, "count(*) AS "+DPUnitsColumn)
	for i, a := range p.Aggs {
		cols := DPColumns(i, a.Kind)
		v := fmt.Sprintf("__veil_v%d", i)
		switch a.Kind {
		case AggCount:
			out = append(out, "count(*) AS "+cols[0])
		case AggSum:
			out = append(out, fmt.Sprintf("COALESCE(sum(%s), 0)::DOUBLE AS %s", v, cols[0]))
		case AggAvg:
			mid := lit(a.Lower + (a.Upper-a.Lower)/2)
			out = append(out, fmt.Sprintf("count(%s) AS %s", v, cols[0]))
			out = append(out, fmt.Sprintf("COALESCE(sum(%s - %s), 0)::DOUBLE AS %s", v, mid, cols[1]))
		case AggQuantile:
			out = append(out, fmt.Sprintf("histogram(%s) FILTER (WHERE %s IS NOT NULL) AS %s", leaf(a, v), v, cols[0]))
		}
	}
	group := ""
	if len(keys) > 0 {
		group = " GROUP BY " + strings.Join(keys, ", ")
	}
	return fmt.Sprintf("SELECT %s FROM %s%s", strings.Join(out, ", "), rows, group)
}

func checkDPOptions(o *DPOptions) error {
	if !(o.Epsilon > 0) || o.Epsilon > 100 {
		return refuse("epsilon", "a dp query needs an epsilon in (0, 100] (for example --epsilon 0.5)")
	}
	if !(o.Delta >= 0) || o.Delta >= 1e-3 {
		return refuse("delta", "delta must be in [0, 0.001)")
	}
	if o.MaxGroups == 0 {
		o.MaxGroups = 1
	}
	if o.MaxRows == 0 {
		o.MaxRows = 1
	}
	if o.MaxGroups < 1 || o.MaxGroups > MaxDPGroups {
		return refuse("max_groups", "max_groups must be between 1 and %d", MaxDPGroups)
	}
	if o.MaxRows < 1 || o.MaxRows > MaxDPRows {
		return refuse("max_rows", "max_rows must be between 1 and %d", MaxDPRows)
	}
	if o.Noise == "" {
		o.Noise = NoiseLaplace
	}
	if o.Noise != NoiseLaplace && o.Noise != NoiseGaussian {
		return refuse("noise", "noise must be laplace or gaussian")
	}
	for c, b := range o.Bounds {
		if !(b[0] < b[1]) || math.IsInf(b[0], 0) || math.IsInf(b[1], 0) || math.IsNaN(b[0]) || math.IsNaN(b[1]) {
			return refuse("bounds", "bounds of %s must be finite with lower < upper", c)
		}
	}
	return nil
}

// parseOne parses a query that must be one SELECT statement.
func (s *vsession) parseOne(ctx context.Context, query string) (*parsed, map[string]any, error) {
	if strings.TrimSpace(query) == "" {
		return nil, nil, refuse("", "the query is empty")
	}
	if len(query) > MaxQueryBytes {
		return nil, nil, refuse("", "the query is %d bytes; the limit is %d", len(query), MaxQueryBytes)
	}
	if !utf8.ValidString(query) || strings.ContainsRune(query, 0) {
		return nil, nil, refuse("", "the query must be UTF-8 text without NUL characters")
	}
	p, err := s.parse(ctx, query)
	if err != nil {
		return nil, nil, err
	}
	if p.Error {
		if strings.Contains(p.ErrorMsg, "Only SELECT statements") {
			for _, k := range statementKinds(query) {
				if k != "SELECT" && k != "FROM" {
					return nil, nil, refuse("statement "+k, "only one SELECT statement is allowed; %s is never allowed", k)
				}
			}
			return nil, nil, refuse("statement", "only one SELECT statement is allowed")
		}
		return nil, nil, refuse("syntax", "%s", firstLine(p.ErrorMsg))
	}
	if n := len(p.Statements); n != 1 {
		return nil, nil, refuse("statement", "exactly one SELECT statement is allowed; the text holds %d", n)
	}
	node, _ := p.Statements[0]["node"].(map[string]any)
	if node == nil {
		return nil, nil, refuse("statement", "not a SELECT statement")
	}
	if m, _ := p.Statements[0]["named_param_map"].([]any); len(m) > 0 {
		return nil, nil, refuse("parameters", "query parameters ($1, ?) are not allowed; write the values into the query")
	}
	return p, node, nil
}

// dpFrom accepts only inner joins of datasets on equal privacy units of the same kind:
// contribution bounding then sees each unit's rows across all datasets.
func (w *walker) dpFrom(t map[string]any) error {
	if str(t, "type") != "JOIN" {
		return nil
	}
	if jt := str(t, "join_type"); jt != "INNER" {
		return refuse("JOIN", "dp mode allows only inner joins on the privacy unit (found %s)", jt)
	}
	if err := w.dpFrom(obj(t, "left")); err != nil {
		return err
	}
	if err := w.dpFrom(obj(t, "right")); err != nil {
		return err
	}
	if len(list(t, "using_columns")) > 0 {
		return refuse("JOIN ... USING", "dp mode joins with ON a.unit = b.unit")
	}
	c, _ := t["condition"].(map[string]any)
	if str(c, "type") != "COMPARE_EQUAL" || str(obj(c, "left"), "class") != "COLUMN_REF" || str(obj(c, "right"), "class") != "COLUMN_REF" {
		return refuse("JOIN ... ON", "dp mode joins datasets only on their privacy units: ON a.unit = b.unit")
	}
	l, r := names(obj(c, "left")), names(obj(c, "right"))
	if len(l) != 2 || len(r) != 2 {
		return refuse("JOIN ... ON", "qualify both sides of the join with their dataset: ON a.unit = b.unit")
	}
	lt, rt := w.tables[lowerASCII(l[0])], w.tables[lowerASCII(r[0])]
	if lt == nil || rt == nil {
		return refuse("JOIN ... ON", "unknown dataset in the join condition")
	}
	lu, _ := lt.unit()
	ru, _ := rt.unit()
	if lowerASCII(lu.Name) != lowerASCII(l[1]) || lowerASCII(ru.Name) != lowerASCII(r[1]) {
		return refuse("JOIN ... ON", "dp mode joins datasets only on their privacy units (%s.%s and %s.%s)", l[0], lu.Name, r[0], ru.Name)
	}
	if lt.Unit == "row" || rt.Unit == "row" {
		return refuse("JOIN", "%s and %s cannot be joined in dp mode: a dataset whose unit is row holds events, and a row of one is no row of the other", lt.Name, rt.Name)
	}
	if lt.Unit != rt.Unit {
		return refuse("JOIN", "%s is about a %s and %s about a %s: they share no privacy unit", lt.Name, lt.Unit, rt.Name, rt.Unit)
	}
	return nil
}

var numericTypes = []string{"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL"}

func isNumeric(t string) bool {
	t = strings.ToUpper(t)
	if i := strings.IndexByte(t, '('); i > 0 {
		t = t[:i]
	}
	return slices.Contains(numericTypes, t)
}

// compare refuses a text column compared with a number, with a clearer message than the
// bound-plan check's: DuckDB would cast every value of the column to a number, and fail on
// the first that is not one.
func (w *walker) compare(a, b map[string]any, clause string) error {
	col, con := a, b
	if str(a, "class") == "CONSTANT" {
		col, con = b, a
	}
	if str(col, "class") != "COLUMN_REF" || str(con, "class") != "CONSTANT" {
		return nil
	}
	cs := w.resolve(names(col))
	if len(cs) != 1 || cs[0].Type == "" {
		return nil
	}
	ct := str(obj(obj(con, "value"), "type"), "id")
	if !isNumeric(cs[0].Type) && (isNumeric(ct) || ct == "INTEGER_LITERAL") {
		return refuse(clause, "%s is %s and is compared with a number, which can fail on a value: quote the value ('...')", strings.Join(names(col), "."), cs[0].Type)
	}
	return nil
}

// dpAggregate reads one aggregate of a dp query, and the column it aggregates.
func (w *walker) dpAggregate(e map[string]any, opt DPOptions) (DPAgg, string, error) {
	name := strings.ToLower(str(e, "function_name"))
	if e["filter"] != nil {
		return DPAgg{}, "", refuse("SELECT", "FILTER is not allowed in dp mode; use WHERE")
	}
	if ob := obj(e, "order_bys"); len(list(ob, "orders")) > 0 {
		return DPAgg{}, "", refuse("SELECT", "ordered aggregates are not allowed; use quantile_cont(column, rank)")
	}
	ch := list(e, "children")
	colArg := func() (map[string]any, Column, error) {
		if len(ch) == 0 {
			return nil, Column{}, refuse("SELECT", "%s needs a column", name)
		}
		c := ch[0].(map[string]any)
		if str(c, "class") != "COLUMN_REF" {
			return nil, Column{}, refuse("SELECT", "dp aggregates take a plain column, not an expression (%s)", name)
		}
		cols := w.resolve(names(c))
		if len(cols) != 1 {
			return nil, Column{}, refuse("SELECT", "column %s is ambiguous or not granted", strings.Join(names(c), "."))
		}
		return c, cols[0], nil
	}
	switch name {
	case "count_star":
		return DPAgg{Name: "count", Kind: AggCount}, "", nil
	case "count":
		c, col, err := colArg()
		if err != nil {
			return DPAgg{}, "", err
		}
		if !col.PrivacyUnit {
			return DPAgg{}, "", refuse("SELECT", "dp mode counts rows (COUNT(*)) or persons (COUNT(DISTINCT unit)); COUNT(%s) is not supported", strings.Join(names(c), "."))
		}
		if !truthy(e, "distinct") {
			// In SQL, and in threshold mode (as count_<unit>), COUNT(unit) counts rows: dp
			// mode does not silently count persons instead, nor rows under a unit's name.
			ref := strings.Join(names(c), ".")
			return DPAgg{}, "", refuse("SELECT", "COUNT(%[1]s) counts rows, not persons; say which you mean: COUNT(*) for rows, COUNT(DISTINCT %[1]s) for persons", ref)
		}
		return DPAgg{Name: "count_units", Kind: AggCountUnits}, "", nil
	case "sum", "avg", "mean", "median", "quantile_cont", "quantile", "quantile_disc":
	default:
		return DPAgg{}, "", refuse("SELECT", "aggregate %s is not available in dp mode; use COUNT(*), COUNT(DISTINCT unit), SUM, AVG, MEDIAN or QUANTILE_CONT", name)
	}
	if truthy(e, "distinct") {
		return DPAgg{}, "", refuse("SELECT", "DISTINCT is allowed only in COUNT(DISTINCT unit)")
	}
	c, col, err := colArg()
	if err != nil {
		return DPAgg{}, "", err
	}
	ref := names(c)
	a := DPAgg{Name: name + "_" + ref[len(ref)-1], Column: strings.Join(ref, ".")}
	b, ok := bound(opt.Bounds, strings.Join(ref, "."))
	if !ok {
		b, ok = bound(opt.Bounds, ref[len(ref)-1])
	}
	switch {
	case ok:
		a.Lower, a.Upper = b[0], b[1]
	case len(col.Bounds) == 2:
		a.Lower, a.Upper = col.Bounds[0], col.Bounds[1]
	default:
		return DPAgg{}, "", refuse("SELECT", "%s has no bounds in the catalog; give them with the query (--bound %s=LOWER:UPPER)", a.Column, a.Column)
	}
	if col.Type != "" && !isNumeric(col.Type) {
		return DPAgg{}, "", refuse("SELECT", "%s is %s; dp sums, averages and quantiles need a numeric column", a.Column, col.Type)
	}
	switch name {
	case "sum":
		a.Kind = AggSum
	case "avg", "mean":
		a.Kind = AggAvg
	case "median":
		a.Kind, a.Rank = AggQuantile, 0.5
	default:
		a.Kind = AggQuantile
		if len(ch) != 2 {
			return DPAgg{}, "", refuse("SELECT", "%s(column, rank) needs one rank between 0 and 1", name)
		}
		r, ok := constantNumber(ch[1].(map[string]any))
		if !ok || r < 0 || r > 1 {
			return DPAgg{}, "", refuse("SELECT", "%s(column, rank) needs one constant rank between 0 and 1", name)
		}
		a.Rank = r
		a.Name = fmt.Sprintf("p%s_%s", strconv.FormatFloat(r*100, 'g', 4, 64), ref[len(ref)-1])
	}
	if len(ch) > 1 && a.Kind != AggQuantile {
		return DPAgg{}, "", refuse("SELECT", "%s takes one column", name)
	}
	return a, strings.Join(quoted(ref), "."), nil
}

// bound finds the query-given bounds of a column, its name spelled in any case.
func bound(bounds map[string][2]float64, name string) ([2]float64, bool) {
	if b, ok := bounds[name]; ok {
		return b, true
	}
	keys := slices.Sorted(maps.Keys(bounds)) // deterministic if two spellings are given
	for _, k := range keys {
		if lowerASCII(k) == lowerASCII(name) {
			return bounds[k], true
		}
	}
	return [2]float64{}, false
}

func quoted(parts []string) []string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = quoteIdent(p)
	}
	return q
}

// constantNumber reads a numeric constant of the parse tree.
func constantNumber(e map[string]any) (float64, bool) {
	if str(e, "class") != "CONSTANT" {
		return 0, false
	}
	val := obj(e, "value")
	if truthy(val, "is_null") {
		return 0, false
	}
	n, ok := val["value"].(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	if err != nil {
		return 0, false
	}
	t := obj(val, "type")
	if str(t, "id") == "DECIMAL" {
		scale, _ := obj(t, "type_info")["scale"].(json.Number)
		s, _ := scale.Int64()
		f /= math.Pow10(int(s))
	}
	return f, true
}
