package engine

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// The allow-lists. A function not named here is refused; the lists are short on purpose and
// grow only with functions that cannot read files, reach the network, depend on hidden state,
// produce randomness, or raise errors chosen by the query.
//
// They are one decision for every mode that runs on real data. A function is allowed with a
// rule that looks at what DuckDB's binder made of the call (the argument types after
// implicit casts, and which arguments are literals) and says whether it can fail on a value:
// a failure that only one person's row causes would tell the vendor a fact about that person
// through the job's status, whatever k or epsilon. Such a call is refused unless it sits
// inside TRY(...), which turns the errors these functions raise (out of range, conversion,
// invalid input) into NULL for the row at fault; a call that could fail in a way TRY does not
// catch, or that sizes an allocation from anything but a small literal, is refused outright.
// TestNoDataDependentFailure runs what the rules accept on adversarial values.

// verdict is what a rule says of one call.
type verdict struct {
	fails string // can fail on a value: allowed only inside TRY(...); says why
	never string // refused outright; says why
}

func fails(format string, a ...any) verdict { return verdict{fails: fmt.Sprintf(format, a...)} }
func never(format string, a ...any) verdict { return verdict{never: fmt.Sprintf(format, a...)} }

// call is a bound function call as a rule sees it.
type call struct {
	name string
	args []pval
	ret  ltype
	node map[string]any // the bound expression, for details such as function_data
}

type rule func(c call) verdict

func total(call) verdict { return verdict{} }

// MaxPadLength bounds the length lpad and rpad may pad to: the argument sizes an allocation
// per row, so it must be a literal no larger than this.
const MaxPadLength = 1024

// aggregates are the aggregate functions a query may use, with their rules.
var aggregates = map[string]rule{
	"count": total, "count_star": total, "min": total, "max": total,
	"bool_and": total, "bool_or": total,
	"sum": sumRule, "avg": sumRule, "mean": sumRule,
	"median": quantileRule, "quantile_cont": quantileRule, "quantile_disc": total, "quantile": total,
	// DuckDB raises "out of range" when the sum of squares overflows a double: only values of
	// bounded magnitude are safe.
	"stddev": momentRule, "stddev_samp": momentRule, "stddev_pop": momentRule,
	"variance": momentRule, "var_samp": momentRule, "var_pop": momentRule,
	"corr": momentRule, "covar_samp": momentRule, "covar_pop": momentRule,
}

// sumRule: sums accumulate in 128 bits (integers, decimals up to 18 digits) or in doubles,
// which cannot overflow for any number of rows a dataset has; wider inputs can.
func sumRule(c call) verdict {
	if len(c.args) != 1 {
		return never("%s takes one argument", c.name)
	}
	t := c.args[0].t
	switch {
	case t.float(), t.integer() && t.digits() <= 20, t.ID == "DECIMAL" && t.Width <= 18, t.ID == "NULL", t.ID == "BOOLEAN":
		return verdict{}
	}
	return never("%s of %s can overflow on large values and fail; cast the argument to DOUBLE first", c.name, t)
}

func quantileRule(c call) verdict {
	if len(c.args) < 1 {
		return never("%s needs a column", c.name)
	}
	t := c.args[0].t
	switch {
	case t.float(), t.integer() && t.digits() <= 20, t.ID == "DECIMAL" && t.Width <= 18, t.ID == "NULL":
		return verdict{}
	}
	return never("%s interpolates between values and takes a number; %s is not supported (quantile_disc takes any type)", c.name, t)
}

func momentRule(c call) verdict {
	for _, a := range c.args {
		if !(a.mag <= 1e100) {
			return never("%s fails when the squares of its values overflow a double; cast the argument to a bounded type first (TRY_CAST(x AS DECIMAL(18,4)))", c.name)
		}
	}
	return verdict{}
}

