package policy

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Kind is the kind of personal data a column holds.
type Kind string

const (
	KindNone     Kind = "none"
	KindIDNumber Kind = "id_number"
	KindName     Kind = "name"
	KindPhone    Kind = "phone"
	KindAddress  Kind = "address"
	KindFreeText Kind = "free_text"
)

var kinds = map[Kind]bool{KindNone: true, KindIDNumber: true, KindName: true, KindPhone: true, KindAddress: true, KindFreeText: true}

// Identifier reports whether a column of this kind identifies a person directly.
func (k Kind) Identifier() bool {
	return k == KindIDNumber || k == KindName || k == KindPhone || k == KindAddress
}

// ValueUnits is what registration measured of the rows sharing one value of a column
// (engine.ValueUnits).
type ValueUnits struct {
	Rows  int64 `json:"rows"`
	Units int64 `json:"units"`
	Max   int64 `json:"max"`
}

// Schema is a provider's description of one dataset, read from its schema file.
type Schema struct {
	Name           string `yaml:"name" json:"name"`
	Title          string `yaml:"title,omitempty" json:"title,omitempty"`
	Provider       string `yaml:"provider" json:"provider"`
	Unit           string `yaml:"unit" json:"unit"`
	MaxRowsPerUnit int64  `yaml:"max_rows_per_unit,omitempty" json:"max_rows_per_unit,omitempty"`
	// UnitComplete is measured at registration, never declared: every row has a privacy unit.
	UnitComplete bool `yaml:"-" json:"unit_complete,omitempty"`
	// MaxRowsPerUnitBy is measured at registration, never declared: per column, the most
	// rows one unit has among the rows sharing one value of it (engine.UnitStatsBy).
	MaxRowsPerUnitBy map[string]int64 `yaml:"-" json:"max_rows_per_unit_by,omitempty"`
	// ValueUnits is measured at registration, never declared: per VARCHAR column of few
	// values, per value, its rows with a unit, their distinct units and the most rows of one
	// unit (engine.ValueUnitStats). Exact statistics of single persons, like
	// MaxRowsPerUnitBy: the catalog API leaves both out.
	ValueUnits map[string]map[string]ValueUnits `yaml:"-" json:"value_units,omitempty"`
	// Owner, Grant and Approved mark a vendor's own data fused into one grant (社会数据融合):
	// visible only to that tenant's jobs under that grant, once the authority approved it,
	// and deleted when the grant ends. Set by the daemon, never declared.
	Owner    string `yaml:"-" json:"owner,omitempty"`
	Grant    string `yaml:"-" json:"grant,omitempty"`
	Approved bool   `yaml:"-" json:"approved,omitempty"`
	// FusedWith is the public dataset a fused upload was matched with: its dev twin is
	// built from that dataset's twin. Set by the daemon, never declared.
	FusedWith string `yaml:"-" json:"fused_with,omitempty"`
	// Synthetic declares that the data is generated and describes no real person. Only such
	// data may be used by a daemon running without a sandbox (isolation=process).
	Synthetic bool     `yaml:"synthetic,omitempty" json:"synthetic,omitempty"`
	Budget    Budget   `yaml:"budget" json:"budget"`
	Columns   []Column `yaml:"columns" json:"columns"`
}

// Budget is a dataset's total differential-privacy budget, as the provider states it. The
// ledger keeps it in integer units (package dp); this is only the declaration.
type Budget struct {
	Epsilon float64 `yaml:"epsilon" json:"epsilon"`
	Delta   float64 `yaml:"delta" json:"delta"`
	// MaxQueryEpsilon caps what one job may spend (0: DefaultMaxQueryEpsilon). A dataset's
	// and a grant's caps both apply.
	MaxQueryEpsilon float64 `yaml:"max_query_epsilon,omitempty" json:"max_query_epsilon,omitempty"`
}

// DefaultMaxQueryEpsilon is the per-query cap where none is declared.
const DefaultMaxQueryEpsilon = 1.0

// QueryCap is the per-query epsilon cap the budget declares.
func (b Budget) QueryCap() float64 {
	if b.MaxQueryEpsilon > 0 {
		return b.MaxQueryEpsilon
	}
	return DefaultMaxQueryEpsilon
}

