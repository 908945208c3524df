package engine

import "strings"

// resolveSources rewrites, in a parsed query, every column reference that names a granted
// column by its header in the provider's files (quoted: "Origin State") to the column's
// name. It runs before any check, so every rule decides on the column the reference binds to.
// A name that is some table's column name is never rewritten (a header never shadows a
// name), and a qualified reference is resolved only in the table it names.
func resolveSources(tree any, sc *Scope) {
	names := map[string]bool{}
	mapped := false
	for _, t := range sc.Tables {
		for _, c := range t.Columns {
			names[lowerASCII(c.Name)] = true
			mapped = mapped || c.Source != ""
		}
	}
	if !mapped {
		return
	}
	var walk func(v any)
	walk = func(v any) {
		switch n := v.(type) {
		case []any:
			for _, e := range n {
				walk(e)
			}
		case map[string]any:
			if n["class"] == "COLUMN_REF" {
				if parts, ok := n["column_names"].([]any); ok && len(parts) > 0 {
					last, _ := parts[len(parts)-1].(string)
					if last != "" && !names[lowerASCII(last)] {
						table := ""
						if len(parts) >= 2 {
							table, _ = parts[len(parts)-2].(string)
						}
						if name, ok := sc.source(table, last); ok {
							parts[len(parts)-1] = name
						}
					}
				}
			}
			for _, e := range n {
				walk(e)
			}
		}
	}
	walk(tree)
}

// source finds the column whose header is h, in the named table (any table when table is
// "", or a name that is no table's: an alias); a header two tables share is ambiguous and
// resolves to nothing.
func (s *Scope) source(table, h string) (string, bool) {
	if _, ok := s.table(table); !ok {
		table = ""
	}
	found, n := "", 0
	for _, t := range s.Tables {
		if table != "" && lowerASCII(t.Name) != lowerASCII(table) {
			continue
		}
		for _, c := range t.Columns {
			if c.Source != "" && strings.EqualFold(c.Source, h) {
				found, n = c.Name, n+1
			}
		}
	}
	return found, n == 1
}
