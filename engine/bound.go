package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// The bound-plan check. The walk of the parse tree (validate.go) knows names as the vendor
// wrote them; DuckDB resolves them case-insensitively, prefers a table's column to an output
// alias in WHERE, expands stars, merges USING columns, and turns a bare table name into a
// struct of its row. So the rules about the privacy unit, direct identifiers and values that
// make a query fail are decided again on DuckDB's own logical plan of the query (the binder's
// output, unoptimized: nothing is folded or run), where every column reference is resolved to
// the column it reads.

// ltype is a DuckDB logical type as a serialized plan spells it.
type ltype struct {
	ID           string
	Width, Scale int
}

func parseType(m map[string]any) ltype {
	t := ltype{ID: str(m, "id")}
	if ti := obj(m, "type_info"); ti != nil && t.ID == "DECIMAL" {
		t.Width, t.Scale = intOf(ti["width"]), intOf(ti["scale"])
	}
	return t
}

func (t ltype) String() string {
	if t.ID == "DECIMAL" {
		return fmt.Sprintf("DECIMAL(%d,%d)", t.Width, t.Scale)
	}
	return t.ID
}

type intInfo struct {
	lo, hi *big.Int
	digits int
}

func bigPow2(n uint) *big.Int { return new(big.Int).Lsh(big.NewInt(1), n) }

func signed(bits uint) intInfo {
	hi := new(big.Int).Sub(bigPow2(bits-1), big.NewInt(1))
	return intInfo{lo: new(big.Int).Neg(bigPow2(bits - 1)), hi: hi, digits: len(hi.String())}
}

func unsigned(bits uint) intInfo {
	hi := new(big.Int).Sub(bigPow2(bits), big.NewInt(1))
	return intInfo{lo: big.NewInt(0), hi: hi, digits: len(hi.String())}
}

var intTypes = map[string]intInfo{
	"TINYINT": signed(8), "SMALLINT": signed(16), "INTEGER": signed(32), "BIGINT": signed(64), "HUGEINT": signed(128),
	"UTINYINT": unsigned(8), "USMALLINT": unsigned(16), "UINTEGER": unsigned(32), "UBIGINT": unsigned(64), "UHUGEINT": unsigned(128),
}

func (t ltype) integer() bool { _, ok := intTypes[t.ID]; return ok }
func (t ltype) float() bool   { return t.ID == "FLOAT" || t.ID == "DOUBLE" }

func (t ltype) intRange() (lo, hi *big.Int) {
	i := intTypes[t.ID]
	return i.lo, i.hi
}

// digits is the number of decimal digits of the type's largest magnitude.
func (t ltype) digits() int { return intTypes[t.ID].digits }

// printable types convert to text without fail.
func (t ltype) printable() bool {
	switch t.ID {
	case "BOOLEAN", "FLOAT", "DOUBLE", "DECIMAL", "VARCHAR", "DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE",
		"TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "INTERVAL", "UUID":
		return true
	}
	return t.integer()
}

// magnitude bounds the absolute value of the type's values (+Inf: unbounded or not a number).
func (t ltype) magnitude() float64 {
	switch {
	case t.integer():
		f, _ := new(big.Float).SetInt(intTypes[t.ID].hi).Float64()
		return f + 1
	case t.ID == "DECIMAL":
		return math.Pow10(t.Width - t.Scale)
	case t.ID == "FLOAT":
		return math.MaxFloat32
	case t.ID == "BOOLEAN":
		return 1
	}
	return math.Inf(1)
}

func intOf(x any) int {
	switch n := x.(type) {
	case json.Number:
		i, _ := strconv.Atoi(n.String())
		return i
	case float64:
		return int(n)
	}
	return 0
}

// index reads a column index of a plan; ok is false for anything that is not a small
// non-negative integer (virtual columns such as rowid have huge ones).
func index(x any, n int) (int, bool) {
	s, ok := x.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseUint(s.String(), 10, 32)
	if err != nil || int(i) >= n {
		return 0, false
	}
	return int(i), true
}

