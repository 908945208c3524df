package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duckdb/duckdb-go/v2"
)

// MaxQueryBytes bounds the length of a vendor query.
const MaxQueryBytes = 64 << 10

// ValidatorConfig bounds what validating vendor SQL may cost the daemon. Zero fields take
// the defaults. The daemon adds its own per-tenant bound on top.
type ValidatorConfig struct {
	MaxConcurrent int           // validations at once (default 4); more wait for a place, honouring their context
	MemoryLimitMB int           // memory_limit of the validator's DuckDB (default 256)
	Timeout       time.Duration // the longest one validation may take (default 10s)
}

func (c ValidatorConfig) withDefaults() ValidatorConfig {
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = 4
	}
	if c.MemoryLimitMB <= 0 {
		c.MemoryLimitMB = 256
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	return c
}

// Validator checks vendor SQL against a grant's scope and rewrites it for the gate. It owns
// a private in-memory DuckDB that reads no file and holds no data: it is used only for
// DuckDB's parser, serializer and binder, and never evaluates an expression of the vendor's
// query (constant expressions, which DuckDB folds while binding, are refused before it binds,
// and the query is planned, never optimized or run). A Validator is safe for concurrent use.
type Validator struct {
	db    *sql.DB
	cfg   ValidatorConfig
	slots chan struct{} // one per validation under way

	active, peak atomic.Int32 // validations under way, and the most there have been at once

	items     sync.Map // select-list items written by Veil -> their parse trees
	itemCount atomic.Int32

	// parses keeps what DuckDB's parser returned for recent texts (json_serialize_sql, a
	// function of the text alone), at most maxParsedBytes of it: a query is parsed again
	// when its job runs (its checks) and is often submitted more than once. Each use decodes
	// its own tree.
	parseMu     sync.Mutex
	parses      map[string]string
	parsedBytes int
	parseRuns   atomic.Int64 // texts DuckDB's parser was asked for (parses missed)

	// plans keeps the plans of recent validations (plan), at most maxPlannedBytes of
	// them, as JSON: each use decodes its own copy.
	planMu       sync.Mutex
	plans        map[string][]byte
	plannedBytes int
	planRuns     atomic.Int64 // validations that ran (plans missed)
}

// maxParsedBytes bounds the parser output a validator keeps (parses); when it is full it
// starts again empty.
const maxParsedBytes = 4 << 20

// maxPlannedBytes bounds the plans a validator keeps (plans); when it is full it starts
// again empty.
const maxPlannedBytes = 4 << 20

// plan answers a validation from the plans kept, or runs it (validate) and keeps its plan.
// A vendor often submits a text again under the same grant (a report run each day, a
// retry), and a validation costs DuckDB calls (the rewrite and the bound-plan check) even
// when its parse is kept. The key is all the plan depends on: the tenant (kept per tenant,
// as the parses are: another tenant's plan would tell a vendor timing its submission that
// the text was submitted), the kind of validation and its options, the text, and the whole
// scope (the grant's tables and columns, their types and bounds, the dataset version's
// files and statistics), so a change of any validates again. Refusals are not kept; a
// plan that cannot be encoded is not kept either.
func (v *Validator) plan(kind, query string, sc *Scope, opts any, validate func() (*Plan, error)) (*Plan, error) {
	var key string
	// Which columns have measured values (Table.ValueUnits, not in a Table's JSON) decides
	// whether the plan sums magnitudes: part of the key too.
	var measured [][]string
	for _, t := range sc.Tables {
		cols := make([]string, 0, len(t.ValueUnits))
		for c, v := range t.ValueUnits {
			if v != nil {
				cols = append(cols, c)
			}
		}
		slices.Sort(cols)
		measured = append(measured, cols)
	}
	if b, err := json.Marshal(struct {
		Kind     string     `json:"kind"`
		Query    string     `json:"query"`
		Scope    *Scope     `json:"scope"`
		Measured [][]string `json:"measured"`
		Opts     any        `json:"opts"`
	}{kind, query, sc, measured, opts}); err == nil {
		sum := sha256.Sum256(b)
		key = sc.Tenant + "\x00" + string(sum[:])
	}
	if key != "" {
		v.planMu.Lock()
		kept, ok := v.plans[key]
		v.planMu.Unlock()
		if ok {
			p := &Plan{}
			if err := json.Unmarshal(kept, p); err == nil {
				return p, nil
			}
		}
	}
	v.planRuns.Add(1)
	p, err := validate()
	if err != nil || key == "" {
		return p, err
	}
	b, merr := json.Marshal(p)
	if merr != nil {
		return p, nil
	}
	// What is kept is what the caller gets, through the same encoding.
	out := &Plan{}
	if err := json.Unmarshal(b, out); err != nil {
		return p, nil
	}
	v.planMu.Lock()
	if n := len(key) + len(b); n <= maxPlannedBytes {
		if v.plans == nil || v.plannedBytes+n > maxPlannedBytes {
			v.plans, v.plannedBytes = map[string][]byte{}, 0
		}
		if _, dup := v.plans[key]; !dup {
			v.plans[key] = b
			v.plannedBytes += n
		}
	}
	v.planMu.Unlock()
	return out, nil
}