// Column classifies one column.
type Column struct {
	// Name is what vendors query: lower case letters, digits and _. A header that is not such
	// a name (spaces, $, mixed case, Chinese characters) is given as Source, with Name the
	// simple name; a schema that gives only a header as name gets a derived simple name.
	Name string `yaml:"name" json:"name"`
	// Source is the column's header in the provider's files, where it differs from Name.
	// Registration reads that header and stores the column as Name; a query may also name it
	// by Source, quoted ("Origin State"), and the privacy rules decide on the column it binds.
	Source      string    `yaml:"source,omitempty" json:"source,omitempty"`
	Type        string    `yaml:"type" json:"type"`
	Level       int       `yaml:"level" json:"level"`
	Kind        Kind      `yaml:"kind" json:"kind"`
	PrivacyUnit bool      `yaml:"privacy_unit,omitempty" json:"privacy_unit,omitempty"`
	Bounds      []float64 `yaml:"bounds,omitempty" json:"bounds,omitempty"`
	// Domain is the column's public domain of values. The schema file writes it as a list, as
	// {from: dataset.column} (that column's declared domain, or the values of a level-1 column
	// of the same provider's dataset, copied at registration: DomainFrom keeps the name) or as
	// {file: PATH} (one value a line, read by the CLI before it sends the schema).
	Domain     []string   `yaml:"-" json:"domain,omitempty"`
	DomainSpec DomainSpec `yaml:"domain,omitempty" json:"-"`
	DomainFrom string     `yaml:"-" json:"domain_from,omitempty"`
	Mask       string     `yaml:"mask,omitempty" json:"mask,omitempty"`
}

// DomainSpec is a domain as a schema file writes it: a list of values, {from: dataset.column}
// or {file: PATH}.
type DomainSpec struct {
	Values []string
	From   string
	File   string
}

// MaxDomainValues bounds a public domain.
const MaxDomainValues = 10000

// UnmarshalYAML reads a list or one of the two forms of a reference, refusing any other key.
func (d *DomainSpec) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		return n.Decode(&d.Values)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: domain: %s must be a single value", v.Line, k)
			}
			switch k {
			case "from":
				d.From = v.Value
			case "file":
				d.File = v.Value
			default:
				return fmt.Errorf("line %d: domain: unknown key %q; write a list, {from: dataset.column} or {file: PATH}", n.Content[i].Line, k)
			}
		}
		if (d.From == "") == (d.File == "") {
			return fmt.Errorf("line %d: domain: give one of from and file", n.Line)
		}
		return nil
	}
	return fmt.Errorf("line %d: domain: write a list, {from: dataset.column} or {file: PATH}", n.Line)
}

// MarshalYAML writes the domain back in the form it was read.
func (d DomainSpec) MarshalYAML() (any, error) {
	switch {
	case d.From != "":
		return map[string]string{"from": d.From}, nil
	case d.File != "":
		return map[string]string{"file": d.File}, nil
	}
	return d.Values, nil
}

// IsZero reports a domain not given (omitted when written).
func (d DomainSpec) IsZero() bool { return d.Values == nil && d.From == "" && d.File == "" }

// Identifier reports whether the column is a direct identifier.
func (c Column) Identifier() bool { return c.Kind.Identifier() }

// Header is the column's name in the provider's files.
func (c Column) Header() string {
	if c.Source != "" {
		return c.Source
	}
	return c.Name
}

// RowUnit is the unit of a dataset whose every row is its own privacy unit (an event, such as
// a flight). RowUnitColumn is the column registration adds as its privacy unit: the row's
// number in the registered files.
const (
	RowUnit       = "row"
	RowUnitColumn = "veil_row_id"
)

// maxSourceBytes bounds a column's header.
const maxSourceBytes = 255

// SimpleName derives a name vendors can type from a file's header: ASCII letters and digits
// in lower case, every other run of characters one _ ("Origin State" -> origin_state,
// "Cost Total $" -> cost_total). It returns "" when the header holds no ASCII letter or
// digit (a Chinese header): such a column needs a name given in the schema.
func SimpleName(header string) string {
	var b strings.Builder
	gap := false
	for _, r := range header {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
		case r >= 'A' && r <= 'Z':
			r += 'a' - 'A'
		default:
			gap = true
			continue
		}
		if gap && b.Len() > 0 {
			b.WriteByte('_')
		}
		gap = false
		b.WriteRune(r)
	}
	n := b.String()
	if n == "" {
		return ""
	}
	if n[0] >= '0' && n[0] <= '9' {
		n = "c_" + n
	}
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "_")
	}
	return n
}