// scalars are the scalar functions and operators a query may use, with their rules.
// Operators appear in DuckDB's tree under their symbol (LIKE is "~~").
var scalars = map[string]rule{
	"+": arithmetic, "-": arithmetic, "*": arithmetic,
	"/": divide, "//": integerDivide, "%": integerDivide,
	"^": total, "**": total, "pow": total, "power": total, // doubles: infinity, never an error
	"||": total, "concat": total,
	"~~": total, "!~~": total, "~~*": total, "!~~*": total,
	"like_escape": escapeRule, "not_like_escape": escapeRule, "ilike_escape": escapeRule, "not_ilike_escape": escapeRule,
	"regexp_matches": regexpRule, "regexp_full_match": regexpRule,
	"abs": absRule, "sign": total, "round": total, "floor": total, "ceil": total, "ceiling": total,
	"trunc": total, "cbrt": total, "exp": total, "isnan": total, "isinf": total, "isfinite": total,
	"sqrt": undefinedBelow, "ln": undefinedBelow, "log": undefinedBelow, "log2": undefinedBelow, "log10": undefinedBelow,
	"greatest": total, "least": total, "nullif": total, "ifnull": total,
	"lower": total, "upper": total, "lcase": total, "ucase": total, "length": total, "strlen": total,
	"substring": substringRule, "substr": substringRule, "left": substringRule, "right": substringRule, "trim": total, "ltrim": total, "rtrim": total,
	"starts_with": total, "ends_with": total, "suffix": total, "prefix": total, "contains": total,
	"replace": replaceRule, "lpad": padRule, "rpad": padRule,
	"year": total, "month": total, "day": total, "quarter": total, "week": total, "weekofyear": total,
	"dayofweek": total, "dayofyear": total, "isodow": total, "isoyear": total, "hour": total, "minute": total,
	"monthname": total, "dayname": total, "last_day": total,
	"date_part": partRule(false), "datepart": partRule(false),
	"date_trunc": partRule(true), "datetrunc": partRule(true),
	"date_diff": partRule(true), "datediff": partRule(true), "date_sub": partRule(true), "datesub": partRule(true),
	"strftime": strftimeRule, "make_date": makeDate,
}

// forbiddenWhy explains the refusal of functions a vendor is likely to try.
var forbiddenWhy = map[string]string{
	"random": "randomness is not allowed", "setseed": "randomness is not allowed",
	"uuid": "randomness is not allowed", "gen_random_uuid": "randomness is not allowed",
	"error": "queries may not raise errors", "getvariable": "session state is not available",
	"current_setting": "session state is not available", "now": "the clock is not available",
	"current_timestamp": "the clock is not available", "get_current_timestamp": "the clock is not available",
	"repeat": "its size comes from the query; it could exhaust memory", "range": "it builds lists of any size",
	"generate_series": "it builds lists of any size", "list_resize": "it builds lists of any size",
	"array_fill": "it builds lists of any size", "strptime": "it fails on values that do not match the format; use TRY_CAST",
	"query": "queries cannot run queries", "query_table": "queries cannot run queries",
	"version": "the platform's details are not available", "current_database": "the platform's details are not available",
	"typeof": "use the catalog's types", "json_extract": "it fails on values that are not JSON",
	"struct_extract": "datasets are read by column name", "struct_pack": "datasets are read by column name",
}

// castTypes are the types a CAST may produce.
var castTypes = map[string]bool{
	"BOOLEAN": true, "TINYINT": true, "SMALLINT": true, "INTEGER": true, "BIGINT": true, "HUGEINT": true,
	"UTINYINT": true, "USMALLINT": true, "UINTEGER": true, "UBIGINT": true,
	"FLOAT": true, "DOUBLE": true, "DECIMAL": true, "VARCHAR": true, "DATE": true, "TIMESTAMP": true,
}

// arithmetic: + - * on integers and wide decimals raise "overflow" (DuckDB does not wrap);
// doubles go to infinity. DuckDB marks decimal operations whose result cannot overflow.
func arithmetic(c call) verdict {
	switch {
	case c.ret.float():
		return verdict{}
	case c.ret.ID == "DECIMAL":
		if fd := obj(c.node, "function_data"); fd != nil && fd["check_overflow"] == false {
			return verdict{}
		}
		return fails("decimal arithmetic (%s) can fail on a value (it overflows)", c.name)
	case c.name == "-" && len(c.args) == 2 && c.args[0].t.ID == "DATE" && c.args[1].t.ID == "DATE":
		return verdict{} // days between two dates always fit a BIGINT
	case c.ret.integer():
		return fails("integer arithmetic (%s) can fail on a value (it overflows); compute in DOUBLE (CAST(x AS DOUBLE))", c.name)
	}
	return fails("%s on %s can fail on a value", c.name, c.ret)
}