// pcol is what the check knows of one column of an operator's output.
type pcol struct {
	t    ltype
	sens string // the dataset column's name, if it is a privacy unit or a direct identifier
	unit bool   // sens is the privacy unit
	grow int    // computed text: how many times the longest value read it may be (see pval)
}

// pval is what the check knows of an expression's value.
type pval struct {
	t     ltype
	konst bool // a literal, or a cast of one
	null  bool
	val   any      // the literal's value: json.Number, string or bool
	num   *big.Rat // a numeric literal's exact value, once cast
	mag   float64  // a bound of its absolute value (+Inf: none)
	grow  int      // a text value is at most this many times as long as the longest value read (plus literals)
}

// MaxGrowth bounds how many times longer than the values it reads an expression's text may
// be: concatenating a column with itself n times makes every row n times as large, and a
// query could then fail for lack of memory only because one person's text is long.
const MaxGrowth = 4

type ectx struct {
	clause string
	try    bool // inside TRY(...): errors of the allow-listed functions become NULL
	count  bool // the direct argument of COUNT: a privacy unit or identifier may be counted
}

func (cx ectx) child() ectx { cx.count = false; return cx }

// planCheck checks the logical plan of the vendor's query against the scope.
type planCheck struct {
	sc   *Scope
	ctes map[string]*Table // the stand-ins' CTE indexes -> their tables
}

// standIns unwraps the stand-ins' CTEs at the top of a plan (one per table, in order) and
// returns the plan of the statement itself.
func (pc *planCheck) standIns(o map[string]any, tables []string) (map[string]any, error) {
	for _, name := range tables {
		kids := list(o, "children")
		if str(o, "type") != "LOGICAL_MATERIALIZED_CTE" || len(kids) != 2 || lowerASCII(str(o, "ctename")) != lowerASCII(name) {
			return nil, fmt.Errorf("plan: the stand-in of %s is missing", name)
		}
		t, _ := pc.sc.table(name)
		idx, _ := o["table_index"].(json.Number)
		pc.ctes[idx.String()] = t
		o = asObj(kids[1])
	}
	return o, nil
}

// plan checks the root of the plan.
func (pc *planCheck) plan(root map[string]any) error {
	_, _, err := pc.op(root, false)
	return err
}

