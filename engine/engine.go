package engine

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrRefused marks a query the validator refuses. Errors wrapping it are safe to show the
// vendor: they name the part of the query at fault and carry no data.
var ErrRefused = errors.New("query refused")

// Refusal says why a query was refused and which part of it is at fault.
type Refusal struct {
	Part   string // the clause or element at fault: "WHERE", "function read_csv", ...
	Reason string
}

func (r *Refusal) Error() string {
	if r.Part == "" {
		return "query refused: " + r.Reason
	}
	return fmt.Sprintf("query refused: %s: %s", r.Part, r.Reason)
}

// Is makes errors.Is(err, ErrRefused) true for every refusal.
func (r *Refusal) Is(target error) bool { return target == ErrRefused }

func refuse(part, format string, a ...any) error {
	return &Refusal{Part: part, Reason: fmt.Sprintf(format, a...)}
}

// Column is a granted column of a dataset view.
type Column struct {
	Name string `json:"name"`
	// Source is the column's header in the provider's files, where it differs from Name: a
	// query may name the column by it, quoted, and it is read as Name.
	Source      string `json:"source,omitempty"`
	Type        string `json:"type,omitempty"`         // DuckDB type, for binding checks
	PrivacyUnit bool   `json:"privacy_unit,omitempty"` // the person or enterprise the row is about
	Identifier  bool   `json:"identifier,omitempty"`   // a direct identifier (id number, name, phone, address)
	// Bounds are the catalog's [lower, upper] for a numeric column (none: nil); DP clamps to
	// them unless the query gives its own.
	Bounds []float64 `json:"bounds,omitempty"`
	// Domain is the column's public domain of values, if the catalog declares one: DP
	// releases every value of it, and no other, without partition selection.
	Domain []string `json:"domain,omitempty"`
}

// Table is a dataset as a job sees it: a view named Name over Files exposing only Columns.
type Table struct {
	Name    string   `json:"name"`
	Files   []string `json:"files"`
	Columns []Column `json:"columns"`
	// MaxRowsPerUnit is the measured maximum of rows one privacy unit has in Files (0:
	// unknown). With it, a group of n rows has at least ceil(n/MaxRowsPerUnit) units.
	MaxRowsPerUnit int64 `json:"max_rows_per_unit,omitempty"`
	// UnitComplete is true when every row of Files has a privacy unit (measured, like
	// MaxRowsPerUnit; false when unknown).
	UnitComplete bool `json:"unit_complete,omitempty"`
	// MaxRowsPerUnitBy is, per column (by Name), the measured maximum of rows one privacy
	// unit has among the rows of Files that share one value of that column (UnitStatsBy;
	// absent: unknown). It is at most MaxRowsPerUnit, often far less: a person with many
	// rows has few of them in each group of a column. A query grouped by that column as it
	// is (a plain key, Plan.KeyColumns) has at most that many rows of a unit in a group.
	MaxRowsPerUnitBy map[string]int64 `json:"max_rows_per_unit_by,omitempty"`
	// ValueUnits is, per column (by Name), per value (its text; NULL has none), what
	// registration measured of the rows sharing that value (ValueUnitStats; absent:
	// unknown). The daemon hands the runner those of the plan's keys (Plan.KeyUnits), so a
	// job's tables never carry them (nor does any JSON of a Table).
	ValueUnits map[string]map[string]ValueUnits `json:"-"`
	// Unit is what the privacy unit is (person or enterprise): DP joins need the same on
	// both sides.
	Unit string `json:"unit,omitempty"`
}

// ValueUnits is what registration measures of the rows of a table sharing one value of a
// column, counting only rows with a privacy unit: how many there are, how many distinct
// units they have, and the most rows one unit has among them. A group of a query grouped
// by that column as it is (Plan.KeyOf) holds some of those rows (a WHERE may drop some, a
// group holds no other): at most Units units, at most Max rows of one unit, and at most
// Rows-Units rows beyond each unit's first (Extra), so a group of n such rows has at least
// n-Extra units. Exact statistics of single persons: the catalog never shows them.
type ValueUnits struct {
	Rows  int64 `json:"rows"`
	Units int64 `json:"units"`
	Max   int64 `json:"max"`
}

// Extra is the rows beyond each unit's first among the value's rows.
func (v ValueUnits) Extra() int64 { return v.Rows - v.Units }

// valueUnits is t's ValueUnits of a column, by Name as DuckDB resolves names.
func (t *Table) valueUnits(name string) map[string]ValueUnits {
	for n, v := range t.ValueUnits {
		if lowerASCII(n) == lowerASCII(name) {
			return v
		}
	}
	return nil
}

// column finds a granted column as DuckDB resolves names: ignoring ASCII case.
func (t *Table) column(name string) (Column, bool) {
	name = lowerASCII(name)
	for _, c := range t.Columns {
		if lowerASCII(c.Name) == name {
			return c, true
		}
	}
	return Column{}, false
}