// NewValidator opens a validator with the default bounds.
func NewValidator() (*Validator, error) { return NewValidatorWithConfig(ValidatorConfig{}) }

// NewValidatorWithConfig opens the validator's DuckDB, locked down like the runner's.
func NewValidatorWithConfig(cfg ValidatorConfig) (*Validator, error) {
	cfg = cfg.withDefaults()
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(cfg.MaxConcurrent)
	db.SetMaxIdleConns(cfg.MaxConcurrent)
	db.SetConnMaxLifetime(0)
	// Settings are per database here; a new pooled connection inherits them.
	for _, s := range []string{
		"SET autoinstall_known_extensions=false",
		"SET autoload_known_extensions=false",
		"SET temp_directory=''",
		"SET threads=1",
		fmt.Sprintf("SET memory_limit='%dMB'", cfg.MemoryLimitMB),
		"SET enable_external_access=false",
		"SET lock_configuration=true",
	} {
		if _, err := db.Exec(s); err != nil {
			db.Close()
			return nil, fmt.Errorf("validator: %s: %w", s, err)
		}
	}
	return &Validator{db: db, cfg: cfg, slots: make(chan struct{}, cfg.MaxConcurrent)}, nil
}

// Close releases the validator's DuckDB.
func (v *Validator) Close() error { return v.db.Close() }

// vsession is one validation's hold on the validator's DuckDB: one connection. A
// validation leaves nothing in it.
type vsession struct {
	conn *sql.Conn
	v    *Validator
	// tenant keys what the session keeps in the validator's caches (Scope.Tenant).
	tenant string
}

// run waits for a place (or for ctx), then calls fn within the validation's time limit.
// DuckDB work is interrupted when ctx ends.
func (v *Validator) run(ctx context.Context, fn func(ctx context.Context, s *vsession) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	select {
	case v.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("validate: waiting for the validator: %w", ctx.Err())
	}
	defer func() { <-v.slots }()
	n := v.active.Add(1)
	defer v.active.Add(-1)
	for p := v.peak.Load(); n > p && !v.peak.CompareAndSwap(p, n); p = v.peak.Load() {
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout)
	defer cancel()
	conn, err := v.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	defer conn.Close()
	if err := fn(ctx, &vsession{conn: conn, v: v}); err != nil {
		// DuckDB says "interrupted" when ctx ends; the caller wants to know why.
		if ctx.Err() != nil && !errors.Is(err, ErrRefused) {
			return fmt.Errorf("validate: %w", ctx.Err())
		}
		return err
	}
	return nil
}

type parsed struct {
	Error      bool             `json:"error"`
	ErrorType  string           `json:"error_type"`
	ErrorMsg   string           `json:"error_message"`
	Statements []map[string]any `json:"statements"`
}

func (s *vsession) parse(ctx context.Context, query string) (*parsed, error) {
	v := s.v
	v.parseMu.Lock()
	key := s.tenant + "\x00" + query
	out, ok := v.parses[key]
	v.parseMu.Unlock()
	if !ok {
		v.parseRuns.Add(1)
		if err := s.conn.QueryRowContext(ctx, "SELECT json_serialize_sql(?::VARCHAR)::VARCHAR", query).Scan(&out); err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		v.parseMu.Lock()
		if n := len(key) + len(out); n <= maxParsedBytes {
			if v.parses == nil || v.parsedBytes+n > maxParsedBytes {
				v.parses, v.parsedBytes = map[string]string{}, 0
			}
			if _, dup := v.parses[key]; !dup {
				v.parses[key] = out
				v.parsedBytes += n
			}
		}
		v.parseMu.Unlock()
	}
	p := &parsed{}
	d := json.NewDecoder(strings.NewReader(out))
	d.UseNumber()
	if err := d.Decode(p); err != nil {
		// DuckDB writes a number beyond a double's range as Infinity, which is not JSON.
		return nil, refuse("syntax", "the query holds a value Veil cannot read (a number too large?); write numbers that fit a DOUBLE")
	}
	return p, nil
}

var statementWord = regexp.MustCompile(`(?i)^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*([a-z]+)`)

// statementKinds names the kind of each ;-separated part of a text, for messages only.
func statementKinds(query string) []string {
	var kinds []string
	for _, part := range strings.Split(query, ";") {
		if m := statementWord.FindStringSubmatch(part); m != nil {
			kinds = append(kinds, strings.ToUpper(m[1]))
		}
	}
	return kinds
}

// Validate checks query against the scope and returns the plan to run, or an error wrapping
// ErrRefused that names the cause. It runs nothing against data. It waits for a place while
// MaxConcurrent validations are under way, and gives up with ctx.
func (v *Validator) Validate(ctx context.Context, query string, sc Scope) (*Plan, error) {
	if sc.Mode != "" && sc.Mode != "threshold" {
		return nil, refuse("", "Validate checks threshold queries; use ValidateDP for mode %q", sc.Mode)
	}
	return v.plan("threshold", query, &sc, nil, func() (*Plan, error) {
		var plan *Plan
		err := v.run(ctx, func(ctx context.Context, s *vsession) error {
			var err error
			s.tenant = sc.Tenant
			plan, err = s.validate(ctx, query, &sc)
			return err
		})
		return plan, err
	})
}

