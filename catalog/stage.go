package catalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/policy"
)

// maxMismatches bounds how many schema/file mismatches one refusal lists.
const maxMismatches = 50

// StageSchema checks a provider's files against its schema, reporting every mismatch at once
// in the schema's column order, then writes each file into dir as Parquet holding the
// schema's columns under their names (read by their headers; CSV with the schema's types),
// adding the row number as the privacy unit of a dataset with unit row. A Parquet file that
// already is what would be written is copied byte for byte. It returns the staged paths and
// the version (as Stage).
func StageSchema(ctx context.Context, sch *policy.Schema, src []string, dir string) ([]string, string, error) {
	seen := map[string]bool{}
	for _, f := range src {
		if !filepath.IsAbs(f) {
			return nil, "", fmt.Errorf("%w: file paths must be absolute paths on the daemon's host", policy.ErrInvalid)
		}
		st, err := os.Stat(f)
		if err != nil || !st.Mode().IsRegular() {
			return nil, "", fmt.Errorf("%w: %s is not a readable regular file on the daemon's host", policy.ErrInvalid, filepath.Base(f))
		}
		base := filepath.Base(f)
		switch strings.ToLower(filepath.Ext(base)) {
		case ".parquet", ".csv":
		default:
			return nil, "", fmt.Errorf("%w: %s: only .parquet and .csv files can be registered", policy.ErrInvalid, base)
		}
		name := strings.TrimSuffix(base, filepath.Ext(base)) + ".parquet"
		if seen[name] {
			return nil, "", fmt.Errorf("%w: two files are named %s", policy.ErrInvalid, name)
		}
		seen[name] = true
	}
	var stage []engine.StageColumn
	for _, c := range sch.Columns {
		if sch.Unit == policy.RowUnit && c.PrivacyUnit {
			continue // added by staging
		}
		stage = append(stage, engine.StageColumn{Header: c.Header(), Name: c.Name, Type: c.Type})
	}
	var problems []string
	asIs := map[string]bool{} // Parquet files that need no rewriting
	for _, f := range src {
		cols, err := engine.FileColumns(ctx, f)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %s cannot be read: %v", policy.ErrInvalid, filepath.Base(f), noValues(err))
		}
		p, same := Mismatches(sch, cols, strings.EqualFold(filepath.Ext(f), ".csv"))
		for _, m := range p {
			if len(src) > 1 {
				m = filepath.Base(f) + ": " + m
			}
			problems = append(problems, m)
		}
		asIs[f] = same && sch.Unit != policy.RowUnit
	}
	if len(problems) > 0 {
		more := ""
		if len(problems) > maxMismatches {
			more = fmt.Sprintf("\n  … and %d more", len(problems)-maxMismatches)
			problems = problems[:maxMismatches]
		}
		return nil, "", fmt.Errorf("%w: the data files do not match the schema (%d problems, in the schema's column order):\n  - %s%s",
			policy.ErrInvalid, len(problems), strings.Join(problems, "\n  - "), more)
	}
	var out []string
	var next int64 = 1
	rowUnit := ""
	if sch.Unit == policy.RowUnit {
		rowUnit = policy.RowUnitColumn
	}
	for _, f := range sortedCopy(src) {
		base := filepath.Base(f)
		dst := filepath.Join(dir, strings.TrimSuffix(base, filepath.Ext(base))+".parquet")
		if asIs[f] {
			if err := copyFile(f, dst); err != nil {
				return nil, "", err
			}
		} else {
			n, err := engine.StageFile(ctx, f, dst, stage, rowUnit, next)
			if err != nil {
				return nil, "", fmt.Errorf("%w: %v", policy.ErrInvalid, noValues(err))
			}
			next += n
			if err := os.Chmod(dst, 0o444); err != nil {
				return nil, "", err
			}
		}
		out = append(out, dst)
	}
	return versionOf(out)
}

// noValues keeps a reading error to its summary: a CSV error as Veil words it, any other to
// its first line (DuckDB quotes rows after it).
func noValues(err error) error {
	var ce *engine.CSVError
	if errors.As(err, &ce) {
		return ce
	}
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return errors.New(msg)
}

// Mismatches lists what keeps a file's columns from matching the schema, in the schema's
// column order, then the file's columns the schema does not classify, in the file's order;
// a CSV file's types are not compared (it is read with the schema's). same reports a file
// that holds exactly the schema's columns, in its order, under their names.
func Mismatches(sch *policy.Schema, cols []engine.FileColumn, csv bool) (problems []string, same bool) {
	byHeader := map[string]engine.FileColumn{}
	for _, c := range cols {
		byHeader[strings.ToLower(c.Name)] = c
	}
	used := map[string]bool{}
	same = !csv
	i := 0
	for _, c := range sch.Columns {
		if sch.Unit == policy.RowUnit && c.PrivacyUnit {
			continue
		}
		h := c.Header()
		fc, ok := byHeader[strings.ToLower(h)]
		if !ok {
			hint := ""
			if c.Source == "" {
				for _, o := range cols {
					if policy.SimpleName(o.Name) == c.Name {
						hint = fmt.Sprintf("; the files have %q: give it as source", o.Name)
					}
				}
			}
			problems = append(problems, fmt.Sprintf("column %q (header %q) is not in the file%s", c.Name, h, hint))
			same = false
			continue
		}
		used[strings.ToLower(fc.Name)] = true
		if !csv && !strings.EqualFold(fc.Type, c.Type) {
			problems = append(problems, fmt.Sprintf("column %q is %s in the file but %s in the schema", c.Name, fc.Type, c.Type))
		}
		if i >= len(cols) || cols[i].Name != c.Name {
			same = false
		}
		i++
	}
	for _, fc := range cols {
		if !used[strings.ToLower(fc.Name)] {
			problems = append(problems, fmt.Sprintf("file column %q is not classified in the schema; every column needs a level and kind (veil dataset infer drafts them)", fc.Name))
		}
	}
	if len(cols) != i {
		same = false
	}
	return problems, same && len(problems) == 0
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sortStrings(out)
	return out
}