func (pc *planCheck) op(o map[string]any, inJoin bool) ([]pcol, bool, error) {
	typ := str(o, "type")
	var kids [][]pcol
	agg := false
	for _, c := range list(o, "children") {
		m, ok := c.(map[string]any)
		if !ok {
			return nil, false, fmt.Errorf("plan: malformed operator %s", typ)
		}
		cols, a, err := pc.op(m, typ == "LOGICAL_COMPARISON_JOIN")
		if err != nil {
			return nil, false, err
		}
		kids = append(kids, cols)
		agg = agg || a
	}
	need := func(n int) error {
		if len(kids) != n {
			return fmt.Errorf("plan: %s has %d inputs, want %d", typ, len(kids), n)
		}
		return nil
	}
	switch typ {
	case "LOGICAL_CTE_REF":
		cols, err := pc.ref(o)
		return cols, false, err
	case "LOGICAL_FILTER":
		if err := need(1); err != nil {
			return nil, false, err
		}
		clause := "WHERE"
		if agg {
			clause = "HAVING"
		} else if inJoin {
			clause = "JOIN ... ON"
		}
		for _, e := range list(o, "expressions") {
			if _, err := pc.expr(asObj(e), kids[0], ectx{clause: clause}); err != nil {
				return nil, false, err
			}
		}
		cols, err := project(kids[0], list(o, "projection_map"))
		return cols, agg, err
	case "LOGICAL_PROJECTION":
		if err := need(1); err != nil {
			return nil, false, err
		}
		var cols []pcol
		for _, e := range list(o, "expressions") {
			v, err := pc.expr(asObj(e), kids[0], ectx{clause: "SELECT"})
			if err != nil {
				return nil, false, err
			}
			cols = append(cols, pcol{t: v.t, grow: v.grow})
		}
		return cols, agg, nil
	case "LOGICAL_AGGREGATE_AND_GROUP_BY":
		if err := need(1); err != nil {
			return nil, false, err
		}
		cols, err := pc.aggregate(o, kids[0])
		return cols, true, err
	case "LOGICAL_COMPARISON_JOIN":
		if err := need(2); err != nil {
			return nil, false, err
		}
		cols, err := pc.join(o, kids[0], kids[1])
		return cols, agg, err
	case "LOGICAL_ORDER_BY":
		if err := need(1); err != nil {
			return nil, false, err
		}
		for _, ord := range list(o, "orders") {
			if _, err := pc.expr(obj(asObj(ord), "expression"), kids[0], ectx{clause: "ORDER BY"}); err != nil {
				return nil, false, err
			}
		}
		cols, err := project(kids[0], list(o, "projection_map"))
		return cols, agg, err
	case "LOGICAL_LIMIT":
		if err := need(1); err != nil {
			return nil, false, err
		}
		for _, k := range []string{"limit_val", "offset_val"} {
			if t := str(obj(o, k), "type"); t != "" && t != "CONSTANT_VALUE" && t != "UNSET" {
				return nil, false, refuse("LIMIT", "LIMIT and OFFSET take constants only")
			}
		}
		return kids[0], agg, nil
	case "LOGICAL_ANY_JOIN", "LOGICAL_CROSS_PRODUCT":
		return nil, false, refuse("JOIN", "a join needs a condition that compares columns of both sides (ON a.x = b.y)")
	}
	return nil, false, refuse("SQL", "this form of query (%s) is not supported", strings.ToLower(strings.TrimPrefix(typ, "LOGICAL_")))
}

func asObj(x any) map[string]any { m, _ := x.(map[string]any); return m }

// project applies an operator's projection map (empty: every input column, in order).
func project(in []pcol, m []any) ([]pcol, error) {
	if len(m) == 0 {
		return in, nil
	}
	out := make([]pcol, 0, len(m))
	for _, x := range m {
		i, ok := index(x, len(in))
		if !ok {
			return nil, fmt.Errorf("plan: bad projection map")
		}
		out = append(out, in[i])
	}
	return out, nil
}

// ref is a read of a granted dataset's stand-in: its granted columns, in order.
func (pc *planCheck) ref(o map[string]any) ([]pcol, error) {
	idx, _ := o["cte_index"].(json.Number)
	t, ok := pc.ctes[idx.String()]
	if !ok {
		return nil, refuse("FROM", "only granted datasets can be read")
	}
	names, types := list(o, "bound_columns"), list(o, "chunk_types")
	if len(names) != len(t.Columns) || len(types) != len(t.Columns) {
		return nil, fmt.Errorf("plan: the stand-in of %s has %d columns", t.Name, len(names))
	}
	cols := make([]pcol, len(t.Columns))
	for i, c := range t.Columns {
		if n, _ := names[i].(string); lowerASCII(n) != lowerASCII(c.Name) {
			return nil, fmt.Errorf("plan: the stand-in of %s has column %q for %s", t.Name, n, c.Name)
		}
		cols[i] = pcol{t: parseType(asObj(types[i]))}
		if c.PrivacyUnit || c.Identifier {
			cols[i].sens, cols[i].unit = c.Name, c.PrivacyUnit
		}
	}
	return cols, nil
}