func (s *vsession) validate(ctx context.Context, query string, sc *Scope) (*Plan, error) {
	p, node, err := s.parseOne(ctx, query)
	if err != nil {
		return nil, err
	}
	resolveSources(node, sc)
	w := newWalker(sc)
	w.query = query
	if err := w.selectNode(node); err != nil {
		return nil, err
	}

	if err := distinctNames(w.names); err != nil {
		return nil, err
	}
	plan := &Plan{Query: query, Columns: w.columns, Counts: w.counts, Names: w.names}
	pristine, err := json.Marshal(p.Statements[0])
	if err != nil {
		return nil, err
	}
	// Append one hidden COUNT(DISTINCT unit) per table read: the gate keeps a row only if
	// every one of them reaches k.
	list := node["select_list"].([]any)
	for i, alias := range w.order {
		t := w.tables[alias]
		u, ok := t.unit()
		if !ok {
			return nil, fmt.Errorf("dataset %s has no privacy unit in scope", t.Name)
		}
		name := fmt.Sprintf("%s_%d", UnitsPrefix, i)
		item, err := s.expression(ctx, fmt.Sprintf("count(DISTINCT %s.%s) AS %s", quoteIdent(alias), quoteIdent(u.Name), name))
		if err != nil {
			return nil, err
		}
		list = append(list, item)
		plan.Units = append(plan.Units, name)
	}
	// Then the group keys, hidden: they match the output's rows with the cells the checks
	// of threshold mode name (checks.go).
	keys := groupKeys(node, w)
	for i := range keys {
		plan.Keys = append(plan.Keys, fmt.Sprintf("%s_%d", KeysPrefix, i))
	}
	list = append(list, keyItems(keys)...)
	// Then what lets the runner skip the exact dominance check (checks.go).
	// Where the one table measured a key column's values (ValueUnits), the plan also sums
	// the magnitudes: with the values' figures that bounds the cells whose sums cancel.
	byValue := false
	if t := w.tables[w.order[0]]; len(w.order) == 1 && t.MaxRowsPerUnit > 0 {
		for _, k := range keys {
			if str(k, "class") != "COLUMN_REF" {
				continue
			}
			if cs := w.resolve(names(k)); len(cs) == 1 && !cs[0].PrivacyUnit && t.valueUnits(cs[0].Name) != nil {
				byValue = true
			}
		}
	}
	dom, err := s.dominanceItems(ctx, node, byValue)
	if err != nil {
		return nil, err
	}
	for _, it := range dom {
		plan.Dominance = append(plan.Dominance, str(it.(map[string]any), "alias"))
	}
	list = append(list, dom...)
	node["select_list"] = list
	plan.Tables = w.tableNames()

	stmts := []map[string]any{p.Statements[0]}
	if t := w.tables[w.order[0]]; len(w.order) == 1 && t.MaxRowsPerUnit > 0 {
		var stmt map[string]any
		d := json.NewDecoder(bytes.NewReader(pristine))
		d.UseNumber() // constants keep their exact digits
		if err := d.Decode(&stmt); err != nil {
			return nil, err
		}
		node := stmt["node"].(map[string]any)
		// count(unit), not count(*): rows without a unit have no person behind them. Where
		// every row of the dataset has one, count(*) is the same count (the query reads that
		// one table, no join: every row is one of its rows) and need not read the unit column;
		// the plan says so (FastAll), and runs so only on a version where every row has one.
		u, _ := t.unit()
		rows := fmt.Sprintf("count(%s.%s)", quoteIdent(w.order[0]), quoteIdent(u.Name))
		if t.UnitComplete {
			rows, plan.FastAll = "count(*)", true
		}
		item, err := s.expression(ctx, rows+" AS "+RowsColumn)
		if err != nil {
			return nil, err
		}
		node["select_list"] = append(append(append(node["select_list"].([]any), item), keyItems(keys)...), clone(dom).([]any)...)
		stmts = append(stmts, stmt)
		// The keys that are the table's columns as they are: each group holds one value of
		// each, which bounds a unit's rows in the group by that column's maximum.
		plan.KeyOf = make([]string, len(keys))
		for i, k := range keys {
			if str(k, "class") != "COLUMN_REF" {
				continue
			}
			if cs := w.resolve(names(k)); len(cs) == 1 && !cs[0].PrivacyUnit {
				plan.KeyOf[i] = cs[0].Name
				if !slices.Contains(plan.KeyColumns, cs[0].Name) {
					plan.KeyColumns = append(plan.KeyColumns, cs[0].Name)
				}
			}
		}
		plan.MaxRowsPerUnit = plan.RowsPerUnit(*t)
	}
	sqls, err := s.deserializeAll(ctx, stmts)
	if err != nil {
		return nil, err
	}
	plan.SQL = sqls[0]
	if len(sqls) > 1 {
		plan.FastSQL = sqls[1]
	}
	// What runs is what is checked: both SQL texts, as DuckDB binds them. The hidden columns
	// only count units, which the rules allow.
	if err := s.check(ctx, sc, plan.Tables, []string{plan.SQL, plan.FastSQL}, nil); err != nil {
		return nil, err
	}
	return plan, nil
}

