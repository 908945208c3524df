package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Checks of threshold mode beyond k. The threshold gate keeps a cell of at least k persons,
// but an exact SUM over k persons still gives a dominant person's value away, and two
// queries whose row sets differ by one person give that person's value by subtraction. Two
// kinds of check queries run in the sandbox next to the job's query, over the same data, and
// return only the group keys of the cells that fail (never a count, a sum or a share):
//
//   - dominance: per cell, each person's contribution to every SUM/AVG/MIN/MAX of the select
//     list; a SUM or AVG cell fails the (n,k) rule (the n largest contributions make up more
//     than k% of the total) or the p% rule (the total without the two largest is less than
//     p% of the largest); a MIN or MAX cell fails unless at least K persons share the extreme
//     value.
//   - difference: per cell of the new query, the persons whose rows are in the symmetric
//     difference of its row set and a prior query's (both WHERE clauses run over the data
//     with the new query's grouping); a cell fails for a prior when between 1 and K-1
//     persons differ. It is decided by counting, never by comparing the queries' text.

// KeysPrefix starts the names of the hidden columns holding a threshold query's group keys:
// they match the rows of the output with the cells the checks name.
const KeysPrefix = "__veil_key"

// ErrKeysChanged: a plan's hidden group keys are not the query's (a plan from before them).
var ErrKeysChanged = errors.New("checks: the plan's group keys are not the query's")

// MaxPriors bounds the prior queries one job is checked against.
const MaxPriors = 20

// PriorError refuses a threshold job that cannot be checked against one of its prior
// queries (it no longer parses, or its WHERE does not bind against the job's FROM as the
// tables are now): differencing with it cannot be ruled out, so the job does not run.
type PriorError struct {
	Job string // the prior job
	Err error
}

func (e *PriorError) Error() string {
	return fmt.Sprintf("checks: the query cannot be checked for differencing against prior job %s (%v)", e.Job, e.Err)
}

func (e *PriorError) Unwrap() error { return e.Err }

// Check kinds.
const (
	CheckDominance  = "dominance"
	CheckDifference = "difference"
)

// Check is a query Veil adds to a threshold job. Its result holds the group keys of the
// cells that fail, then (difference checks) one boolean column per prior: true where that
// prior's pair fails.
type Check struct {
	Kind   string   `json:"kind"`
	SQL    string   `json:"sql"`
	Priors []string `json:"priors,omitempty"` // difference: the prior job of each flag column
	// FastSQL (difference, one table with a known maximum of rows per person) gives the same
	// result from row counts, with one more column, DifferenceUndecided; where that is true
	// in some row, SQL must run instead.
	FastSQL string `json:"fast_sql,omitempty"`
	// CellSQL (dominance) gives every cell's verdict: the group keys, then __veil_fail,
	// true where SQL names the cell. The runner runs it restricted to the cells the query's
	// result leaves undecided (DominanceUndecided), and SQL where it cannot.
	CellSQL string `json:"cell_sql,omitempty"`
	// UnitsSQL (dominance, one table, group keys) gives per cell the group keys, then
	// __veil_units (the distinct units of its rows), __veil_rows (its rows with a unit) and
	// __veil_fail, from the one per-(cell, unit) relation of the check: the runner runs it
	// restricted to the cells the fast plan's row counts or dominance bounds leave undecided,
	// for both at once (Job.DominanceUnits).
	UnitsSQL string `json:"units_sql,omitempty"`
}

// CheckRules are the thresholds of the checks.
type CheckRules struct {
	K          int     `json:"k"`           // persons: MIN/MAX need K sharing the extreme; a difference fails below K
	DominanceN int     `json:"dominance_n"` // n of the (n,k) rule
	DominanceK float64 `json:"dominance_k"` // k of the (n,k) rule, in percent
	DominanceP float64 `json:"dominance_p"` // p of the p% rule, in percent
}

// Prior is an earlier threshold query of the same grant.
type Prior struct {
	Job   string // its job id
	Query string // its query as the vendor wrote it (validated when it was submitted)
}