func (pc *planCheck) aggregate(o map[string]any, in []pcol) ([]pcol, error) {
	groups := list(o, "groups")
	if len(list(o, "grouping_functions")) > 0 {
		return nil, refuse("GROUP BY", "GROUPING() is not allowed")
	}
	sets := list(o, "grouping_sets")
	if len(sets) > 1 {
		return nil, refuse("GROUP BY", "ROLLUP, CUBE and GROUPING SETS are not allowed")
	}
	if len(sets) == 1 {
		if s, _ := sets[0].([]any); len(s) != len(groups) {
			return nil, refuse("GROUP BY", "ROLLUP, CUBE and GROUPING SETS are not allowed")
		}
	}
	var cols []pcol
	for _, g := range groups {
		v, err := pc.expr(asObj(g), in, ectx{clause: "GROUP BY"})
		if err != nil {
			return nil, err
		}
		cols = append(cols, pcol{t: v.t, grow: v.grow})
	}
	for _, x := range list(o, "expressions") {
		a := asObj(x)
		if str(a, "expression_class") != "BOUND_AGGREGATE" {
			return nil, fmt.Errorf("plan: an aggregate operator computes %s", str(a, "expression_class"))
		}
		name := strings.ToLower(str(a, "name"))
		clause := "aggregate " + name
		r, ok := aggregates[name]
		if !ok {
			return nil, refuse(clause, "aggregate %s is not allowed", name)
		}
		if len(list(obj(a, "order_bys"), "orders")) > 0 {
			return nil, refuse(clause, "ordered aggregates are not allowed")
		}
		children := list(a, "children")
		var args []pval
		for _, c := range children {
			v, err := pc.expr(asObj(c), in, ectx{clause: clause, count: name == "count" && len(children) == 1})
			if err != nil {
				return nil, err
			}
			args = append(args, v)
		}
		if f := obj(a, "filter"); f != nil {
			if _, err := pc.expr(f, in, ectx{clause: clause + " (FILTER)"}); err != nil {
				return nil, err
			}
		}
		ret := parseType(obj(a, "return_type"))
		if err := judge(r(call{name: name, args: args, ret: ret, node: a}), ectx{clause: clause}); err != nil {
			return nil, err
		}
		col := pcol{t: ret}
		for _, a := range args {
			col.grow = max(col.grow, a.grow) // min and max return one of the values
		}
		cols = append(cols, col)
	}
	return cols, nil
}

func (pc *planCheck) join(o map[string]any, left, right []pcol) ([]pcol, error) {
	switch str(o, "join_type") {
	case "INNER", "LEFT", "RIGHT", "OUTER":
	default:
		return nil, refuse("JOIN", "%s joins are not allowed", strings.ToLower(str(o, "join_type")))
	}
	conds := list(o, "conditions")
	if len(conds) == 0 {
		return nil, refuse("JOIN", "a join needs a condition that compares columns of both sides (ON a.x = b.y)")
	}
	for _, c := range conds {
		cond := asObj(c)
		l, r := obj(cond, "left"), obj(cond, "right")
		// Equal privacy units are how datasets about the same persons are joined.
		if str(cond, "comparison") == "COMPARE_EQUAL" && isUnit(l, left) && isUnit(r, right) {
			continue
		}
		if _, err := pc.expr(l, left, ectx{clause: "JOIN ... ON"}); err != nil {
			return nil, err
		}
		if _, err := pc.expr(r, right, ectx{clause: "JOIN ... ON"}); err != nil {
			return nil, err
		}
	}
	lc, err := project(left, list(o, "left_projection_map"))
	if err != nil {
		return nil, err
	}
	rc, err := project(right, list(o, "right_projection_map"))
	if err != nil {
		return nil, err
	}
	return append(append([]pcol{}, lc...), rc...), nil
}

func isUnit(e map[string]any, in []pcol) bool {
	if str(e, "expression_class") != "BOUND_REF" {
		return false
	}
	i, ok := index(e["index"], len(in))
	return ok && in[i].unit
}

func sensitive(c pcol) string {
	what := "a direct identifier"
	if c.unit {
		what = "the privacy unit"
	}
	return fmt.Sprintf("%s is %s: it can only be counted (COUNT(DISTINCT %s)), never selected, filtered, grouped, ordered on or computed with", c.sens, what, c.sens)
}