// deserialize turns a checked statement tree back into SQL with DuckDB's own serializer.
func (s *vsession) deserialize(ctx context.Context, stmt map[string]any) (string, error) {
	tree, err := json.Marshal(stmt)
	if err != nil {
		return "", err
	}
	doc := append(append([]byte(`{"error":false,"statements":[`), tree...), "]}"...)
	var out string
	if err := s.conn.QueryRowContext(ctx, "SELECT json_deserialize_sql(?::JSON)", string(doc)).Scan(&out); err != nil {
		return "", fmt.Errorf("rewrite: %w", err)
	}
	return out, nil
}

// deserializeAll is deserialize of several statement trees in one call.
func (s *vsession) deserializeAll(ctx context.Context, stmts []map[string]any) ([]string, error) {
	cols := make([]string, len(stmts))
	args := make([]any, len(stmts))
	for i, stmt := range stmts {
		tree, err := json.Marshal(stmt)
		if err != nil {
			return nil, err
		}
		cols[i] = "json_deserialize_sql(?::JSON)"
		args[i] = string(append(append([]byte(`{"error":false,"statements":[`), tree...), "]}"...))
	}
	out := make([]string, len(stmts))
	dest := make([]any, len(stmts))
	for i := range out {
		dest[i] = &out[i]
	}
	if err := s.conn.QueryRowContext(ctx, "SELECT "+strings.Join(cols, ", "), args...).Scan(dest...); err != nil {
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	return out, nil
}

// expression parses one select-list item written by Veil itself. Items repeat from query
// to query (they name datasets' columns), so their trees are kept; the trees are never
// modified, only serialized.
func (s *vsession) expression(ctx context.Context, item string) (any, error) {
	key := s.tenant + "\x00" + item // items name the vendor's aliases
	if e, ok := s.v.items.Load(key); ok {
		return e, nil
	}
	p, err := s.parse(ctx, "SELECT "+item)
	if err != nil {
		return nil, err
	}
	if p.Error || len(p.Statements) != 1 {
		return nil, fmt.Errorf("rewrite: cannot parse %q: %s", item, p.ErrorMsg)
	}
	node := p.Statements[0]["node"].(map[string]any)
	e := node["select_list"].([]any)[0]
	if s.v.itemCount.Add(1) <= maxCachedItems {
		s.v.items.Store(key, e)
	}
	return e, nil
}

// maxCachedItems bounds the trees of Veil's own items a validator keeps.
const maxCachedItems = 4096

// typeName is what a catalog type may look like in the stand-ins' SQL.
var typeName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*( [A-Za-z][A-Za-z0-9_]*)*(\([0-9]{1,2}(, ?[0-9]{1,2})?\))?$`)

// standIns is the WITH clause that defines an empty stand-in of each table: its granted
// columns with the catalog's types, materialized so that the plan shows each table as one
// CTE whose name and columns are known.
func standIns(sc *Scope, tables []string) (string, error) {
	var ctes []string
	for _, name := range tables {
		t, _ := sc.table(name)
		var cols []string
		for _, c := range t.Columns {
			if c.Type == "" {
				return "", fmt.Errorf("dataset %s: column %s has no type in the catalog", t.Name, c.Name)
			}
			if !typeName.MatchString(c.Type) {
				return "", fmt.Errorf("dataset %s: column %s has type %q, which SQL jobs cannot use", t.Name, c.Name, c.Type)
			}
			cols = append(cols, fmt.Sprintf("CAST(NULL AS %s) AS %s", c.Type, quoteIdent(c.Name)))
		}
		ctes = append(ctes, fmt.Sprintf("%s AS MATERIALIZED (SELECT %s LIMIT 0)", quoteIdent(t.Name), strings.Join(cols, ", ")))
	}
	return "WITH " + strings.Join(ctes, ", ") + " ", nil
}

// check has DuckDB's binder plan each statement over empty stand-ins of the tables. Nothing
// is optimized or run: the plan is only serialized (json_serialize_plan), so binding errors
// (an ungrouped column, a type mismatch) are reported now and carry no data. Statements in
// vendor get every rule of the bound-plan check; statements in rewrites (Veil's own SQL
// around the vendor's, checked with vendor) only the rule that they read nothing but the
// stand-ins.
func (s *vsession) check(ctx context.Context, sc *Scope, tables []string, vendor, rewrites []string) error {
	with, err := standIns(sc, tables)
	if err != nil {
		return err
	}
	var stmts []string
	nv := 0
	for i, q := range append(slices.Clone(vendor), rewrites...) {
		if q != "" {
			stmts = append(stmts, with+q)
			if i < len(vendor) {
				nv++
			}
		}
	}
	var out string
	if err := s.conn.QueryRowContext(ctx, "SELECT json_serialize_plan(?::VARCHAR, skip_null := true, skip_empty := true)::VARCHAR",
		strings.Join(stmts, ";\n")).Scan(&out); err != nil {
		return fmt.Errorf("validate: plan: %w", err)
	}
	var doc struct {
		Error   bool             `json:"error"`
		Message string           `json:"error_message"`
		Plans   []map[string]any `json:"plans"`
	}
	d := json.NewDecoder(strings.NewReader(out))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil {
		return refuse("SQL", "the query holds a value Veil cannot read (a number too large?); write numbers that fit a DOUBLE")
	}
	if doc.Error {
		return refuse("SQL", "%s", binderMessage(fmt.Errorf("%s", doc.Message)))
	}
	if len(doc.Plans) != len(stmts) {
		return fmt.Errorf("validate: %d plans for %d statements", len(doc.Plans), len(stmts))
	}
	for i, pl := range doc.Plans {
		pc := &planCheck{sc: sc, ctes: map[string]*Table{}}
		root, err := pc.standIns(pl, tables)
		if err != nil {
			return err
		}
		if i < nv {
			err = pc.plan(root)
		} else {
			err = pc.reads(root)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func binderMessage(err error) string {
	msg := firstLine(err.Error())
	for _, p := range []string{"Binder Error: ", "Conversion Error: ", "Parser Error: ", "Catalog Error: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// walker walks one SELECT node with the allow-list. Names are matched as DuckDB matches
// them, ignoring ASCII case; DuckDB's binder has the last word (bound.go).
type walker struct {
	sc      *Scope
	tables  map[string]*Table // alias (or name), lower case -> table
	order   []string          // aliases in FROM order
	aliases map[string]bool   // select-list aliases, lower case
	hasAgg  bool
	columns int
	counts  []int
	names   []string // the output's column names (outputName), "" where the engine names it
	refs    int      // column references and aggregates seen: an expression without any is a constant
	query   string   // the query's text, for hints on its spelling
}

func newWalker(sc *Scope) *walker {
	return &walker{sc: sc, tables: map[string]*Table{}, aliases: map[string]bool{}}
}

func (w *walker) tableNames() []string {
	var names []string
	for _, a := range w.order {
		if n := w.tables[a].Name; !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// lowerASCII folds case as DuckDB folds identifiers.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func list(m map[string]any, k string) []any { l, _ := m[k].([]any); return l }

func obj(m map[string]any, k string) map[string]any { o, _ := m[k].(map[string]any); return o }

func truthy(m map[string]any, k string) bool { b, _ := m[k].(bool); return b }

func (w *walker) selectNode(node map[string]any) error {
	switch str(node, "type") {
	case "SELECT_NODE":
	case "SET_OPERATION_NODE":
		return refuse(strings.ToUpper(str(node, "setop_type")), "set operations (UNION, INTERSECT, EXCEPT) are not allowed")
	default:
		return refuse("statement", "only a plain SELECT is allowed (found %s)", str(node, "type"))
	}
	if m := obj(node, "cte_map"); len(list(m, "map")) > 0 {
		return refuse("WITH", "common table expressions are not allowed; query the granted datasets directly")
	}
	if node["sample"] != nil {
		return refuse("USING SAMPLE", "sampling is not allowed")
	}
	if node["qualify"] != nil {
		return refuse("QUALIFY", "QUALIFY is not allowed")
	}
	if h := str(node, "aggregate_handling"); h != "STANDARD_HANDLING" && h != "FORCE_AGGREGATES" {
		return refuse("GROUP BY", "this form of grouping is not allowed")
	}
	from := obj(node, "from_table")
	if err := w.from(from); err != nil {
		return err
	}
	if len(w.order) == 0 {
		return refuse("FROM", "the query must read a granted dataset")
	}

	sel := list(node, "select_list")
	w.columns = len(sel)
	for _, it := range sel {
		if a := str(it.(map[string]any), "alias"); a != "" {
			if strings.HasPrefix(lowerASCII(a), "__veil") {
				return refuse("SELECT", "column names starting with __veil are reserved")
			}
			w.aliases[lowerASCII(a)] = true
		}
	}
	for i, it := range sel {
		e := it.(map[string]any)
		if err := w.expr(e, "SELECT", exprCtx{}); err != nil {
			return err
		}
		w.names = append(w.names, w.outputName(e))
		if str(e, "class") == "FUNCTION" && (str(e, "function_name") == "count" || str(e, "function_name") == "count_star") {
			w.counts = append(w.counts, i)
		}
	}
	if err := w.joinCond(from); err != nil {
		return err
	}
	if wh, ok := node["where_clause"].(map[string]any); ok {
		if err := w.expr(wh, "WHERE", exprCtx{noAgg: true}); err != nil {
			return err
		}
	}
	groups := list(node, "group_expressions")
	for _, g := range groups {
		if err := w.expr(g.(map[string]any), "GROUP BY", exprCtx{noAgg: true}); err != nil {
			return err
		}
	}
	if sets := list(node, "group_sets"); len(sets) > 1 || (len(sets) == 1 && len(sets[0].([]any)) != len(groups)) {
		return refuse("GROUP BY", "ROLLUP, CUBE and GROUPING SETS are not allowed")
	}
	if hv, ok := node["having"].(map[string]any); ok {
		if err := w.expr(hv, "HAVING", exprCtx{}); err != nil {
			return err
		}
	}
	for _, m := range list(node, "modifiers") {
		mod := m.(map[string]any)
		switch str(mod, "type") {
		case "ORDER_MODIFIER":
			for _, o := range list(mod, "orders") {
				if err := w.expr(obj(o.(map[string]any), "expression"), "ORDER BY", exprCtx{}); err != nil {
					return err
				}
			}
		case "LIMIT_MODIFIER":
			for _, k := range []string{"limit", "offset"} {
				if e, ok := mod[k].(map[string]any); ok && str(e, "class") != "CONSTANT" {
					return refuse("LIMIT", "LIMIT and OFFSET take constants only")
				}
			}
		case "DISTINCT_MODIFIER":
			return refuse("SELECT DISTINCT", "DISTINCT is not allowed; use GROUP BY")
		default:
			return refuse(str(mod, "type"), "this modifier is not allowed")
		}
	}
	if !w.hasAgg && len(groups) == 0 && str(node, "aggregate_handling") != "FORCE_AGGREGATES" {
		return refuse("SELECT", "the query must aggregate: GROUP BY the keys you need and use COUNT, SUM, AVG, MIN or MAX; rows are never released")
	}
	return nil
}

func (w *walker) from(t map[string]any) error {
	switch str(t, "type") {
	case "BASE_TABLE":
		name := str(t, "table_name")
		if str(t, "catalog_name") != "" || str(t, "schema_name") != "" {
			return refuse("FROM", "qualified names (catalog.schema.table) are not allowed; use the dataset name")
		}
		if strings.ContainsAny(name, "./:'\\") {
			return refuse("FROM", "%q is not a dataset: files and URLs cannot be read; use a granted dataset's name", name)
		}
		tab, ok := w.sc.table(name)
		if !ok {
			return refuse("FROM", "dataset %q is not granted to this grant%s; granted: %s", name, suggest(name, w.datasetNames()), w.granted())
		}
		if t["at_clause"] != nil {
			return refuse("FROM", "AT (time travel) is not allowed")
		}
		if len(list(t, "column_name_alias")) > 0 {
			return refuse("FROM", "renaming a dataset's columns (%s(a, b, ...)) is not allowed", name)
		}
		if t["sample"] != nil {
			return refuse("TABLESAMPLE", "sampling is not allowed")
		}
		alias := lowerASCII(str(t, "alias"))
		if alias == "" {
			alias = lowerASCII(name)
		}
		if _, dup := w.tables[alias]; dup {
			return refuse("FROM", "%s appears twice; give each occurrence its own alias", alias)
		}
		w.tables[alias] = tab
		w.order = append(w.order, alias)
		return nil
	case "JOIN":
		switch str(t, "join_type") {
		case "INNER", "LEFT", "RIGHT", "OUTER":
		default:
			return refuse("JOIN", "%s joins are not allowed", str(t, "join_type"))
		}
		if rt := str(t, "ref_type"); rt != "REGULAR" {
			return refuse("JOIN", "%s joins are not allowed; join with ON or USING", rt)
		}
		if err := w.from(obj(t, "left")); err != nil {
			return err
		}
		return w.from(obj(t, "right"))
	case "TABLE_FUNCTION":
		fn := obj(t, "function")
		return refuse("FROM", "table function %s is not allowed; query the granted datasets by name", str(fn, "function_name"))
	case "SUBQUERY":
		return refuse("FROM", "subqueries are not allowed; aggregate directly over the granted datasets")
	case "EMPTY", "":
		return refuse("FROM", "the query must read a granted dataset")
	default:
		return refuse("FROM", "%s is not allowed here", strings.ToLower(str(t, "type")))
	}
}

// joinCond checks the ON and USING parts of joins, after the whole FROM is known.
func (w *walker) joinCond(t map[string]any) error {
	if str(t, "type") != "JOIN" {
		return nil
	}
	if err := w.joinCond(obj(t, "left")); err != nil {
		return err
	}
	if err := w.joinCond(obj(t, "right")); err != nil {
		return err
	}
	for _, u := range list(t, "using_columns") {
		name, _ := u.(string)
		cols := w.resolve([]string{name})
		if len(cols) == 0 {
			return refuse("JOIN ... USING", "column %s is not granted in the joined datasets", name)
		}
		for _, c := range cols {
			if c.Identifier {
				return refuse("JOIN ... USING", "%s is a direct identifier and cannot be used", name)
			}
		}
	}
	if c, ok := t["condition"].(map[string]any); ok {
		if !w.equiJoin(c) {
			return refuse("JOIN ... ON", "a join must compare a column of each side for equality (ON a.x = b.y); joining every row with every row is not allowed")
		}
		return w.on(c)
	}
	if len(list(t, "using_columns")) == 0 {
		return refuse("JOIN", "a join needs ON or USING")
	}
	return nil
}

func (w *walker) on(e map[string]any) error {
	if str(e, "type") == "CONJUNCTION_AND" {
		for _, c := range list(e, "children") {
			if err := w.on(c.(map[string]any)); err != nil {
				return err
			}
		}
		return nil
	}
	// Equality of two privacy units is how datasets about the same persons are joined.
	if str(e, "type") == "COMPARE_EQUAL" {
		l, r := obj(e, "left"), obj(e, "right")
		if str(l, "class") == "COLUMN_REF" && str(r, "class") == "COLUMN_REF" {
			lc, rc := w.resolve(names(l)), w.resolve(names(r))
			if len(lc) == 1 && len(rc) == 1 && lc[0].PrivacyUnit && rc[0].PrivacyUnit {
				return nil
			}
		}
	}
	return w.expr(e, "JOIN ... ON", exprCtx{noAgg: true})
}

// equiJoin reports whether a join condition holds an equality of columns of two different
// tables among its conjuncts: without one, the join pairs every row with every row.
func (w *walker) equiJoin(e map[string]any) bool {
	if str(e, "type") == "CONJUNCTION_AND" {
		for _, c := range list(e, "children") {
			if m, ok := c.(map[string]any); ok && w.equiJoin(m) {
				return true
			}
		}
		return false
	}
	if str(e, "type") != "COMPARE_EQUAL" {
		return false
	}
	l, r := w.owners(names(obj(e, "left"))), w.owners(names(obj(e, "right")))
	return len(l) == 1 && len(r) == 1 && l[0] != r[0]
}

// owners lists the aliases of the tables a column reference can belong to.
func (w *walker) owners(parts []string) []string {
	var out []string
	switch len(parts) {
	case 1:
		for _, a := range w.order {
			if _, ok := w.tables[a].column(parts[0]); ok {
				out = append(out, a)
			}
		}
	case 2:
		if t, ok := w.tables[lowerASCII(parts[0])]; ok {
			if _, ok := t.column(parts[1]); ok {
				out = append(out, lowerASCII(parts[0]))
			}
		}
	}
	return out
}

func names(e map[string]any) []string {
	var n []string
	for _, x := range list(e, "column_names") {
		s, _ := x.(string)
		n = append(n, s)
	}
	return n
}

// resolve finds the granted columns a reference can mean.
func (w *walker) resolve(parts []string) []Column {
	switch len(parts) {
	case 1:
		var found []Column
		for _, a := range w.order {
			if c, ok := w.tables[a].column(parts[0]); ok {
				found = append(found, c)
			}
		}
		return found
	case 2:
		if t, ok := w.tables[lowerASCII(parts[0])]; ok {
			if c, ok := t.column(parts[1]); ok {
				return []Column{c}
			}
		}
	}
	return nil
}

func (w *walker) granted() string {
	var n []string
	for _, t := range w.sc.Tables {
		n = append(n, t.Name)
	}
	if len(n) == 0 {
		return "none"
	}
	return strings.Join(n, ", ")
}

func (w *walker) grantedColumns() string {
	var parts []string
	for _, a := range w.order {
		t := w.tables[a]
		var cs []string
		for _, c := range t.Columns {
			if !c.PrivacyUnit && !c.Identifier {
				cs = append(cs, c.Name)
			}
		}
		parts = append(parts, t.Name+": "+strings.Join(cs, ", "))
	}
	return strings.Join(parts, "; ")
}

type exprCtx struct {
	noAgg    bool // aggregates are not allowed here (WHERE, GROUP BY, ON)
	inAgg    bool // inside an aggregate's arguments
	countArg bool // the direct argument of COUNT: privacy units may be counted
}

var exprNames = map[string]string{
	"STAR": "SELECT * (name the granted columns you need)", "SUBQUERY": "subqueries",
	"WINDOW": "window functions", "PARAMETER": "query parameters", "LAMBDA": "lambda functions",
	"COLLATE": "COLLATE", "POSITIONAL_REFERENCE": "positional references (#1)",
	"DEFAULT": "DEFAULT", "BOUND_REF": "bound references",
}

func (w *walker) expr(e map[string]any, clause string, cx exprCtx) error {
	if e == nil {
		return nil
	}
	class := str(e, "class")
	if class == "CONSTANT" || class == "COLUMN_REF" {
		return w.expr1(e, clause, cx)
	}
	// An expression that reads no column is folded by DuckDB while it binds the query, in
	// the daemon, outside any sandbox: only literals may be constant.
	before := w.refs
	if err := w.expr1(e, clause, cx); err != nil {
		return err
	}
	if w.refs == before && !literal(e) {
		what := strings.ToLower(class)
		if f := str(e, "function_name"); f != "" {
			what = f
		}
		return refuse(clause, "constant expressions (%s of literals) are not allowed: write the value itself", what)
	}
	return nil
}

// literal reports whether e is a literal: a constant, a cast of one (DATE '2020-01-01'), or
// a negated number.
func literal(e map[string]any) bool {
	switch str(e, "class") {
	case "CONSTANT":
		return true
	case "CAST":
		return str(obj(e, "child"), "class") == "CONSTANT"
	case "FUNCTION":
		c := list(e, "children")
		return str(e, "function_name") == "-" && len(c) == 1 && str(c[0].(map[string]any), "class") == "CONSTANT"
	}
	return false
}

func (w *walker) expr1(e map[string]any, clause string, cx exprCtx) error {
	switch class := str(e, "class"); class {
	case "CONSTANT":
		return nil
	case "COLUMN_REF":
		w.refs++
		parts := names(e)
		cols := w.resolve(parts)
		ref := strings.Join(parts, ".")
		if len(cols) == 0 {
			if len(parts) == 1 {
				if _, ok := w.tables[lowerASCII(parts[0])]; ok {
					return refuse(clause, "%s names a dataset, not a column: name the granted columns you need", ref)
				}
				if w.aliases[lowerASCII(parts[0])] && clause != "SELECT" {
					return nil // a select-list alias, checked where it is defined
				}
			}
			hint := suggest(parts[len(parts)-1], w.columnNames())
			if len(parts) == 1 {
				hint += w.quotedHint(ref)
			}
			return refuse(clause, "column %s is not granted to this grant (or does not exist)%s; granted columns: %s", ref, hint, w.grantedColumns())
		}
		for _, c := range cols {
			if (c.PrivacyUnit || c.Identifier) && !cx.countArg {
				what := "a direct identifier"
				if c.PrivacyUnit {
					what = "the privacy unit"
				}
				return refuse(clause, "%s is %s: it can only be counted (COUNT(DISTINCT %s)), never selected, filtered, grouped or ordered on", ref, what, ref)
			}
		}
		return nil
	case "FUNCTION":
		name := strings.ToLower(str(e, "function_name"))
		if str(e, "catalog") != "" || (str(e, "schema") != "" && str(e, "schema") != "main") {
			return refuse(clause, "qualified function names are not allowed")
		}
		if truthy(e, "export_state") {
			return refuse(clause, "EXPORT_STATE is not allowed")
		}
		if ob := obj(e, "order_bys"); len(list(ob, "orders")) > 0 {
			return refuse(clause, "ordered aggregates are not allowed")
		}
		children := list(e, "children")
		if _, ok := aggregates[name]; ok {
			w.refs++ // an aggregate depends on the rows, even COUNT(*)
			if cx.noAgg {
				return refuse(clause, "aggregate %s is not allowed in %s", name, clause)
			}
			if cx.inAgg {
				return refuse(clause, "aggregates cannot be nested (%s inside another aggregate)", name)
			}
			w.hasAgg = true
			inner := exprCtx{inAgg: true, noAgg: true}
			if f, ok := e["filter"].(map[string]any); ok {
				if err := w.expr(f, clause+" (FILTER)", inner); err != nil {
					return err
				}
			}
			for _, c := range children {
				arg := inner
				arg.countArg = name == "count" && len(children) == 1 && str(c.(map[string]any), "class") == "COLUMN_REF"
				if err := w.expr(c.(map[string]any), clause, arg); err != nil {
					return err
				}
			}
			return nil
		}
		if _, ok := scalars[name]; !ok {
			if why, ok := forbiddenWhy[name]; ok {
				return refuse(clause, "function %s is not allowed: %s", name, why)
			}
			return refuse(clause, "function %s is not allowed", name)
		}
		if truthy(e, "distinct") || e["filter"] != nil {
			return refuse(clause, "DISTINCT and FILTER apply to aggregates only")
		}
		return w.children(children, clause, cx)
	case "OPERATOR":
		switch str(e, "type") {
		case "OPERATOR_NOT", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL", "OPERATOR_COALESCE", "OPERATOR_NULLIF", "OPERATOR_TRY":
			return w.children(list(e, "children"), clause, cx)
		case "COMPARE_IN", "COMPARE_NOT_IN":
			ch := list(e, "children")
			for _, c := range ch[min(1, len(ch)):] {
				if err := w.compare(asObj(ch[0]), asObj(c), clause); err != nil {
					return err
				}
			}
			return w.children(ch, clause, cx)
		}
		return refuse(clause, "operator %s is not allowed", strings.ToLower(strings.TrimPrefix(str(e, "type"), "OPERATOR_")))
	case "COMPARISON":
		if err := w.compare(obj(e, "left"), obj(e, "right"), clause); err != nil {
			return err
		}
		if err := w.expr(obj(e, "left"), clause, cx); err != nil {
			return err
		}
		return w.expr(obj(e, "right"), clause, cx)
	case "CONJUNCTION":
		return w.children(list(e, "children"), clause, cx)
	case "CASE":
		for _, c := range list(e, "case_checks") {
			cc := c.(map[string]any)
			if err := w.expr(obj(cc, "when_expr"), clause, cx); err != nil {
				return err
			}
			if err := w.expr(obj(cc, "then_expr"), clause, cx); err != nil {
				return err
			}
		}
		return w.expr(obj(e, "else_expr"), clause, cx)
	case "CAST":
		ct := obj(e, "cast_type")
		if id := str(ct, "id"); !castTypes[id] {
			return refuse(clause, "CAST to %s is not allowed", strings.ToLower(id))
		}
		return w.expr(obj(e, "child"), clause, cx)
	case "BETWEEN":
		for _, k := range []string{"lower", "upper"} {
			if err := w.compare(obj(e, "input"), obj(e, k), clause); err != nil {
				return err
			}
		}
		for _, k := range []string{"input", "lower", "upper"} {
			if err := w.expr(obj(e, k), clause, cx); err != nil {
				return err
			}
		}
		return nil
	default:
		what := exprNames[class]
		if what == "" {
			what = strings.ToLower(class)
		}
		return refuse(clause, "%s: not allowed", what)
	}
}

func (w *walker) children(cs []any, clause string, cx exprCtx) error {
	for _, c := range cs {
		m, ok := c.(map[string]any)
		if !ok {
			return refuse(clause, "unexpected expression")
		}
		if err := w.expr(m, clause, cx); err != nil {
			return err
		}
	}
	return nil
}