// Checks builds the check queries of a validated threshold plan against the scope as it is
// now: the dominance check if the plan releases sums, averages or extremes, and one
// difference check against the priors whose row sets can differ from the plan's. A prior
// over another FROM is not paired; one whose query no longer parses or binds against the
// plan's FROM refuses the job (*PriorError, naming it). It runs nothing against data.
func (v *Validator) Checks(ctx context.Context, plan *Plan, sc Scope, priors []Prior, r CheckRules) ([]Check, error) {
	if r.K < 1 {
		return nil, errors.New("checks: k must be at least 1")
	}
	if len(priors) > MaxPriors {
		priors = priors[:MaxPriors]
	}
	var out []Check
	err := v.run(ctx, func(ctx context.Context, s *vsession) error {
		s.tenant = sc.Tenant
		p, node, err := s.parseOne(ctx, plan.Query)
		if err != nil {
			return err
		}
		resolveSources(node, &sc) // headers as in the files, as Validate resolved them
		w := newWalker(&sc)
		if err := w.selectNode(node); err != nil {
			return err
		}
		q := newCheckQuery(p.Statements[0], node, w)
		if len(q.keys) != len(plan.Keys) {
			return ErrKeysChanged
		}
		if c, ok, err := s.dominance(ctx, q, r); err != nil {
			return err
		} else if ok {
			if err := s.check(ctx, &sc, plan.Tables, nil, []string{c.SQL}); err != nil {
				return fmt.Errorf("checks: dominance: %w", err)
			}
			out = append(out, c)
		}
		var pairs []pair
		seen := map[string]bool{plan.Query: true} // the same text reads the same rows
		for _, p := range priors {
			if seen[p.Query] {
				continue
			}
			seen[p.Query] = true
			pr, ok, err := s.priorWhere(ctx, q, p, &sc)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			pairs = append(pairs, pair{job: p.Job, where: pr})
		}
		// One query for all priors. A prior whose WHERE does not bind against the query's
		// FROM refuses the job (*PriorError): skipping it would let a pair through unchecked.
		if len(pairs) > 0 {
			c, err := s.difference(ctx, q, pairs, r, &sc)
			if err != nil {
				return err
			}
			if err := s.check(ctx, &sc, plan.Tables, nil, []string{c.SQL, c.FastSQL}); err != nil {
				for _, p := range pairs {
					c1, err1 := s.difference(ctx, q, []pair{p}, r, &sc)
					if err1 == nil {
						err1 = s.check(ctx, &sc, plan.Tables, nil, []string{c1.SQL, c1.FastSQL})
					}
					if err1 != nil {
						return &PriorError{Job: p.job, Err: err1}
					}
				}
				return fmt.Errorf("checks: difference: %w", err)
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}

type pair struct {
	job   string
	where any // the prior's WHERE as the new query's FROM binds it; nil: every row
}

// checkQuery is what the checks need of the new query: its FROM, WHERE, resolved group keys
// and the units of its tables.
type checkQuery struct {
	stmt  map[string]any
	node  map[string]any
	w     *walker
	keys  []map[string]any
	where any
}

func newCheckQuery(stmt, node map[string]any, w *walker) *checkQuery {
	q := &checkQuery{stmt: stmt, node: node, w: w, keys: groupKeys(node, w)}
	if wh, ok := node["where_clause"].(map[string]any); ok {
		q.where = unalias(clone(wh), list(node, "select_list"), w)
	}
	return q
}

// statement builds a SELECT over the query's FROM with the given WHERE, select list and
// grouping, no HAVING, no ORDER BY and no LIMIT.
func (q *checkQuery) statement(where any, sel []any, groups []map[string]any) map[string]any {
	n := map[string]any{}
	for k, v := range q.node {
		n[k] = v
	}
	n["from_table"] = clone(q.node["from_table"])
	n["where_clause"] = where
	n["select_list"] = sel
	gs := make([]any, len(groups))
	idx := make([]any, len(groups))
	for i, g := range groups {
		gs[i] = g
		idx[i] = json.Number(fmt.Sprint(i))
	}
	n["group_expressions"] = gs
	if len(groups) > 0 {
		n["group_sets"] = []any{idx}
	} else {
		n["group_sets"] = []any{}
	}
	n["aggregate_handling"] = "STANDARD_HANDLING"
	n["having"] = nil
	n["modifiers"] = []any{}
	st := map[string]any{}
	for k, v := range q.stmt {
		st[k] = v
	}
	st["node"] = n
	return st
}

// keyItems are the group keys as select-list items named __veil_g<i>.
func (q *checkQuery) keyItems(prefix string) []any {
	var items []any
	for i, k := range q.keys {
		c := clone(k).(map[string]any)
		c["alias"] = fmt.Sprintf("%s%d", prefix, i)
		items = append(items, c)
	}
	return items
}

// keyItems are the hidden key columns of a plan: __veil_key_<i>.
func keyItems(keys []map[string]any) []any {
	var items []any
	for i, k := range keys {
		c := clone(k).(map[string]any)
		c["alias"] = fmt.Sprintf("%s_%d", KeysPrefix, i)
		items = append(items, c)
	}
	return items
}

// unitRefs are column references to the privacy unit of each table the query reads.
func (q *checkQuery) unitRefs() []map[string]any {
	var refs []map[string]any
	for _, a := range q.w.order {
		u, ok := q.w.tables[a].unit()
		if !ok {
			continue
		}
		refs = append(refs, map[string]any{"class": "COLUMN_REF", "type": "COLUMN_REF", "alias": "", "column_names": []any{a, u.Name}})
	}
	return refs
}

// dominance builds the dominance check, if the select list has sums, averages or extremes.
func (s *vsession) dominance(ctx context.Context, q *checkQuery, r CheckRules) (Check, bool, error) {
	type agg struct {
		node    map[string]any
		extreme string // "min" or "max"; "" for a sum
	}
	var aggs []agg
	var find func(e any)
	find = func(e any) {
		switch x := e.(type) {
		case map[string]any:
			if str(x, "class") == "FUNCTION" {
				switch name := strings.ToLower(str(x, "function_name")); name {
				case "sum", "avg", "mean":
					c := clone(x).(map[string]any)
					c["function_name"], c["alias"] = "sum", ""
					aggs = append(aggs, agg{node: c})
					return
				case "min", "max":
					c := clone(x).(map[string]any)
					c["alias"] = ""
					aggs = append(aggs, agg{node: c, extreme: name})
					return
				}
			}
			for _, v := range x {
				find(v)
			}
		case []any:
			for _, v := range x {
				find(v)
			}
		}
	}
	find(list(q.node, "select_list"))
	units := q.unitRefs()
	if len(aggs) == 0 || len(units) == 0 {
		return Check{}, false, nil
	}
	// One per-person query per table's unit: a join of person and enterprise data has two.
	nk := len(q.keys)
	var keyCols []string
	for i := 0; i < nk; i++ {
		keyCols = append(keyCols, fmt.Sprintf("__veil_g%d", i))
	}
	part := "PARTITION BY " + strings.Join(keyCols, ", ")
	if nk == 0 {
		part = ""
	}
	var parts, cells []string
	unitsSQL := ""
	for ui, u := range units {
		sel := q.keyItems("__veil_g")
		uc := clone(u).(map[string]any)
		uc["alias"] = "__veil_u"
		sel = append(sel, uc)
		groups := append(append([]map[string]any{}, q.keys...), u)
		for j, a := range aggs {
			c := clone(a.node).(map[string]any)
			c["alias"] = fmt.Sprintf("__veil_c%d", j)
			sel = append(sel, c)
		}
		inner, err := s.deserialize(ctx, q.statement(clone(q.where), sel, groups))
		if err != nil {
			return Check{}, false, err
		}
		var mid, fails []string
		for j, a := range aggs {
			c := fmt.Sprintf("__veil_c%d", j)
			if a.extreme != "" {
				mid = append(mid, fmt.Sprintf("%s(%s) OVER (%s) AS __veil_e%d", a.extreme, c, part, j))
				fails = append(fails, fmt.Sprintf("count(*) FILTER (WHERE %s = __veil_e%d) < %d AND count(%s) > 0", c, j, r.K, c))
				continue
			}
			abs := fmt.Sprintf("abs(CAST(%s AS DOUBLE))", c)
			total := fmt.Sprintf("coalesce(sum(%s), 0)", abs)
			if r.DominanceN > 0 && r.DominanceK > 0 {
				fails = append(fails, fmt.Sprintf("coalesce(list_sum(max(%s, %d)), 0) > %s / 100.0 * %s", abs, r.DominanceN, fmtFloat(r.DominanceK), total))
			}
			if r.DominanceP > 0 {
				top := fmt.Sprintf("max(%s, 2)", abs)
				fails = append(fails, fmt.Sprintf("(%s - coalesce(list_sum(%s), 0)) < %s / 100.0 * coalesce(%s[1], 0)", total, top, fmtFloat(r.DominanceP), top))
			}
		}
		if len(fails) == 0 {
			continue
		}
		from := "(" + inner + ") AS __veil_p"
		if len(mid) > 0 {
			from = "(SELECT *, " + strings.Join(mid, ", ") + " FROM " + from + ") AS __veil_p"
		}
		sel1 := "true AS __veil_fail"
		if nk > 0 {
			sel1 = strings.Join(keyCols, ", ")
		}
		q1 := fmt.Sprintf("SELECT %s FROM %s", sel1, from)
		if nk > 0 {
			q1 += " GROUP BY " + strings.Join(keyCols, ", ")
		}
		cond := "(" + strings.Join(fails, ") OR (") + ")"
		c1 := fmt.Sprintf("SELECT %s, (%s) AS __veil_fail FROM %s", sel1, cond, from)
		if nk > 0 {
			c1 = fmt.Sprintf("SELECT %s, (%s) AS __veil_fail FROM %s GROUP BY %s", strings.Join(keyCols, ", "), cond, from, strings.Join(keyCols, ", "))
		}
		q1 += " HAVING " + cond
		if len(units) == 1 && nk > 0 {
			// The same relation with each (cell, unit)'s rows: the cell's distinct units
			// are its rows with a unit, its rows with a unit their rows' sum.
			rows, err := s.expression(ctx, "count(*) AS __veil_r")
			if err != nil {
				return Check{}, false, err
			}
			inner2, err := s.deserialize(ctx, q.statement(clone(q.where), append(clone(sel).([]any), clone(rows)), groups))
			if err != nil {
				return Check{}, false, err
			}
			from2 := "(" + inner2 + ") AS __veil_p"
			if len(mid) > 0 {
				from2 = "(SELECT *, " + strings.Join(mid, ", ") + " FROM " + from2 + ") AS __veil_p"
			}
			unitsSQL = fmt.Sprintf("SELECT %[1]s, count(__veil_u) AS %[2]s_0, CAST(coalesce(sum(__veil_r) FILTER (WHERE __veil_u IS NOT NULL), 0) AS BIGINT) AS %[3]s, coalesce(%[4]s, false) AS __veil_fail FROM %[5]s GROUP BY %[1]s",
				strings.Join(keyCols, ", "), UnitsPrefix, RowsColumn, cond, from2)
		}
		_ = ui
		parts = append(parts, q1)
		cells = append(cells, c1)
	}
	if len(parts) == 0 {
		return Check{}, false, nil
	}
	c := Check{Kind: CheckDominance, SQL: strings.Join(parts, " UNION ")}
	if nk > 0 {
		// A cell fails where it fails for some table's unit.
		c.CellSQL = fmt.Sprintf("SELECT %[1]s, bool_or(coalesce(__veil_fail, false)) AS __veil_fail FROM (%[2]s) AS __veil_v GROUP BY %[1]s",
			strings.Join(keyCols, ", "), strings.Join(cells, " UNION ALL "))
		c.UnitsSQL = unitsSQL
	}
	return c, true, nil
}

func fmtFloat(f float64) string { return fmt.Sprintf("%g", f) }

// priorWhere finds a prior query's WHERE as the new query's FROM binds it. It pairs a prior
// that reads the same FROM (the same tables, aliases and joins), or, when both read one
// table alone, the same table under any alias. A prior with the same WHERE as the new query
// selects the same rows, and one over another FROM other rows: both are not paired (false).
// A prior that no longer parses or validates against the scope is a *PriorError: it cannot
// be ruled out, so it is never skipped.
func (s *vsession) priorWhere(ctx context.Context, q *checkQuery, p Prior, sc *Scope) (any, bool, error) {
	_, node, err := s.parseOne(ctx, p.Query)
	if err != nil {
		return nil, false, &PriorError{Job: p.Job, Err: err}
	}
	resolveSources(node, sc) // a prior that names "Origin State" pairs like one naming origin_state
	pw := newWalker(sc)
	if err := pw.selectNode(node); err != nil {
		return nil, false, &PriorError{Job: p.Job, Err: err}
	}
	var where any
	if wh, ok := node["where_clause"].(map[string]any); ok {
		where = unalias(clone(wh), list(node, "select_list"), pw)
	}
	qf, pf := obj(q.node, "from_table"), obj(node, "from_table")
	switch {
	case sameTree(qf, pf):
	case str(qf, "type") == "BASE_TABLE" && str(pf, "type") == "BASE_TABLE" && lowerASCII(str(qf, "table_name")) == lowerASCII(str(pf, "table_name")):
		where = unqualify(where)
		if q.where != nil {
			q.where = unqualify(q.where)
		}
	default:
		return nil, false, nil
	}
	if sameTree(where, q.where) {
		return nil, false, nil
	}
	return where, true, nil
}

// difference builds the difference check of the new query against prior WHERE clauses: per
// cell, one flag per prior, true where 1 to K-1 persons' rows are in exactly one of the two.
//
// Both variants read only the rows in some symmetric difference (the WHERE is the OR of the
// pairs' differences): a cell without such rows cannot fail, and the per-person aggregate,
// the expensive part, then sees those rows alone. Where the query reads one table whose
// maximum of rows per person M is known, FastSQL counts the differing rows that name a
// person instead of the persons: n of them hold between ceil(n/M) and n persons, so n = 0
// passes, 1 <= n < K fails and n > (K-1)*M passes, all for certain. Its last column
// (DifferenceUndecided) is true in the cells in between; only when some cell is undecided
// does the runner run SQL, the exact count. Which of the two ran, and how many rows differ,
// shows in the job's duration alone: that is data-dependent as the query's own time is, and
// hidden the same way, by the release quantum (a vendor sees the outcome only at fixed time
// quanta).
func (s *vsession) difference(ctx context.Context, q *checkQuery, pairs []pair, r CheckRules, sc *Scope) (Check, error) {
	units := q.unitRefs()
	if len(units) == 0 {
		return Check{}, errors.New("checks: the query reads no privacy unit")
	}
	// m: the rows-per-person maximum of the one table read, in the version that runs now.
	m, complete := int64(0), false
	if len(units) == 1 && len(q.w.order) == 1 {
		t := q.w.tables[q.w.order[0]]
		m, complete = t.MaxRowsPerUnit, t.UnitComplete
		for _, st := range sc.Tables {
			if st.Name == t.Name {
				m, complete = st.MaxRowsPerUnit, st.UnitComplete
			}
		}
	}
	// Rows that name a person; where every row does, count(*) need not read the unit column.
	rowsOf := "count(__veil_u)"
	if complete {
		rowsOf = "count(*)"
	}
	const diff = "coalesce(CAST(__veil_a%[1]d AS BOOLEAN), false) <> coalesce(CAST(__veil_b%[1]d AS BOOLEAN), false)"
	var items, conds []string
	for i := range pairs {
		d := fmt.Sprintf(diff, i)
		conds = append(conds, "("+d+")")
		items = append(items, fmt.Sprintf("count(DISTINCT __veil_u) FILTER (WHERE %s) AS __veil_d%d", d, i),
			fmt.Sprintf("%s FILTER (WHERE %s) AS __veil_r%d", rowsOf, d, i))
	}
	tmpl, err := s.parse(ctx, "SELECT "+strings.Join(items, ", ")+" WHERE "+strings.Join(conds, " OR "))
	if err != nil || tmpl.Error || len(tmpl.Statements) != 1 {
		return Check{}, fmt.Errorf("checks: template: %v", err)
	}
	tnode := obj(tmpl.Statements[0], "node")
	titems := tnode["select_list"].([]any)
	truth := map[string]any{"class": "CONSTANT", "type": "VALUE_CONSTANT", "alias": "", "value": map[string]any{"type": map[string]any{"id": "BOOLEAN", "type_info": nil}, "is_null": false, "value": true}}
	or := func(e any) any {
		if e == nil {
			return clone(truth)
		}
		return clone(e)
	}
	repl := map[string]any{}
	for i, p := range pairs {
		repl[fmt.Sprintf("__veil_a%d", i)] = or(q.where)
		repl[fmt.Sprintf("__veil_b%d", i)] = or(p.where)
	}
	where := substitute(clone(tnode["where_clause"]), repl)
	sel := q.keyItems("__veil_g")
	fastSel := q.keyItems("__veil_g")
	var flags, names, fastFlags, fastNames, undecided []string
	c := Check{Kind: CheckDifference}
	for i, p := range pairs {
		for ui, u := range units {
			rp := map[string]any{"__veil_u": u}
			for k, v := range repl {
				rp[k] = v
			}
			it := substitute(clone(titems[2*i]), rp).(map[string]any)
			name := fmt.Sprintf("__veil_d%d_%d", i, ui)
			it["alias"] = name
			sel = append(sel, it)
			names = append(names, fmt.Sprintf("(%s BETWEEN 1 AND %d)", name, r.K-1))
			if m > 0 {
				ft := substitute(clone(titems[2*i+1]), rp).(map[string]any)
				fname := fmt.Sprintf("__veil_r%d", i)
				ft["alias"] = fname
				fastSel = append(fastSel, ft)
				fastNames = append(fastNames, fmt.Sprintf("(%s BETWEEN 1 AND %d)", fname, (int64(r.K)-1)*m))
				fastFlags = append(fastFlags, fmt.Sprintf("(%s BETWEEN 1 AND %d) AS __veil_f%d", fname, r.K-1, i))
				undecided = append(undecided, fmt.Sprintf("(%s BETWEEN %d AND %d)", fname, r.K, (int64(r.K)-1)*m))
			}
		}
		flags = append(flags, fmt.Sprintf("(%s) AS __veil_f%d", strings.Join(names[len(names)-len(units):], " OR "), i))
		c.Priors = append(c.Priors, p.job)
	}
	inner, err := s.deserialize(ctx, q.statement(clone(where), sel, q.keys))
	if err != nil {
		return Check{}, err
	}
	var keyCols []string
	for i := range q.keys {
		keyCols = append(keyCols, fmt.Sprintf("__veil_g%d", i))
	}
	outer := append(append([]string{}, keyCols...), flags...)
	c.SQL = fmt.Sprintf("SELECT %s FROM (%s) AS __veil_p WHERE %s", strings.Join(outer, ", "), inner, strings.Join(names, " OR "))
	if m > 0 {
		fast, err := s.deserialize(ctx, q.statement(clone(where), fastSel, q.keys))
		if err != nil {
			return Check{}, err
		}
		outer := append(append([]string{}, keyCols...), fastFlags...)
		outer = append(outer, fmt.Sprintf("(%s) AS %s", strings.Join(undecided, " OR "), DifferenceUndecided))
		c.FastSQL = fmt.Sprintf("SELECT %s FROM (%s) AS __veil_p WHERE %s", strings.Join(outer, ", "), fast, strings.Join(fastNames, " OR "))
	}
	return c, nil
}

// DifferenceUndecided names the last column of a difference check's FastSQL: true in a
// cell whose row count leaves the check undecided.
const DifferenceUndecided = "__veil_undecided"

// groupKeys are a query's group keys as expressions over its FROM: positions (GROUP BY 1)
// and select-list aliases replaced by what they name; GROUP BY ALL by the select-list items
// without an aggregate.
func groupKeys(node map[string]any, w *walker) []map[string]any {
	sel := list(node, "select_list")
	groups := list(node, "group_expressions")
	var out []map[string]any
	if len(groups) == 0 && str(node, "aggregate_handling") == "FORCE_AGGREGATES" {
		for _, it := range sel {
			if !hasAggregate(it) {
				c := clone(it).(map[string]any)
				c["alias"] = ""
				out = append(out, c)
			}
		}
		return out
	}
	for _, g := range groups {
		gm := g.(map[string]any)
		if str(gm, "class") == "CONSTANT" {
			if n, err := strconv.Atoi(fmt.Sprint(obj(gm, "value")["value"])); err == nil && n >= 1 && n <= len(sel) {
				c := clone(sel[n-1]).(map[string]any)
				c["alias"] = ""
				out = append(out, c)
				continue
			}
		}
		out = append(out, unalias(clone(gm), sel, w).(map[string]any))
	}
	return out
}

func hasAggregate(e any) bool {
	switch x := e.(type) {
	case map[string]any:
		if str(x, "class") == "FUNCTION" {
			if _, ok := aggregates[strings.ToLower(str(x, "function_name"))]; ok {
				return true
			}
		}
		for _, v := range x {
			if hasAggregate(v) {
				return true
			}
		}
	case []any:
		for _, v := range x {
			if hasAggregate(v) {
				return true
			}
		}
	}
	return false
}

// unalias replaces references to select-list aliases (that name no granted column) by the
// items they name.
func unalias(e any, sel []any, w *walker) any {
	switch x := e.(type) {
	case map[string]any:
		if str(x, "class") == "COLUMN_REF" {
			parts := names(x)
			if len(parts) == 1 && len(w.resolve(parts)) == 0 {
				for _, it := range sel {
					m := it.(map[string]any)
					if lowerASCII(str(m, "alias")) == lowerASCII(parts[0]) {
						c := clone(m).(map[string]any)
						c["alias"] = ""
						return c
					}
				}
			}
			return x
		}
		for k, v := range x {
			x[k] = unalias(v, sel, w)
		}
		return x
	case []any:
		for i, v := range x {
			x[i] = unalias(v, sel, w)
		}
		return x
	}
	return e
}

// unqualify drops the table qualifier of every column reference (one table: unambiguous).
func unqualify(e any) any {
	switch x := e.(type) {
	case map[string]any:
		if str(x, "class") == "COLUMN_REF" {
			if p := list(x, "column_names"); len(p) == 2 {
				x["column_names"] = []any{p[1]}
			}
			return x
		}
		for k, v := range x {
			x[k] = unqualify(v)
		}
	case []any:
		for i, v := range x {
			x[i] = unqualify(v)
		}
	}
	return e
}

// substitute replaces the column references named in repl (one-part names) by their trees.
func substitute(e any, repl map[string]any) any {
	switch x := e.(type) {
	case map[string]any:
		if str(x, "class") == "COLUMN_REF" {
			if p := names(x); len(p) == 1 {
				if r, ok := repl[p[0]]; ok {
					return clone(r)
				}
			}
			return x
		}
		for k, v := range x {
			x[k] = substitute(v, repl)
		}
	case []any:
		for i, v := range x {
			x[i] = substitute(v, repl)
		}
	}
	return e
}

// clone deep-copies a parse tree.
func clone(e any) any {
	switch x := e.(type) {
	case map[string]any:
		c := make(map[string]any, len(x))
		for k, v := range x {
			c[k] = clone(v)
		}
		return c
	case []any:
		c := make([]any, len(x))
		for i, v := range x {
			c[i] = clone(v)
		}
		return c
	}
	return e
}

// sameTree compares two parse trees, ignoring where in the text they were written.
func sameTree(a, b any) bool {
	return reflect.DeepEqual(stripLocations(clone(a)), stripLocations(clone(b)))
}

func stripLocations(e any) any {
	switch x := e.(type) {
	case map[string]any:
		delete(x, "query_location")
		for k, v := range x {
			x[k] = stripLocations(v)
		}
	case []any:
		for i, v := range x {
			x[i] = stripLocations(v)
		}
	}
	return e
}

// ReadResults reads the result of a job with checks: the query's Arrow IPC stream, then one
// stream per check, together at most max bytes.
func ReadResults(r io.Reader, max int64, checks int) ([]arrow.RecordBatch, error) {
	lr := &io.LimitedReader{R: r, N: max + 1}
	var out []arrow.RecordBatch
	for i := 0; i <= checks; i++ {
		rec, err := ReadResult(lr, lr.N-1)
		if err != nil {
			for _, o := range out {
				o.Release()
			}
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// Prefixes of the hidden dominance columns of a plan (Plan.Dominance), one of each per SUM
// or AVG, in this order. A plan from before DominanceSquares has the first two only, one
// from before DominanceAbs the first three.
const (
	DominanceSums    = "__veil_dt"
	DominanceMaxes   = "__veil_dm"
	DominanceSquares = "__veil_dq"
	DominanceAbs     = "__veil_da"
)

// dominanceItems are the hidden select-list items of Plan.Dominance, or none when the
// select list has an extreme or a DISTINCT sum.
func (s *vsession) dominanceItems(ctx context.Context, node map[string]any, byValue bool) ([]any, error) {
	var sums []map[string]any
	fast := true
	var find func(e any)
	find = func(e any) {
		switch x := e.(type) {
		case map[string]any:
			if str(x, "class") == "FUNCTION" {
				switch strings.ToLower(str(x, "function_name")) {
				case "sum", "avg", "mean":
					if truthy(x, "distinct") || len(list(x, "children")) != 1 {
						fast = false
					}
					sums = append(sums, x)
					return
				case "min", "max":
					fast = false
					return
				}
			}
			for _, v := range x {
				find(v)
			}
		case []any:
			for _, v := range x {
				find(v)
			}
		}
	}
	find(list(node, "select_list"))
	if !fast || len(sums) == 0 {
		return nil, nil
	}
	var items []any
	for j, a := range sums {
		for _, t := range []struct{ prefix, tmpl string }{
			// The sum is the query's own when it has one (DuckDB computes it once).
			{DominanceSums, "CAST(sum(__veil_x) AS DOUBLE)"},
			// The largest magnitude from the extremes in the value's own type, cast after
			// the aggregate (the cast is monotone and keeps abs from overflowing on the
			// smallest integer): the same value as max(abs(CAST(x AS DOUBLE))), without a
			// cast of every row.
			{DominanceMaxes, "greatest(abs(CAST(max(__veil_x) AS DOUBLE)), abs(CAST(min(__veil_x) AS DOUBLE)))"},
			// The sum of squares: with at most M rows a person contributes at most
			// sqrt(M·Q) (Cauchy-Schwarz), far less than M·max|x| where values vary. A
			// product, not pow, which costs more than the rest of the plan.
			{DominanceSquares, "sum(CAST(__veil_x AS DOUBLE) * CAST(__veil_x AS DOUBLE))"},
			// The sum of magnitudes A, where registration measured how many rows of a
			// group's value are beyond their unit's first (ValueUnits, byValue): the
			// persons' magnitudes add up to at least A minus those rows' part, exactly to
			// A where there are none (every person one row), which decides the cells
			// whose sums cancel.
			{DominanceAbs, "sum(abs(CAST(__veil_x AS DOUBLE)))"},
		} {
			if t.prefix == DominanceAbs && !byValue {
				continue
			}
			e, err := s.expression(ctx, t.tmpl+" AS __veil_t")
			if err != nil {
				return nil, err
			}
			it := substitute(clone(e), map[string]any{"__veil_x": clone(list(a, "children")[0])}).(map[string]any)
			it["alias"] = fmt.Sprintf("%s_%d", t.prefix, j)
			if f, ok := a["filter"].(map[string]any); ok {
				filterAggregates(it, f)
			}
			items = append(items, it)
		}
	}
	return items, nil
}

// filterAggregates gives every sum, min and max of a dominance item the FILTER of the
// query's own aggregate: they run over the same rows. The value's expression holds no
// aggregate (DuckDB refuses nested aggregates), so these are the template's own.
func filterAggregates(e any, f map[string]any) {
	switch x := e.(type) {
	case map[string]any:
		if str(x, "class") == "FUNCTION" {
			switch str(x, "function_name") {
			case "sum", "min", "max":
				x["filter"] = clone(f)
				return
			}
		}
		for _, v := range x {
			filterAggregates(v, f)
		}
	case []any:
		for _, v := range x {
			filterAggregates(v, f)
		}
	}
}

// DominanceSure reports whether the hidden dominance columns of a query's result show that
// every cell of at least r.K persons passes the dominance rules whatever the persons'
// contributions (DominanceUndecided finds none).
func DominanceSure(recs []arrow.RecordBatch, names []string, m int64, r CheckRules) bool {
	rows, ok := DominanceUndecided(recs, names, m, r)
	return ok && len(rows) == 0
}

// DominanceUndecided returns the rows of a query's result (numbered across its batches)
// whose cells the hidden dominance columns cannot show to pass the dominance rules whatever
// the persons' contributions; a cell of fewer than r.K persons is suppressed whatever the
// check says and is not among them. With at most m rows per person, no person contributes
// more than m·max|x|, and the n largest together no more than B_n = n·m·max|x|; where the
// plan has the sum of squares Q, also (Cauchy-Schwarz) no more than sqrt(n·m·Q), and B_n is
// the smaller. The total of the persons' magnitudes is at least |S|, the magnitude of the
// cell's sum, and what the persons other than the two largest contribute is at least
// |S| - B_2. So the (n,k) rule passes for sure when B_n <= k%·|S|, the p% rule when
// |S| - B_2 >= p%·B_1. It reports false where the columns are not there: then every cell
// is undecided.
func DominanceUndecided(recs []arrow.RecordBatch, names []string, m int64, r CheckRules) ([]int, bool) {
	return dominanceUndecided(recs, names, m, nil, r)
}

// cellUnits is what the registration's ValueUnits of a result row's keys say of its cell
// (Job.cellUnits): at most max rows of one unit, at most extra rows beyond each unit's
// first, at most units units (ok false: nothing known).
type cellUnits struct {
	ok                bool
	max, extra, units int64
}

// dominanceUndecided is DominanceUndecided with what the keys' ValueUnits say of each row's
// cell (cells, by global row; nil: nothing). In a cell of at most e rows beyond each
// person's first, the n largest persons hold at most min(n·m, n+e) rows, which bounds B_n
// as m rows each do; and the rows of persons with more than one row are at most 2e, so the
// persons' magnitudes add up to at least A - min(2e·max|x|, sqrt(2e·Q)) where the plan has
// the sum of magnitudes A (exactly A where e is 0), a bound that |S| does not reach where
// the values cancel.
func dominanceUndecided(recs []arrow.RecordBatch, names []string, m int64, cells []cellUnits, r CheckRules) ([]int, bool) {
	undecided, fails, ok := dominanceVerdicts(recs, names, m, cells, r)
	if len(fails) > 0 {
		undecided = append(undecided, fails...)
		slices.Sort(undecided)
	}
	return undecided, ok
}

// dominanceVerdicts is dominanceUndecided that also returns, apart, the rows whose cells
// fail for certain (by global row): in a cell whose persons have one row each (e = 0) the
// largest contributes exactly max|x| and all of them exactly A, so the (n,k) rule fails for
// certain where max|x| > k%·A and the p% rule where A - max|x| < p%·max|x|, each with a
// millionth of margin against the rounding of A (as the exact check, which computes in
// floating point too, would decide otherwise only within it).
func dominanceVerdicts(recs []arrow.RecordBatch, names []string, m int64, cells []cellUnits, r CheckRules) ([]int, []int, bool) {
	var fails []int
	width := 1 // sum, max; the sum of squares and the sum of magnitudes in a plan that has them
	for width < len(names) && !strings.HasPrefix(names[width], DominanceSums+"_") {
		width++
	}
	if m < 1 || len(names) == 0 || len(names)%width != 0 || width < 2 {
		return nil, nil, false
	}
	role := func(j int, prefix string) int { // the column of a role in group j, or -1
		for c := j; c < j+width; c++ {
			if strings.HasPrefix(names[c], prefix+"_") {
				return c
			}
		}
		return -1
	}
	var undecided []int
	global := 0
	for _, rec := range recs {
		var counts []*array.Int64
		for i, f := range rec.Schema().Fields() {
			if strings.HasPrefix(f.Name, UnitsPrefix) || f.Name == RowsColumn {
				c, ok := rec.Column(i).(*array.Int64)
				if !ok {
					return nil, nil, false
				}
				counts = append(counts, c)
			}
		}
		cols := make([]*array.Float64, len(names))
		for i, n := range names {
			idx := rec.Schema().FieldIndices(n)
			if len(idx) != 1 {
				return nil, nil, false
			}
			c, ok := rec.Column(idx[0]).(*array.Float64)
			if !ok {
				return nil, nil, false
			}
			cols[i] = c
		}
	rows:
		for row := 0; row < int(rec.NumRows()); row, global = row+1, global+1 {
			for _, c := range counts {
				if c.IsNull(row) || c.Value(row) < int64(r.K) {
					continue rows // suppressed whatever the check says
				}
			}
			var cu cellUnits
			if global < len(cells) {
				cu = cells[global]
			}
			open := false // some aggregate's cell is undecided
			for j := 0; j < len(cols); j += width {
				sum, mx := cols[j], cols[j+1]
				if mx.IsNull(row) || mx.Value(row) == 0 {
					continue // no value, or only zeros: the exact rules pass the cell
				}
				if sum.IsNull(row) {
					open = true
					continue
				}
				q, a := math.NaN(), math.NaN()
				if c := role(j, DominanceSquares); c >= 0 && !cols[c].IsNull(row) {
					q = cols[c].Value(row)
				}
				if c := role(j, DominanceAbs); c >= 0 && !cols[c].IsNull(row) {
					a = cols[c].Value(row)
				}
				total := math.Abs(sum.Value(row))
				most := func(n int) float64 { return topBound(n, m, mx.Value(row), q) }
				if cu.ok {
					mm := min(m, max(cu.max, 1))
					most = func(n int) float64 {
						rows := min(int64(n)*mm, int64(n)+cu.extra)
						return topRows(rows, mx.Value(row), q)
					}
					if a >= 0 && !math.IsInf(a, 1) {
						// A is a sum of rounded magnitudes: a millionth less, against
						// its rounding (too little only leaves a cell to the exact check).
						lost := 0.0
						if cu.extra > 0 {
							lost = topRows(2*cu.extra, mx.Value(row), q)
						}
						total = max(total, a*(1-1e-6)-lost)
					}
				}
				if cu.ok && cu.extra == 0 && a >= 0 && !math.IsInf(a, 1) {
					hi, top := a*(1+1e-6), mx.Value(row)
					if (r.DominanceN > 0 && r.DominanceK > 0 && top*(1-1e-6) > r.DominanceK/100*hi) ||
						(r.DominanceP > 0 && hi-top*(1-1e-6) < r.DominanceP/100*top*(1-1e-6)) {
						fails = append(fails, global) // the cell fails whatever its other aggregates
						continue rows
					}
				}
				if r.DominanceN > 0 && r.DominanceK > 0 && !(most(r.DominanceN) <= r.DominanceK/100*total) {
					open = true
					continue
				}
				if r.DominanceP > 0 && !(total-most(2) >= r.DominanceP/100*most(1)) {
					open = true
					continue
				}
			}
			if open {
				undecided = append(undecided, global)
			}
		}
	}
	return undecided, fails, true
}

// topRows bounds what rows values of the largest magnitude mx and the sum of squares q (NaN:
// unknown) make up in magnitude together: rows·mx, and sqrt(rows·q) where that is smaller,
// taken with a margin of a millionth against the rounding of q.
func topRows(rows int64, mx, q float64) float64 {
	b := float64(rows) * mx
	if q >= 0 && !math.IsInf(q, 1) {
		if s := math.Sqrt(float64(rows)*q) * (1 + 1e-6); s < b {
			b = s
		}
	}
	return b
}

// topBound bounds what the n largest contributions of persons of at most m rows each make
// up together in a cell whose values have the largest magnitude mx and the sum of squares q
// (NaN: unknown): n·m·mx, and sqrt(n·m·q) where that is smaller. The square root is taken
// with a margin of a millionth against the rounding of q's sum (a bound that is a little
// too large only leaves a cell to the exact check).
func topBound(n int, m int64, mx, q float64) float64 {
	b := float64(n) * float64(m) * mx
	if q >= 0 && !math.IsInf(q, 1) {
		if s := math.Sqrt(float64(n)*float64(m)*q) * (1 + 1e-6); s < b {
			b = s
		}
	}
	return b
}