func divide(c call) verdict {
	if c.ret.float() {
		return verdict{} // x / 0 is infinity or NaN
	}
	return fails("division of %s can fail on a value", c.ret)
}

// integerDivide: x // 0 and x % 0 are NULL; only the smallest integer divided by -1
// overflows, so a literal divisor other than -1 is safe.
func integerDivide(c call) verdict {
	if c.ret.float() {
		return verdict{}
	}
	if c.ret.integer() && len(c.args) == 2 {
		if d := c.args[1]; d.konst && !d.null {
			if r, ok := literalNumber(d); ok && r.Cmp(big.NewRat(-1, 1)) != 0 {
				return verdict{}
			}
		}
	}
	return fails("%s can fail on a value (the smallest integer divided by -1 overflows); divide by a literal", c.name)
}

func absRule(c call) verdict {
	if c.ret.integer() {
		return fails("abs of an integer can fail on a value (the smallest integer overflows)")
	}
	return verdict{}
}

// substringRule: positions and lengths beyond 32 bits fail ("outside of supported range"),
// so they must be literals that fit.
func substringRule(c call) verdict {
	for _, a := range c.args[min(1, len(c.args)):] {
		n, ok := literalNumber(a)
		if !ok || !a.konst || new(big.Rat).Abs(n).Cmp(big.NewRat(1<<31, 1)) >= 0 {
			return fails("%s can fail on a value (positions and lengths beyond 32 bits); write them as numbers in the query", c.name)
		}
	}
	return verdict{}
}

func undefinedBelow(c call) verdict {
	return fails("%s can fail on a value (zero or negative)", c.name)
}

func makeDate(c call) verdict { return fails("make_date can fail on a value (an invalid date)") }

func padRule(c call) verdict {
	if len(c.args) != 3 {
		return never("%s(string, length, padding) takes three arguments", c.name)
	}
	n, ok := literalNumber(c.args[1])
	if !ok || !c.args[1].konst || !n.IsInt() || n.Sign() < 0 || n.Cmp(big.NewRat(MaxPadLength, 1)) > 0 {
		return never("%s: the length sizes the result of every row; it must be a number from 0 to %d written in the query", c.name, MaxPadLength)
	}
	if p, ok := literalString(c.args[2]); !ok || p == "" {
		return never("%s: the padding must be a non-empty string written in the query (an empty padding fails on short values)", c.name)
	}
	return verdict{}
}

// replaceRule: replace could multiply a value's length, and nested replaces multiply it
// again; a replacement no longer than what it replaces cannot.
func replaceRule(c call) verdict {
	if len(c.args) != 3 {
		return never("replace(string, from, to) takes three arguments")
	}
	from, ok1 := literalString(c.args[1])
	to, ok2 := literalString(c.args[2])
	if !ok1 || !ok2 {
		return never("replace: what to replace and the replacement must be strings written in the query")
	}
	if len(to) > len(from) {
		return never("replace: the replacement may not be longer than what it replaces (it would multiply the size of values)")
	}
	return verdict{}
}

func escapeRule(c call) verdict {
	if len(c.args) != 3 {
		return never("LIKE ... ESCAPE takes one escape character")
	}
	if e, ok := literalString(c.args[2]); !ok || utf8.RuneCountInString(e) > 1 {
		return never("LIKE ... ESCAPE: the escape must be one character written in the query; any other fails")
	}
	return verdict{}
}

func regexpRule(c call) verdict {
	for _, a := range c.args[min(1, len(c.args)):] {
		if _, ok := literalString(a); !ok {
			return never("%s: the pattern and options must be strings written in the query (a pattern taken from the data can be invalid and fail)", c.name)
		}
	}
	return verdict{}
}

func strftimeRule(c call) verdict {
	if len(c.args) != 2 {
		return never("strftime(date, format) takes two arguments")
	}
	if _, ok := literalString(c.args[1]); !ok {
		return never("strftime: the format must be a string written in the query")
	}
	return verdict{}
}

