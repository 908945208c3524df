package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/policy"
)

// newDatasetInferCmd is veil dataset infer: a draft schema from the provider's own files, read
// on the provider's machine (no daemon needed).
func newDatasetInferCmd() *cobra.Command {
	var name, provider string
	cmd := &cobra.Command{
		Use:   "infer FILE... > schema.yaml",
		Short: "Draft a schema from CSV or Parquet files (provider): names, types, counts, suggested kinds; you confirm the classification",
		Example: `  veil dataset infer birdstrikes.csv --provider faa > strikes.yaml
  # edit every line marked CONFIRM (level, kind, privacy unit), then:
  veil dataset register --schema strikes.yaml birdstrikes.csv`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var files []string
			for _, a := range args {
				abs, err := filepath.Abs(a)
				if err != nil {
					return err
				}
				files = append(files, abs)
			}
			p, err := engine.ProfileFiles(cmd.Context(), files)
			if err != nil {
				return fmt.Errorf("read the files: %w", err)
			}
			if name == "" {
				base := filepath.Base(files[0])
				name = policy.SimpleName(strings.TrimSuffix(base, filepath.Ext(base)))
			}
			if provider == "" {
				if c, err := connect(); err == nil {
					if me, err := c.Whoami(cmd.Context()); err == nil {
						provider = me.Tenant
					}
				}
			}
			draft := draftSchema(name, provider, p)
			if g.output != "table" {
				return print(struct {
					Rows    int64                  `json:"rows"`
					Columns []engine.ColumnProfile `json:"columns"`
					Schema  string                 `json:"schema"`
				}{p.Rows, p.Columns, draft}, nil, nil)
			}
			_, err = fmt.Fprint(g.out, draft)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the dataset's name (default: from the first file's name)")
	cmd.Flags().StringVar(&provider, "provider", "", "your agency (default: the tenant of the principal you are logged in as)")
	return cmd
}

// confirm marks what the provider must decide; a draft with it left in does not register
// (level 0 is no level).
const confirm = "CONFIRM"

// draftSchema writes a schema a provider completes by confirming the classification: every
// column's level is 0 (refused until set), with the suggested kind, mask and privacy unit
// marked CONFIRM.
func draftSchema(name, provider string, p *engine.Profile) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Draft schema by veil dataset infer: %d rows, %d columns.\n", p.Rows, len(p.Columns))
	fmt.Fprintf(&b, "# Every line marked %s is a suggestion for you to decide: set each column's level\n", confirm)
	b.WriteString("# (1 public .. 4 never released; 0 is refused), check its kind (id_number, name, phone,\n")
	b.WriteString("# address, free_text, none) and mask, and mark the column that identifies the person\n")
	b.WriteString("# (privacy_unit), or keep unit: row for data whose every row is its own event.\n")
	if name == "" {
		name = "dataset"
	}
	fmt.Fprintf(&b, "name: %s\n", name)
	if provider == "" {
		provider = "your-agency"
		fmt.Fprintf(&b, "provider: %s  # %s: your tenant\n", provider, confirm)
	} else {
		fmt.Fprintf(&b, "provider: %s\n", yamlString(provider))
	}
	unit := -1
	for i, c := range p.Columns {
		if c.Nulls == 0 && p.Rows > 0 && float64(c.Distinct) >= 0.97*float64(p.Rows) && looksLikeID(c.Header) {
			unit = i
			break
		}
	}
	if unit < 0 {
		fmt.Fprintf(&b, "unit: row  # %s: no column looks like a person's id; row means each row is its own unit (an event). person or enterprise need a privacy_unit column\n", confirm)
	} else {
		fmt.Fprintf(&b, "unit: person  # %s: person or enterprise (the privacy unit, %s, is distinct on every row)\n", confirm, p.Columns[unit].Header)
	}
	fmt.Fprintf(&b, "budget: {epsilon: 1, delta: 1.0e-6}  # %s: the total budget every grant on this dataset shares\n", confirm)
	b.WriteString("columns:\n")
	used := map[string]bool{policy.RowUnitColumn: true}
	for i, c := range p.Columns {
		n := policy.SimpleName(c.Header)
		if n == "" || used[n] {
			base := n
			if base == "" {
				base = "column"
			}
			for k := i + 1; ; k++ {
				if n = base + "_" + strconv.Itoa(k); !used[n] {
					break
				}
			}
		}
		used[n] = true
		kind, mask, why := suggestKind(c, p.Rows)
		if (kind == "id_number" || kind == "phone") && policy.NumericType(c.Type) {
			c.Type = "VARCHAR" // masks keep characters of text; a number would lose its form
		}
		fields := []string{"name: " + n}
		if n != c.Header {
			fields = append(fields, "source: "+yamlString(c.Header))
		}
		fields = append(fields, "type: "+c.Type, "level: 0", "kind: "+kind)
		if i == unit {
			fields = append(fields, "privacy_unit: true")
			if mask == "" {
				mask = "hmac"
			}
		}
		if mask != "" {
			fields = append(fields, "mask: "+yamlString(mask))
		}
		notes := []string{fmt.Sprintf("%d distinct", c.Distinct)}
		if c.Nulls > 0 {
			notes = append(notes, fmt.Sprintf("%d empty", c.Nulls))
		}
		if c.LeadingZeros && c.Type == "VARCHAR" {
			notes = append(notes, "leading zeros: kept as text")
		}
		if why != "" {
			notes = append(notes, why)
		}
		if i == unit {
			notes = append(notes, "suggested privacy unit")
		}
		if policy.NumericType(c.Type) {
			notes = append(notes, "bounds: [lower, upper] from public knowledge, not from the data, for DP sums")
		}
		fmt.Fprintf(&b, "  - {%s}  # %s level; %s\n", strings.Join(fields, ", "), confirm, strings.Join(notes, "; "))
	}
	return b.String()
}

// suggestKind suggests a kind and mask from the shares of values that look like identifiers
// and from the header.
func suggestKind(c engine.ColumnProfile, rows int64) (kind, mask, why string) {
	h := strings.ToLower(c.Header)
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(h, w) {
				return true
			}
		}
		return false
	}
	switch {
	case c.IDNumber >= 0.9:
		return "id_number", "keep:6,4", "looks like id numbers"
	case c.Phone >= 0.9 || has("phone", "mobile", "电话", "手机"):
		return "phone", "keep:3,4", "looks like phone numbers"
	case c.Name >= 0.9 || has("姓名") || (has("name") && c.Type == "VARCHAR" && rows > 0 && float64(c.Distinct) > 0.5*float64(rows)):
		return "name", "name", "looks like personal names"
	case has("address", "地址", "住址"):
		return "address", "suppress", "looks like addresses"
	}
	return "none", "", ""
}

func looksLikeID(header string) bool {
	h := strings.ToLower(header)
	return h == "id" || strings.HasSuffix(h, "_id") || strings.HasSuffix(h, " id") || strings.HasSuffix(h, "id number") ||
		strings.Contains(h, "编号") || strings.Contains(h, "身份证")
}

// yamlString quotes s when YAML would not read it back as the same string.
func yamlString(s string) string {
	if s != "" && !strings.ContainsAny(s, ":#{}[],&*!|>'\"%@`") && strings.TrimSpace(s) == s && !strings.ContainsAny(s[:1], "-?0123456789") {
		return s
	}
	return strconv.Quote(s)
}