func (t *Table) unit() (Column, bool) {
	for _, c := range t.Columns {
		if c.PrivacyUnit {
			return c, true
		}
	}
	return Column{}, false
}

// Scope is what a grant lets a query see.
type Scope struct {
	Mode   string  `json:"mode"`
	Tables []Table `json:"tables"`
	// Tenant is whose query this is. The validator keeps what it parsed per tenant: a
	// cached parse answers faster, and a vendor timing its own submission must not learn
	// whether another tenant submitted the same text.
	Tenant string `json:"-"`
}

func (s *Scope) table(name string) (*Table, bool) {
	name = lowerASCII(name)
	for i := range s.Tables {
		if lowerASCII(s.Tables[i].Name) == name {
			return &s.Tables[i], true
		}
	}
	return nil, false
}

// UnitsPrefix starts the names of the hidden columns the rewrite adds: the number of distinct
// privacy units behind each output row. The gate reads and removes them; vendors may not use
// the prefix.
const UnitsPrefix = "__veil_units"

// RowsColumn is the hidden column of the fast plan: the number of rows behind each output row.
const RowsColumn = "__veil_rows"

// Plan is a validated query: the SQL that runs and what the gate needs to know about its
// result.
type Plan struct {
	Query   string   `json:"query"`   // the vendor's text, as submitted
	SQL     string   `json:"sql"`     // the rewritten, canonical SQL the runner executes
	Tables  []string `json:"tables"`  // the dataset views the query reads
	Units   []string `json:"units"`   // hidden columns: distinct privacy units per output row
	Columns int      `json:"columns"` // number of vendor-visible output columns (they come first)
	Counts  []int    `json:"counts"`  // indexes of vendor-visible columns that are counts
	// Names are the vendor-visible columns' names in the output, the same rule in every mode
	// (outputName); "" keeps the engine's name. A plan stored before it keeps the engine's.
	Names []string `json:"names,omitempty"`
	// Keys are hidden columns after Units (or RowsColumn): the query's group keys, which
	// match the output's rows with the cells its checks name (threshold mode, checks.go).
	Keys []string `json:"keys,omitempty"`
	// Dominance are hidden columns after Keys: per SUM or AVG of the select list, the sum
	// and the largest magnitude of its rows' values (DominanceSums, DominanceMaxes). With the rows-per-unit maximum they bound
	// every person's contribution, and the runner runs the exact dominance check only when
	// the bound does not show every cell passes. Empty where the query has a MIN, MAX or a
	// DISTINCT sum: the exact check always runs then.
	Dominance []string `json:"dominance,omitempty"`

	// FastSQL, when set, is the same query counting rows (RowsColumn) instead of distinct
	// units. It is offered when the query reads one dataset whose maximum of rows per unit M
	// is known: a row with n rows then has at least ceil(n/M) units, and with n >= K*M it
	// certainly passes, with n < K it certainly fails. Only when some row lies in between
	// must the exact, slower SQL run. Counting distinct units is the most expensive part of
	// a threshold query; this is how Veil usually avoids it.
	FastSQL        string `json:"fast_sql,omitempty"`
	MaxRowsPerUnit int64  `json:"max_rows_per_unit,omitempty"`
	// FastAll says FastSQL counts every row (count(*)), not the rows with a unit: it was
	// planned for a dataset version in which every row has a unit (Table.UnitComplete) and
	// runs only on such a version (FastFor).
	FastAll bool `json:"fast_all,omitempty"`
	// KeyColumns are the group keys of a plan with FastSQL that are columns of its table as
	// they are (GROUP BY origin, not lower(origin)), by Name: every group holds the rows of
	// one value of each, so the rows-per-unit maximum of any of them bounds the group's
	// (RowsPerUnit).
	KeyColumns []string `json:"key_columns,omitempty"`
	// KeyOf names, per hidden key (Keys, in order), the column of the plan's one table that
	// key is as it is, or "" (an expression, or a plan without FastSQL): what the runner
	// looks a group's value up by in the table's ValueUnits (KeyUnits).
	KeyOf []string `json:"key_of,omitempty"`

	// DP is set for a query in dp mode: SQL then computes contribution-bounded partial
	// aggregates per group, and the DP gate turns them into noisy releases.
	DP *DPPlan `json:"dp,omitempty"`
}

// FastFor is FastSQL where it may run on t, the dataset version that runs now (its
// rows-per-unit maximum known and, for a plan counting every row, every row with a unit),
// else "": then the exact plan runs.
func (p *Plan) FastFor(t Table) string {
	if p.FastSQL == "" || t.MaxRowsPerUnit < 1 || (p.FastAll && !t.UnitComplete) {
		return ""
	}
	return p.FastSQL
}