// dateParts are the specifiers date_part, date_trunc and date_diff accept from a vendor: a
// specifier taken from the data, or one DuckDB does not know, fails.
var dateParts = map[string]bool{
	"year": true, "quarter": true, "month": true, "week": true, "day": true, "hour": true, "minute": true, "second": true,
	"dayofweek": true, "dow": true, "isodow": true, "dayofyear": true, "doy": true, "isoyear": true, "decade": true, "century": true,
	"yearweek": true,
}

// partRule checks the specifier; partial functions (date_trunc returns a timestamp, and
// dates beyond its range fail; date_diff counts in 64 bits and can overflow) also need TRY.
func partRule(partial bool) rule {
	return func(c call) verdict {
		if len(c.args) < 2 {
			return never("%s takes a part and a date", c.name)
		}
		p, ok := literalString(c.args[0])
		if !ok || !dateParts[strings.ToLower(p)] {
			return never("%s: the part must be one of year, quarter, month, week, day, hour, minute, second, dayofweek, dayofyear, isoyear, decade, century, written in the query", c.name)
		}
		if partial {
			return fails("%s can fail on a value (dates and times beyond the timestamp range)", c.name)
		}
		return verdict{}
	}
}

// castRule says whether a cast of v to t can fail. A literal is checked here, in Go, rather
// than evaluated: DuckDB casts it when a row reaches it, so an impossible literal would fail
// only if some row passes the filters before it.
func castRule(v pval, to ltype) verdict {
	if v.konst {
		return literalCast(v, to)
	}
	if castTotal(v.t, to) {
		return verdict{}
	}
	return fails("CAST from %s to %s can fail on a value and reveal it through the job's status; use TRY_CAST", v.t, to)
}

func castTotal(from, to ltype) bool {
	switch {
	case from.ID == "NULL", from == to:
		return true
	case to.ID == "VARCHAR":
		return from.printable()
	case from.ID == "BOOLEAN":
		return to.integer() || to.float() || to.ID == "DECIMAL" && to.Width-to.Scale >= 1
	case from.integer():
		switch {
		case to.integer():
			lo, hi := from.intRange()
			tlo, thi := to.intRange()
			return tlo.Cmp(lo) <= 0 && thi.Cmp(hi) >= 0
		case to.ID == "DOUBLE":
			return true
		case to.ID == "FLOAT":
			return from.digits() <= 38
		case to.ID == "DECIMAL":
			return to.Width-to.Scale >= from.digits()
		case to.ID == "BOOLEAN":
			return true
		}
	case from.ID == "DECIMAL":
		switch {
		case to.ID == "DECIMAL":
			carry := 0
			if to.Scale < from.Scale {
				carry = 1 // rounding can carry into one more digit
			}
			return to.Width-to.Scale >= from.Width-from.Scale+carry
		case to.float():
			return true
		case to.integer():
			return from.Width-from.Scale < to.digits()
		}
	case from.ID == "FLOAT":
		return to.ID == "DOUBLE"
	case from.ID == "TIMESTAMP":
		return to.ID == "DATE" || to.ID == "TIME"
	}
	return false
}

