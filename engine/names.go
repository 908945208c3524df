package engine

import (
	"fmt"
	"strconv"
	"strings"
)

// outputName is the name of a select-list item in the released output, the same in every
// mode (threshold, dp) so that one query gives the same columns wherever it runs:
//
//   - the item's alias (AS name), when it has one;
//   - a column: its name (district for r.district);
//   - COUNT(*): count; COUNT(DISTINCT unit), the privacy unit: count_units (COUNT(unit)
//     counts rows, as in SQL: count_unit in threshold mode, refused in dp mode, which asks
//     for COUNT(*) or COUNT(DISTINCT unit));
//   - an aggregate of one column: the function and the column, f_column (sum_income,
//     avg_age, median_age, count_name); with DISTINCT, f_distinct_column;
//   - QUANTILE_CONT(column, rank) (and quantile, quantile_disc): p<rank in percent>_column
//     (p90_income);
//   - anything else: "", and the output keeps the engine's name for it (the expression's
//     text); give it an alias.
func (w *walker) outputName(e map[string]any) string {
	if a := str(e, "alias"); a != "" {
		return a
	}
	switch str(e, "class") {
	case "COLUMN_REF":
		if n := names(e); len(n) > 0 {
			return n[len(n)-1]
		}
	case "FUNCTION":
		fn := strings.ToLower(str(e, "function_name"))
		ch := list(e, "children")
		if fn == "count_star" && len(ch) == 0 {
			return "count"
		}
		if len(ch) == 0 {
			return ""
		}
		c, _ := ch[0].(map[string]any)
		if str(c, "class") != "COLUMN_REF" || len(names(c)) == 0 {
			return ""
		}
		ref := names(c)
		col := ref[len(ref)-1]
		distinct := truthy(e, "distinct")
		switch {
		case fn == "count" && distinct && len(ch) == 1 && w.isUnit(ref):
			return "count_units"
		case strings.HasPrefix(fn, "quantile") && len(ch) == 2 && !distinct:
			if r, ok := constantNumber(ch[1].(map[string]any)); ok {
				return fmt.Sprintf("p%s_%s", strconv.FormatFloat(r*100, 'g', 4, 64), col)
			}
		case len(ch) == 1 && distinct:
			return fn + "_distinct_" + col
		case len(ch) == 1:
			return fn + "_" + col
		}
	}
	return ""
}

// isUnit reports whether a column reference means a privacy unit.
func (w *walker) isUnit(ref []string) bool {
	cols := w.resolve(ref)
	return len(cols) == 1 && cols[0].PrivacyUnit
}

// distinctNames refuses an output whose columns do not have one name each (names[i] == ""
// keeps the engine's name, which is the expression's text).
func distinctNames(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" {
			continue
		}
		if seen[lowerASCII(n)] {
			return refuse("SELECT", "output column %s is ambiguous: give each key and aggregate its own name (AS ...)", n)
		}
		seen[lowerASCII(n)] = true
	}
	return nil
}
