package engine

import (
	"fmt"
	"strings"

	"github.com/veil-dp/veil/internal/distance"
)

// suggest returns " (did you mean X?)" for the candidate closest to name, ASCII case
// ignored, when it is close enough to be a typo (at most a third of the name's letters
// differ, and at most 3); "" otherwise. The candidates are what the caller may be told of
// (granted datasets and columns), never anything else.
func suggest(name string, candidates []string) string {
	best, bestD := "", 0
	n := lowerASCII(name)
	for _, c := range candidates {
		d := distance.Strings(n, lowerASCII(c))
		if d == 0 {
			continue
		}
		if best == "" || d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > 3 || bestD*3 > max(len([]rune(n)), 1) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// Suggest is suggest for other packages: " (did you mean X?)" for the candidate closest to
// name when it looks like a typo, "" otherwise. Give only candidates the caller may see.
func Suggest(name string, candidates []string) string { return suggest(name, candidates) }

// quotedHint explains a double-quoted "text" that SQL read as a column name: the vendor most
// likely meant the string 'text'.
func (w *walker) quotedHint(ref string) string {
	if w.query == "" || !strings.Contains(w.query, `"`+ref+`"`) {
		return ""
	}
	return fmt.Sprintf(`; "%s" in double quotes is a column name in SQL: for the text, use single quotes ('%s')`, ref, strings.ReplaceAll(ref, "'", "''"))
}

// columnNames lists the columns of the datasets in FROM that a query may name.
func (w *walker) columnNames() []string {
	var out []string
	for _, a := range w.order {
		for _, c := range w.tables[a].Columns {
			if !c.PrivacyUnit && !c.Identifier {
				out = append(out, c.Name)
			}
		}
	}
	return out
}

// datasetNames lists the granted datasets.
func (w *walker) datasetNames() []string {
	var out []string
	for _, t := range w.sc.Tables {
		out = append(out, t.Name)
	}
	return out
}