var (
	intLiteral     = regexp.MustCompile(`^[+-]?[0-9]{1,40}$`)
	decimalLiteral = regexp.MustCompile(`^[+-]?[0-9]{1,40}(\.[0-9]{1,40})?$`)
	floatLiteral   = regexp.MustCompile(`^[+-]?([0-9]{1,400}(\.[0-9]{0,400})?|\.[0-9]{1,400})([eE][+-]?[0-9]{1,3})?$`)
	dateLiteral    = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	tsLiteral      = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?$`)
)

// literalCast decides a cast of a literal conservatively: it accepts only literals whose
// conversion is certain (DuckDB accepts more spellings; those are refused with a hint).
func literalCast(v pval, to ltype) verdict {
	if v.null || v.t == to || to.ID == "VARCHAR" && (v.t.printable() || v.t.ID == "NULL") {
		return verdict{}
	}
	s, isString := v.val.(string)
	if isString && v.t.ID == "VARCHAR" {
		switch {
		case to.integer():
			if intLiteral.MatchString(s) {
				r, _ := new(big.Rat).SetString(s)
				if fitsInteger(r, to) {
					return verdict{}
				}
			}
		case to.ID == "DECIMAL":
			if decimalLiteral.MatchString(s) {
				r, _ := new(big.Rat).SetString(s)
				if fitsDecimal(r, to) {
					return verdict{}
				}
			}
		case to.float():
			if floatLiteral.MatchString(s) {
				f, _ := new(big.Float).SetString(strings.TrimPrefix(s, "+"))
				if f != nil {
					if x, _ := f.Float64(); !math.IsInf(x, 0) && (to.ID == "DOUBLE" || math.Abs(x) <= math.MaxFloat32) {
						return verdict{}
					}
				}
			}
		case to.ID == "DATE":
			if dateLiteral.MatchString(s) {
				if d, err := time.Parse("2006-01-02", s); err == nil && d.Year() >= 1 {
					return verdict{}
				}
			}
		case to.ID == "TIMESTAMP":
			if tsLiteral.MatchString(s) {
				for _, layout := range []string{"2006-01-02", "2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02 15:04:05.999999",
					"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999"} {
					if d, err := time.Parse(layout, s); err == nil && d.Year() >= 1 {
						return verdict{}
					}
				}
			}
		case to.ID == "BOOLEAN":
			if b := strings.ToLower(s); b == "true" || b == "false" {
				return verdict{}
			}
		}
		return never("the value %s cannot be used as %s here; write it as a %s literal (numbers without quotes, dates as 'YYYY-MM-DD')", quoteLiteral(s), to, to)
	}
	if r, ok := literalNumber(v); ok {
		switch {
		case to.integer() && fitsInteger(roundHalfAway(r, 0), to),
			to.ID == "DECIMAL" && fitsDecimal(r, to),
			to.ID == "DOUBLE",
			to.ID == "FLOAT" && new(big.Rat).Abs(r).Cmp(new(big.Rat).SetFloat64(math.MaxFloat32)) <= 0,
			to.ID == "BOOLEAN":
			return verdict{}
		}
		return never("the number %s does not fit %s", r.FloatString(max(0, v.t.Scale)), to)
	}
	if v.t.ID == "BOOLEAN" && (to.integer() || to.float()) {
		return verdict{}
	}
	return fails("CAST of a literal %s to %s can fail; use TRY_CAST", v.t, to)
}

func quoteLiteral(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// literalNumber reads a numeric literal exactly (decimals are stored unscaled).
func literalNumber(v pval) (*big.Rat, bool) {
	if !v.konst || v.null {
		return nil, false
	}
	if v.num != nil {
		return v.num, true
	}
	var s string
	switch x := v.val.(type) {
	case json.Number:
		s = x.String()
	case float64:
		s = fmt.Sprint(x)
	default:
		return nil, false
	}
	if !(v.t.integer() || v.t.float() || v.t.ID == "DECIMAL" || v.t.ID == "INTEGER_LITERAL") {
		return nil, false
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, false
	}
	if v.t.ID == "DECIMAL" && v.t.Scale > 0 {
		r.Quo(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(v.t.Scale)), nil)))
	}
	return r, true
}

func literalString(v pval) (string, bool) {
	s, ok := v.val.(string)
	return s, ok && v.konst && !v.null
}

func fitsInteger(r *big.Rat, t ltype) bool {
	if !r.IsInt() {
		return false
	}
	lo, hi := t.intRange()
	n := r.Num()
	return n.Cmp(lo) >= 0 && n.Cmp(hi) <= 0
}

// fitsDecimal: r rounded to the scale has fewer integer digits than the type allows.
func fitsDecimal(r *big.Rat, t ltype) bool {
	x := roundHalfAway(r, t.Scale)
	limit := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(t.Width-t.Scale)), nil))
	return new(big.Rat).Abs(x).Cmp(limit) < 0
}

func roundHalfAway(r *big.Rat, scale int) *big.Rat {
	p := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil))
	x := new(big.Rat).Mul(r, p)
	half := big.NewRat(1, 2)
	if x.Sign() < 0 {
		x.Sub(x, half)
	} else {
		x.Add(x, half)
	}
	q := new(big.Int).Quo(x.Num(), x.Denom()) // truncates toward zero
	return new(big.Rat).Quo(new(big.Rat).SetInt(q), p)
}