// judge turns a rule's verdict into a refusal.
func judge(v verdict, cx ectx) error {
	switch {
	case v.never != "":
		return refuse(cx.clause, "%s", v.never)
	case v.fails != "" && !cx.try:
		msg := v.fails
		if !strings.Contains(msg, "TRY") {
			msg += "; a failure would reveal a value through the job's status: wrap it in TRY(...) to get NULL where it fails"
		}
		return refuse(cx.clause, "%s", msg)
	}
	return nil
}

func (pc *planCheck) expr(e map[string]any, in []pcol, cx ectx) (pval, error) {
	if e == nil {
		return pval{}, fmt.Errorf("plan: missing expression")
	}
	ret := parseType(obj(e, "return_type"))
	boolean := pval{t: ltype{ID: "BOOLEAN"}, mag: 1}
	switch class := str(e, "expression_class"); class {
	case "BOUND_REF":
		i, ok := index(e["index"], len(in))
		if !ok {
			return pval{}, fmt.Errorf("plan: reference out of range")
		}
		c := in[i]
		if c.sens != "" && !cx.count {
			return pval{}, refuse(cx.clause, "%s", sensitive(c))
		}
		v := pval{t: c.t, mag: c.t.magnitude(), grow: c.grow}
		if c.t.ID == "VARCHAR" {
			v.grow = max(v.grow, 1)
		}
		return v, nil
	case "BOUND_CONSTANT":
		val := obj(e, "value")
		v := pval{t: parseType(obj(val, "type")), konst: true, null: truthy(val, "is_null"), val: val["value"]}
		v.mag = v.t.magnitude()
		if r, ok := literalNumber(v); ok {
			v.mag, _ = new(big.Rat).Abs(r).Float64()
		}
		return v, nil
	case "BOUND_CAST":
		v, err := pc.expr(obj(e, "child"), in, cx.child())
		if err != nil {
			return pval{}, err
		}
		out := pval{t: ret, konst: v.konst, null: v.null, mag: ret.magnitude(), grow: v.grow}
		if truthy(e, "try_cast") {
			return out, nil
		}
		vd := castRule(v, ret)
		if err := judge(vd, cx); err != nil {
			return pval{}, err
		}
		if vd == (verdict{}) {
			out.mag = math.Min(v.mag, ret.magnitude())
		}
		if out.konst {
			// A literal that survived the cast keeps its value: the same number (rounded to
			// an integer or the decimal's scale, as DuckDB rounds) or the same text.
			if r, ok := literalNumber(v); ok && (ret.integer() || ret.float() || ret.ID == "DECIMAL") {
				switch {
				case ret.integer():
					out.num = roundHalfAway(r, 0)
				case ret.ID == "DECIMAL":
					out.num = roundHalfAway(r, ret.Scale)
				default:
					out.num = r
				}
			} else if s, ok := v.val.(string); ok && (ret.ID == "VARCHAR" || ret == v.t) {
				out.val = s
			} else if ret == v.t {
				out.val = v.val
			}
		}
		return out, nil
	case "BOUND_FUNCTION":
		name := strings.ToLower(str(e, "name"))
		r, ok := scalars[name]
		if !ok {
			if why, ok := forbiddenWhy[name]; ok {
				return pval{}, refuse(cx.clause, "function %s is not allowed: %s", name, why)
			}
			return pval{}, refuse(cx.clause, "function %s is not allowed", name)
		}
		var args []pval
		konst := true
		for _, c := range list(e, "children") {
			v, err := pc.expr(asObj(c), in, cx.child())
			if err != nil {
				return pval{}, err
			}
			konst = konst && v.konst
			args = append(args, v)
		}
		if konst {
			return pval{}, refuse(cx.clause, "constant expressions (%s of literals) are not allowed: write the value itself", name)
		}
		if err := judge(r(call{name: name, args: args, ret: ret, node: e}), cx); err != nil {
			return pval{}, err
		}
		v := pval{t: ret, mag: ret.magnitude()}
		for _, a := range args {
			switch {
			case name == "||" || name == "concat":
				v.grow += a.grow
			case name == "lpad" || name == "rpad":
				// at most MaxPadLength characters, whatever the input
			default:
				v.grow = max(v.grow, a.grow)
			}
		}
		if v.grow > MaxGrowth {
			return pval{}, refuse(cx.clause, "%s builds text more than %d times as long as the values it reads; concatenate fewer copies", name, MaxGrowth)
		}
		return v, nil
	case "BOUND_COMPARISON":
		for _, k := range []string{"left", "right"} {
			if _, err := pc.expr(obj(e, k), in, cx.child()); err != nil {
				return pval{}, err
			}
		}
		return boolean, nil
	case "BOUND_BETWEEN":
		for _, k := range []string{"input", "lower", "upper"} {
			if _, err := pc.expr(obj(e, k), in, cx.child()); err != nil {
				return pval{}, err
			}
		}
		return boolean, nil
	case "BOUND_CONJUNCTION":
		if err := pc.exprs(list(e, "children"), in, cx.child()); err != nil {
			return pval{}, err
		}
		return boolean, nil
	case "BOUND_OPERATOR":
		sub := cx.child()
		switch str(e, "type") {
		case "OPERATOR_NOT", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL", "COMPARE_IN", "COMPARE_NOT_IN":
			ret = boolean.t
		case "OPERATOR_COALESCE":
		case "OPERATOR_TRY":
			sub.try = true
		default:
			return pval{}, refuse(cx.clause, "operator %s is not allowed", strings.ToLower(str(e, "type")))
		}
		v := pval{t: ret, mag: ret.magnitude()}
		for _, c := range list(e, "children") {
			a, err := pc.expr(asObj(c), in, sub)
			if err != nil {
				return pval{}, err
			}
			v.grow = max(v.grow, a.grow)
		}
		if ret == boolean.t {
			v.grow = 0
		}
		return v, nil
	case "BOUND_CASE":
		v := pval{t: ret, mag: ret.magnitude()}
		for _, c := range list(e, "case_checks") {
			if _, err := pc.expr(obj(asObj(c), "when_expr"), in, cx.child()); err != nil {
				return pval{}, err
			}
			a, err := pc.expr(obj(asObj(c), "then_expr"), in, cx.child())
			if err != nil {
				return pval{}, err
			}
			v.grow = max(v.grow, a.grow)
		}
		a, err := pc.expr(obj(e, "else_expr"), in, cx.child())
		if err != nil {
			return pval{}, err
		}
		v.grow = max(v.grow, a.grow)
		return v, nil
	default:
		return pval{}, refuse(cx.clause, "%s is not allowed", strings.ToLower(strings.TrimPrefix(class, "BOUND_")))
	}
}

func (pc *planCheck) exprs(cs []any, in []pcol, cx ectx) error {
	for _, c := range cs {
		if _, err := pc.expr(asObj(c), in, cx); err != nil {
			return err
		}
	}
	return nil
}

// reads checks Veil's own rewrites, whatever their shape: they read nothing but the
// stand-ins (no table, no table function).
func (pc *planCheck) reads(o map[string]any) error {
	switch str(o, "type") {
	case "LOGICAL_GET", "LOGICAL_MATERIALIZED_CTE", "LOGICAL_RECURSIVE_CTE":
		return fmt.Errorf("plan: the rewrite reads %s", strings.ToLower(str(o, "type")))
	case "LOGICAL_CTE_REF":
		if _, err := pc.ref(o); err != nil {
			return err
		}
	}
	for _, c := range list(o, "children") {
		if err := pc.reads(asObj(c)); err != nil {
			return err
		}
	}
	return nil
}