// normalize gives every column whose name is a header but not a simple name its simple
// name, keeping the header as its source, and adds the row unit's column.
func (s *Schema) normalize() {
	for i, c := range s.Columns {
		if c.DomainSpec.Values != nil {
			s.Columns[i].Domain = c.DomainSpec.Values
		}
		s.Columns[i].DomainFrom = c.DomainSpec.From
		if c.Source == "" && c.Name != "" && !nameRE.MatchString(c.Name) {
			if n := SimpleName(c.Name); n != "" {
				s.Columns[i].Source, s.Columns[i].Name = c.Name, n
			}
		}
	}
	if s.Unit == RowUnit {
		for _, c := range s.Columns {
			if c.PrivacyUnit || c.Name == RowUnitColumn {
				return
			}
		}
		s.Columns = append(s.Columns, Column{Name: RowUnitColumn, Type: "BIGINT", Level: 3, Kind: KindNone, PrivacyUnit: true, Mask: "hmac"})
	}
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// reserved names cannot name a dataset: they would shadow DuckDB's own catalogs.
var reserved = map[string]bool{"main": true, "system": true, "temp": true, "information_schema": true, "pg_catalog": true}

var maskRE = regexp.MustCompile(`^(none|name|hmac|month|suppress|keep:\d{1,2},\d{1,2}|band:\d{1,6}|grid:[0-9.]{1,10})$`)

// ParseSchema reads and checks a schema file.
func ParseSchema(data []byte) (*Schema, error) {
	var s Schema
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: schema file: %v", ErrInvalid, err)
	}
	s.normalize()
	if err := s.Check(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Check reports the first problem with the schema, in words a provider can act on.
func (s *Schema) Check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: schema %q: %s", ErrInvalid, s.Name, fmt.Sprintf(format, a...))
	}
	if !nameRE.MatchString(s.Name) || reserved[s.Name] {
		return bad("name must be lower case letters, digits and _ (starting with a letter), and not a reserved word")
	}
	if s.Provider == "" {
		return bad("provider is missing: name the agency that owns the data")
	}
	if s.Unit != "person" && s.Unit != "enterprise" && s.Unit != RowUnit {
		return bad("unit must be person, enterprise or row (each row its own unit: an event, such as a flight)")
	}
	if s.MaxRowsPerUnit < 0 {
		return bad("max_rows_per_unit must not be negative")
	}
	if !(s.Budget.Epsilon > 0) || math.IsInf(s.Budget.Epsilon, 0) || s.Budget.Epsilon > 100 {
		return bad("budget.epsilon must be a number in (0, 100]")
	}
	if !(s.Budget.Delta >= 0 && s.Budget.Delta < 1e-3) {
		return bad("budget.delta must be in [0, 0.001)")
	}
	if !(s.Budget.MaxQueryEpsilon >= 0 && s.Budget.MaxQueryEpsilon <= s.Budget.Epsilon) { // NaN fails both
		return bad("budget.max_query_epsilon must be between 0 and budget.epsilon")
	}
	if len(s.Columns) == 0 {
		return bad("no columns")
	}
	seen := map[string]bool{}
	units := 0
	headers := map[string]string{} // header, as DuckDB compares names (ASCII case ignored) -> column
	for _, c := range s.Columns {
		if !nameRE.MatchString(c.Name) {
			if c.Source == "" {
				return bad("column %q: name it with a simple name vendors query (lower case letters, digits and _) and give the header as source, e.g. {name: origin_state, source: %q}", c.Name, c.Name)
			}
			return bad("column name %q must be lower case letters, digits and _ (the header in the files goes in source)", c.Name)
		}
		if c.Source != "" {
			if len(c.Source) > maxSourceBytes || !utf8.ValidString(c.Source) || strings.ContainsFunc(c.Source, unicode.IsControl) || strings.TrimSpace(c.Source) == "" {
				return bad("column %q: source must be the column's header in the files: at most %d bytes of text, without control characters", c.Name, maxSourceBytes)
			}
		}
		h := strings.ToLower(c.Header())
		if other, dup := headers[h]; dup {
			return bad("columns %q and %q have the same header %q in the files (names are compared ignoring case)", other, c.Name, c.Header())
		}
		headers[h] = c.Name
		if s.Unit == RowUnit && c.PrivacyUnit && c.Name != RowUnitColumn {
			return bad("column %q: a dataset with unit row has no privacy-unit column of its own (Veil adds %s); remove privacy_unit", c.Name, RowUnitColumn)
		}
		if s.Unit != RowUnit && c.Name == RowUnitColumn {
			return bad("column name %q is kept for datasets with unit row", c.Name)
		}
		if strings.HasPrefix(c.Name, "__veil") {
			return bad("column name %q uses the reserved prefix __veil", c.Name)
		}
		if seen[c.Name] {
			return bad("column %q appears twice", c.Name)
		}
		seen[c.Name] = true
		if c.Type == "" {
			return bad("column %q has no type", c.Name)
		}
		if c.Level < 1 || c.Level > 4 {
			return bad("column %q: level must be 1, 2, 3 or 4", c.Name)
		}
		if !kinds[c.Kind] {
			return bad("column %q: kind must be one of none, id_number, name, phone, address, free_text", c.Name)
		}
		if c.PrivacyUnit {
			units++
			if c.Level == 4 {
				return bad("column %q: the privacy unit cannot be level 4", c.Name)
			}
		}
		if len(c.Bounds) != 0 {
			if len(c.Bounds) != 2 || !(c.Bounds[0] < c.Bounds[1]) || math.IsInf(c.Bounds[0], 0) || math.IsInf(c.Bounds[1], 0) {
				return bad("column %q: bounds must be [lower, upper] with lower < upper", c.Name)
			}
		}
		if c.DomainSpec.File != "" {
			return bad("column %q: domain {file: %s} is read by the CLI (veil dataset register); the daemon takes the values, not a path", c.Name, c.DomainSpec.File)
		}
		if c.DomainFrom != "" {
			ds, col, ok := strings.Cut(c.DomainFrom, ".")
			if !ok || !nameRE.MatchString(ds) || !nameRE.MatchString(col) {
				return bad("column %q: domain from %q must name dataset.column", c.Name, c.DomainFrom)
			}
			if len(c.Domain) > 0 && c.DomainSpec.From != "" {
				return bad("column %q: give the domain as a list or from a column, not both", c.Name)
			}
		}
		if len(c.Domain) > MaxDomainValues {
			return bad("column %q: a domain holds at most %d values", c.Name, MaxDomainValues)
		}
		if c.Mask != "" && !maskRE.MatchString(c.Mask) {
			return bad("column %q: unknown mask rule %q", c.Name, c.Mask)
		}
		if c.Identifier() && c.Mask == "" {
			return bad("column %q is a direct identifier (%s) and needs a mask rule", c.Name, c.Kind)
		}
	}
	if units != 1 {
		return bad("exactly one column must be the privacy unit (privacy_unit: true), found %d", units)
	}
	// A query may name a column by its header: a header must not be another column's name.
	for _, c := range s.Columns {
		if c.Source == "" {
			continue
		}
		for _, o := range s.Columns {
			if o.Name != c.Name && strings.EqualFold(o.Name, c.Source) {
				return bad("column %q has the header %q, which is the name of column %q; a query could not tell them apart", c.Name, c.Source, o.Name)
			}
		}
	}
	return nil
}

// Column returns the named column.
func (s *Schema) Column(name string) (Column, bool) {
	for _, c := range s.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// UnitColumn returns the privacy-unit column.
func (s *Schema) UnitColumn() Column {
	for _, c := range s.Columns {
		if c.PrivacyUnit {
			return c
		}
	}
	return Column{}
}

// FormatFloat prints a float the way schema files and messages show it.
func FormatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// NumericType reports whether a column type holds numbers.
func NumericType(t string) bool {
	t = strings.ToUpper(t)
	for _, n := range []string{"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL", "INT"} {
		if strings.HasPrefix(t, n) {
			return true
		}
	}
	return false
}