// RowsPerUnit is the rows-per-unit maximum the fast plan and the gate may rely on in one
// group of p's result on t, the dataset version that runs now: t's maximum, or the smallest
// maximum t measured by one of p's key columns (a group of a plain key holds the rows of one
// of its values). 0 where t's maximum is unknown.
func (p *Plan) RowsPerUnit(t Table) int64 {
	m := t.MaxRowsPerUnit
	if m < 1 {
		return 0
	}
	for _, c := range p.KeyColumns {
		for name, v := range t.MaxRowsPerUnitBy {
			if lowerASCII(name) == lowerASCII(c) && v >= 1 && v < m {
				m = v
			}
		}
	}
	return m
}

// KeyUnits is, per hidden key of p (Keys, in order), t's ValueUnits of the column that key
// is (KeyOf), nil where none; nil where no key has any. The runner gets them with a fast
// plan only (Job.KeyUnits).
func (p *Plan) KeyUnits(t Table) []map[string]ValueUnits {
	var out []map[string]ValueUnits
	found := false
	for _, c := range p.KeyOf {
		var m map[string]ValueUnits
		if c != "" {
			m = t.valueUnits(c)
		}
		found = found || m != nil
		out = append(out, m)
	}
	if !found {
		return nil
	}
	return out
}

// Job is what the runner receives on its standard input.
type Job struct {
	SQL            string `json:"sql"`
	FastSQL        string `json:"fast_sql,omitempty"` // see Plan.FastSQL
	K              int    `json:"k,omitempty"`        // the threshold, for choosing between the two
	MaxRowsPerUnit int64  `json:"max_rows_per_unit,omitempty"`
	// KeyUnits are, per hidden key of the fast plan's result, the ValueUnits of the column
	// it is (Plan.KeyUnits, of the dataset version that runs now), nil where none: with
	// them the runner decides groups and cells its row counts and MaxRowsPerUnit leave.
	KeyUnits       []map[string]ValueUnits `json:"key_units,omitempty"`
	Tables         []Table                 `json:"tables"`
	Threads        int                     `json:"threads"`
	MemoryLimitMB  int                     `json:"memory_limit_mb"`
	MaxResultBytes int64                   `json:"max_result_bytes"`
	// Checks are Veil's check queries of a threshold job (checks.go): each result follows
	// the query's as a further Arrow IPC stream, each at most MaxResultBytes.
	Checks []string `json:"checks,omitempty"`
	// CheckFast, parallel to Checks, holds a check's row-counting variant (Check.FastSQL) or
	// "": the runner runs it first and the check itself only where it leaves a cell
	// undecided.
	CheckFast []string `json:"check_fast,omitempty"`
	// DominanceCheck, when set, is which of Checks (from 1) is the dominance check, which
	// the runner skips (writing an empty result) when the Dominance columns of the query's
	// result and MaxRowsPerUnit show that every cell of at least K persons passes Rules.
	DominanceCheck int         `json:"dominance_check,omitempty"`
	DominanceRules *CheckRules `json:"dominance_rules,omitempty"`
	Dominance      []string    `json:"dominance,omitempty"` // the plan's Dominance columns
	// DominanceCells is the dominance check's per-cell verdicts (Check.CellSQL): where the
	// Dominance columns leave some cells undecided, the runner runs it for those cells only
	// and writes the keys of the ones that fail, as the check itself would.
	DominanceCells string `json:"dominance_cells,omitempty"`
	// DominanceUnits is the dominance check's per-cell units, rows and verdicts
	// (Check.UnitsSQL): where the fast plan's result leaves cells undecided by their row
	// counts or by the dominance bounds, the runner runs it once for all of them, instead of
	// the exact plan for the one and DominanceCells for the other.
	DominanceUnits string `json:"dominance_units,omitempty"`
	// TempDir is where DuckDB may write its temporary files when the job does not fit in
	// MemoryLimitMB (a sandbox's spill area), at most TempMaxMB of them. Empty: nowhere; a
	// job that does not fit fails.
	TempDir   string `json:"temp_dir,omitempty"`
	TempMaxMB int    `json:"temp_max_mb,omitempty"`
	// Secret keys the hash that picks which groups a privacy unit keeps in dp mode. It is
	// drawn per job by the daemon, never stored, and never shown to the vendor.
	Secret int64 `json:"secret,omitempty"`
	// DPStateBytes is the dp plan's DPPlan.StateBytes (0: unknown, taken as the widest a dp
	// query may be): the runner lets DuckDB aggregate per unit into arrays, which DuckDB
	// does not count against MemoryLimitMB, only as large as fit an eighth of it.
	DPStateBytes int64 `json:"dp_state_bytes,omitempty"`

	// Kind is empty for a SQL job. Other kinds (he-score) are run by the daemon's runner,
	// which reads the data through Stream; Spec is theirs, opaque to the engine.
	Kind string          `json:"kind,omitempty"`
	Spec json.RawMessage `json:"spec,omitempty"`
	// Inputs are further read-only files the job needs (an encrypted model, a public key),
	// by name; the sandbox mounts them like dataset files and rewrites the paths.
	Inputs map[string]string `json:"inputs,omitempty"`
}
