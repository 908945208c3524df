package engine

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/duckdb/duckdb-go/v2"
)

// ErrResultTooLarge is returned when a result exceeds the job's size limit.
var ErrResultTooLarge = errors.New("result exceeds the size limit")

// ahead are the settings of every job's DuckDB that do not depend on the job: the runner
// applies them when it opens the database, before its job is known (in a sandbox prepared
// ahead, long before), and lockdown the rest once it is. No extension is installed or
// loaded behind the job's back; the Parquet files' metadata is read once per job, not once
// per query (the job's files do not change while it runs, and the cache is the job's
// database's, gone with it).
var ahead = []string{
	"SET autoinstall_known_extensions=false",
	"SET autoload_known_extensions=false",
	"SET preserve_insertion_order=false",
	"SET parquet_metadata_cache=true",
	"SET temp_directory=''", // a job with a spill area sets its own
}

// DPPerfectHashBits bounds the aggregations a dp job's DuckDB runs into an array indexed by
// the group (a perfect hash table, as large as the groups' range of values, one per thread
// and one for the merge, not spilled, not counted against DuckDB's memory limit): at most
// 2^18 entries of the per-unit states, fewer where those of the job's query do not fit an
// eighth of its memory limit (perfectHash).
const DPPerfectHashBits = 18

// Preset are settings a runner applies ahead besides ahead's: the ones its daemon gives
// every SQL job (Job.Threads, Job.MemoryLimitMB, Job.TempDir and Job.TempMaxMB; zero:
// none). A job with other values sets its own, so that a job's database is the same
// whatever was preset.
type Preset struct {
	Threads       int
	MemoryLimitMB int
	// TempDir, when set, is the spill area the runner's jobs get (a sandbox's, mounted
	// before its job is known): the runner makes its private directory there ahead and
	// has DuckDB write its temporary files to it, at most TempMaxMB of them.
	TempDir   string
	TempMaxMB int
}

// lockdown returns the session settings of a job's DuckDB that depend on the job, applied
// after ahead's and p's (what p already set is not set again), in the order they must be
// applied: paths are fixed before external access is switched off, and the configuration is
// locked last, so that nothing after it (the vendor's query included) can loosen it.
//
// temp is the job's private temporary directory (below j.TempDir), or "" for none; what p
// set (a directory made ahead, p.TempDir's) is not set again.
func lockdown(j *Job, p Preset, temp string) []string {
	var files []string
	for _, t := range j.Tables {
		files = append(files, t.Files...)
	}
	threads := max(j.Threads, 1)
	// DuckDB writes its own temporary files only to the job's spill area, and only as much
	// as the area allows; the job's SQL can neither read nor write there (the directory is
	// in no allow list), nor change either setting (the configuration is locked below).
	var s []string
	switch {
	case p.presetTemp(j):
	case temp != "":
		s = []string{"SET temp_directory=" + quoteString(temp), fmt.Sprintf("SET max_temp_directory_size='%dMB'", max(j.TempMaxMB, 1))}
	case p.TempDir != "":
		// Preset, but this job has no spill area: none, as without the preset.
		s = []string{"SET temp_directory=''", "RESET max_temp_directory_size"}
	}
	s = append(s,
		"SET allowed_paths="+quoteList(files),
		"SET enable_external_access=false",
	)
	if threads != p.Threads {
		s = append(s, fmt.Sprintf("SET threads=%d", threads))
	}
	switch {
	case j.MemoryLimitMB == p.MemoryLimitMB:
	case j.MemoryLimitMB > 0:
		s = append(s, fmt.Sprintf("SET memory_limit='%dMB'", j.MemoryLimitMB))
	default:
		s = append(s, "RESET memory_limit")
	}
	if j.Secret != 0 {
		// A dp job (the only kind with a secret): its bounded plan aggregates per privacy
		// unit, twice, over every row. Where the units are integers of a range of at most
		// 2^bits (DuckDB knows it from the files' statistics), DuckDB then aggregates into
		// an array indexed by the unit instead of a hash table, in half the time; its
		// default allows only 2^12.
		bits := perfectHash(threads, j.MemoryLimitMB, j.DPStateBytes)
		s = append(s, fmt.Sprintf("SET VARIABLE veil_secret = %d::BIGINT", j.Secret), fmt.Sprintf("SET perfect_ht_threshold=%d", bits))
	}
	return append(s, "SET lock_configuration=true")
}

// perfectHash returns the perfect_ht_threshold of a dp job's DuckDB. DuckDB allocates an
// aggregation's array (one entry of stateBytes per possible value of the units' range, per
// thread and once more for the merge) outside its memory_limit: the widest dp query on two
// rows of units 200,000 apart took 167 MB beyond a 64 MB limit. The arrays get at most an
// eighth of memMB on top of it, within what the daemon leaves of the job's memory beyond
// DuckDB's (platform.Config.DuckDBMemoryMB: at least 256 MB or a quarter); the bits are
// DPPerfectHashBits where that allows (a count and a sum on the daemon's defaults), fewer
// for wide queries, never below DuckDB's default. memMB 0 (no limit): DPPerfectHashBits.
func perfectHash(threads, memMB int, stateBytes int64) int {
	if memMB <= 0 {
		return DPPerfectHashBits
	}
	if stateBytes <= 0 { // unknown: as wide as a dp query may be (quantiles, four keys)
		stateBytes = (&DPPlan{Keys: make([]DPKey, 4), Aggs: slices.Repeat([]DPAgg{{Kind: AggQuantile}}, MaxDPAggregates), MaxGroups: 2}).StateBytes()
	}
	perEntry := int64(threads+1) * stateBytes
	budget := int64(memMB) << 20 / 8
	bits := DPPerfectHashBits
	for bits > defaultPerfectHashBits && perEntry<<bits > budget {
		bits--
	}
	return bits
}

// defaultPerfectHashBits is DuckDB's perfect_ht_threshold.
const defaultPerfectHashBits = 12

// presetTemp says whether the preset temporary directory is j's: the same spill area and
// limit.
func (p Preset) presetTemp(j *Job) bool {
	return p.TempDir != "" && j.TempDir == p.TempDir && j.TempMaxMB == p.TempMaxMB
}

// RunnerMain is the runner: it opens DuckDB, then reads a Job (JSON) from stdin and runs
// it in that fresh, locked-down in-memory database, writing the exact result to result as
// one Arrow IPC stream. It runs inside the sandbox; result is the pipe to the daemon and
// the only place the result goes. DuckDB is opened before the job is read because in a
// sandbox prepared ahead the job arrives long after the process started; it is not closed
// after the job, because the process ends with it.
func RunnerMain(ctx context.Context, stdin io.Reader, result io.Writer) error {
	r, err := OpenRunner()
	if err != nil {
		return err
	}
	j, err := ReadJob(stdin)
	if err != nil {
		return err
	}
	return r.Run(ctx, j, result)
}

// Runner is the DuckDB of one runner process, opened before its job is known, for exactly
// one job. A runner in a sandbox simply exits after its job; in-process users Close it.
type Runner struct {
	c      *duckdb.Connector
	db     *sql.DB
	conn   *sql.Conn // the job's connection, opened with the database, ahead's settings applied
	preset Preset
	// temp is the private temporary directory made ahead below preset.TempDir, and set as
	// DuckDB's; removed with the job's session or by Close.
	temp string
	used bool
}

// OpenRunner opens a fresh in-memory DuckDB for one job, with its connection and the
// settings that do not depend on the job (ahead).
func OpenRunner() (*Runner, error) { return OpenRunnerWith(Preset{}) }

// OpenRunnerWith is OpenRunner that also applies p ahead.
func OpenRunnerWith(p Preset) (*Runner, error) {
	c, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(1)
	r := &Runner{c: c, db: db}
	ctx := context.Background()
	if r.conn, err = db.Conn(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("open duckdb: %w", err)
	}
	stmts := ahead
	if p.Threads > 0 {
		stmts = append(slices.Clone(stmts), fmt.Sprintf("SET threads=%d", p.Threads))
		r.preset.Threads = p.Threads
	}
	if p.MemoryLimitMB > 0 {
		stmts = append(slices.Clone(stmts), fmt.Sprintf("SET memory_limit='%dMB'", p.MemoryLimitMB))
		r.preset.MemoryLimitMB = p.MemoryLimitMB
	}
	if p.TempDir != "" {
		// As session makes a job's: fresh, with a random name no query can know.
		if r.temp, err = os.MkdirTemp(p.TempDir, "duckdb-"); err != nil {
			r.Close()
			return nil, fmt.Errorf("temporary directory: %w", err)
		}
		stmts = append(slices.Clone(stmts), "SET temp_directory="+quoteString(r.temp), fmt.Sprintf("SET max_temp_directory_size='%dMB'", max(p.TempMaxMB, 1)))
		r.preset.TempDir, r.preset.TempMaxMB = p.TempDir, p.TempMaxMB
	}
	for _, s := range stmts {
		if _, err := r.conn.ExecContext(ctx, s); err != nil {
			r.Close()
			return nil, fmt.Errorf("prepare session: %s: %w", s, err)
		}
	}
	return r, nil
}

// Close closes the runner's database.
func (r *Runner) Close() error {
	var err error
	if r.conn != nil {
		err = r.conn.Close()
	}
	err = errors.Join(err, r.db.Close(), r.c.Close())
	if r.temp != "" {
		os.RemoveAll(r.temp)
	}
	return err
}

// ReadJob decodes a job from the runner's standard input.
func ReadJob(stdin io.Reader) (*Job, error) {
	var j Job
	d := json.NewDecoder(io.LimitReader(stdin, 16<<20))
	d.DisallowUnknownFields()
	if err := d.Decode(&j); err != nil {
		return nil, fmt.Errorf("read job: %w", err)
	}
	return &j, nil
}

// Run executes a job in a fresh database and streams its result to w. It is RunnerMain
// without the decoding, and the unsandboxed baseline of the benchmarks.
func Run(ctx context.Context, j *Job, w io.Writer) error {
	r, err := OpenRunner()
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Run(ctx, j, w)
}

// Run executes the runner's job and streams its result to w.
func (r *Runner) Run(ctx context.Context, j *Job, w io.Writer) error {
	if j.SQL == "" {
		return errors.New("job has no query")
	}
	return r.session(ctx, j, func(ar *duckdb.Arrow) error {
		if j.FastSQL != "" && j.K > 0 && j.MaxRowsPerUnit > 0 {
			recs, schema, undecided, err := fast(ctx, ar, j)
			if err != nil {
				return err
			}
			if recs == nil {
				// No rows, no cells: the exact plan and every check return none either.
				return empty(ctx, ar, j, schema, w)
			}
			// What registration measured of the keys' values decides more groups and cells.
			cells := j.cellUnits(recs)
			known := j.decided(recs, cells)
			if len(known) > 0 {
				undecided = j.undecidedRows(recs, known)
			}
			var pre *checked
			rows, fails, ok := j.dominanceVerdicts(recs, cells)
			if ok && len(known) > 0 {
				// The groups the keys' values suppress need no verdict.
				suppressed := func(r int) bool { u, ok := known[r]; return ok && u < int64(j.K) }
				rows, fails = slices.DeleteFunc(rows, suppressed), slices.DeleteFunc(fails, suppressed)
			}
			if ok && len(rows) == 0 && cells != nil {
				// Every verdict decided by the result: the cells that fail for certain.
				if pre = failingCells(recs, fails); pre != nil {
					defer release(pre.recs)
				}
			}
			if ok && len(rows) > 0 && j.DominanceUnits != "" {
				// One pass for the cells undecided by either: their units and verdicts.
				exact, dom, err := narrowDominance(ctx, ar, j, recs, rows, known, fails)
				if err != nil {
					release(recs)
					return err
				}
				if exact != nil {
					release(recs)
					recs, pre, undecided, known = exact, dom, 0, nil
					defer release(dom.recs)
				}
			}
			if undecided > 0 {
				// Count distinct units for the undecided groups only; nil: for every group.
				exact, err := narrow(ctx, ar, j, recs, known)
				release(recs)
				if err != nil {
					return err
				}
				recs = exact
			} else if len(known) > 0 {
				// Every group decided, some by the keys' values: units, as narrow gives.
				exact := withUnits(recs, recs[0].Schema().FieldIndices(RowsColumn)[0], int64(j.K), j.MaxRowsPerUnit, known)
				release(recs)
				recs = exact
			}
			if recs != nil {
				defer release(recs)
				if err := writeIPC(w, j.MaxResultBytes, recs[0].Schema(), recs); err != nil {
					return err
				}
				return runChecks(ctx, ar, j, recs, w, pre, cells)
			}
		}
		if j.DominanceCheck == 0 {
			if err := query(ctx, ar, j.SQL, j.MaxResultBytes, w); err != nil {
				return err
			}
			return runChecks(ctx, ar, j, nil, w, nil, nil)
		}
		// The result decides whether the exact dominance check must run: keep it.
		recs, schema, err := collect(ctx, ar, j.SQL, j.MaxResultBytes)
		if err != nil {
			return err
		}
		defer release(recs)
		if err := writeIPC(w, j.MaxResultBytes, schema, recs); err != nil {
			return err
		}
		return runChecks(ctx, ar, j, recs, w, nil, nil)
	})
}

// dominanceBound is the rows-per-person maximum the dominance bound may rely on: the
// measured one where every row of every table the job reads has a unit, and 0 (no bound:
// the exact check decides) otherwise. The exact check counts a cell's rows without a unit as
// one contributor, of any number of rows, which M rows a person does not bound.
func (j *Job) dominanceBound() int64 {
	if len(j.Tables) == 0 {
		return 0
	}
	for _, t := range j.Tables {
		if !t.UnitComplete {
			return 0
		}
	}
	return j.MaxRowsPerUnit
}

// dominanceVerdicts is dominanceVerdicts of the job's rules over the fast result: the rows
// undecided and, where cells say their persons have one row each, those failing for
// certain; every row undecided where the columns do not decide, false where the job has no
// dominance check.
func (j *Job) dominanceVerdicts(recs []arrow.RecordBatch, cells []cellUnits) ([]int, []int, bool) {
	if j.DominanceCheck < 1 || j.DominanceRules == nil {
		return nil, nil, false
	}
	if rows, fails, ok := dominanceVerdicts(recs, j.Dominance, j.dominanceBound(), j.dominanceCells(cells), *j.DominanceRules); ok {
		return rows, fails, true
	}
	rows, _ := j.dominanceUndecided(recs, nil)
	return rows, nil, true
}

// failingCells is the dominance check's result as the check itself would name the cells of
// rows (by global row of recs, a fast result): their keys, one row each, in a schema of the
// result's key columns (the gate matches them by position). nil where recs has no keys.
func failingCells(recs []arrow.RecordBatch, rows []int) *checked {
	c := resultCells(recs)
	if len(c.keys) == 0 {
		if len(rows) > 0 {
			return nil
		}
		return &checked{schema: arrow.NewSchema(nil, nil)}
	}
	fields := make([]arrow.Field, len(c.keys))
	for i, k := range c.keys {
		fields[i] = recs[0].Schema().Field(k)
	}
	schema := arrow.NewSchema(fields, nil)
	out := &checked{schema: schema}
	for _, row := range rows {
		at := c.where[row]
		rec := recs[at.rec]
		cols := make([]arrow.Array, len(c.keys))
		for i, k := range c.keys {
			cols[i] = array.NewSlice(rec.Column(k), int64(at.row), int64(at.row+1))
		}
		out.recs = append(out.recs, array.NewRecordBatch(schema, cols, 1))
		for _, col := range cols {
			col.Release()
		}
	}
	return out
}

// dominanceCells is cells where the dominance bound may rely on them: where every row has a
// unit (dominanceBound), else nil (the exact check counts the rows without a unit as one
// contributor, which the registration's per-unit figures do not describe).
func (j *Job) dominanceCells(cells []cellUnits) []cellUnits {
	if j.dominanceBound() < 1 {
		return nil
	}
	return cells
}

// cellUnits is what the job's KeyUnits say of each row of the fast result (by global row):
// for every hidden key with ValueUnits, a VARCHAR key whose value was measured, the
// tightest of their figures (a group holds rows of each of its keys' values). nil where the
// job has none.
func (j *Job) cellUnits(recs []arrow.RecordBatch) []cellUnits {
	if len(j.KeyUnits) == 0 || len(recs) == 0 {
		return nil
	}
	var out []cellUnits
	for _, rec := range recs {
		type keyCol struct {
			vals  map[string]ValueUnits
			value func(r int) (string, bool)
		}
		var keys []keyCol
		for i, vals := range j.KeyUnits {
			if vals == nil {
				continue
			}
			idx := rec.Schema().FieldIndices(fmt.Sprintf("%s_%d", KeysPrefix, i))
			if len(idx) != 1 {
				continue
			}
			switch c := rec.Column(idx[0]).(type) {
			case *array.String:
				keys = append(keys, keyCol{vals, func(r int) (string, bool) { return c.Value(r), c.IsValid(r) }})
			case *array.LargeString:
				keys = append(keys, keyCol{vals, func(r int) (string, bool) { return c.Value(r), c.IsValid(r) }})
			case *array.StringView:
				keys = append(keys, keyCol{vals, func(r int) (string, bool) { return c.Value(r), c.IsValid(r) }})
			}
		}
		for r := 0; r < int(rec.NumRows()); r++ {
			var cu cellUnits
			for _, k := range keys {
				v, valid := k.value(r)
				if !valid {
					continue // NULL: no figures
				}
				vu, ok := k.vals[v]
				if !ok || vu.Rows < vu.Units || vu.Units < 0 || vu.Max < 1 {
					continue
				}
				if !cu.ok {
					cu = cellUnits{ok: true, max: vu.Max, extra: vu.Extra(), units: vu.Units}
					continue
				}
				cu.max, cu.extra, cu.units = min(cu.max, vu.Max), min(cu.extra, vu.Extra()), min(cu.units, vu.Units)
			}
			out = append(out, cu)
		}
	}
	return out
}

// decided returns, by global row, the units of the fast result's groups of at least K rows
// that cells decide: a group of n rows with a unit, at most e of them beyond each unit's
// first and at most m' rows of one unit, has at least max(n-e, ceil(n/m')) units, passing
// for certain from K on; at most u, the units of its values, failing for certain below K.
// Each gets that bound, on the side that decides it: the gate compares it with K, and the
// report counts a released group under 2K as near K, which the vendor reads. So a group
// passes here only where that count is the exact plan's: where both bounds meet (the count
// is exact: an e of 0, or a group of all its value's rows) or at a bound of at least 2K
// (the exact count is not near K either). A bound between K and 2K
// would flag near K a group of more persons, and a vendor varying a WHERE would find where
// the flag turns: the value's e or its heaviest person's rows, which the catalog hides.
func (j *Job) decided(recs []arrow.RecordBatch, cells []cellUnits) map[int]int64 {
	if len(cells) == 0 || j.K < 1 || j.MaxRowsPerUnit < 1 {
		return nil
	}
	k, m := int64(j.K), j.MaxRowsPerUnit
	out := map[int]int64{}
	global := 0
	for _, rec := range recs {
		idx := rec.Schema().FieldIndices(RowsColumn)
		if len(idx) != 1 {
			return nil
		}
		n, ok := rec.Column(idx[0]).(*array.Int64)
		if !ok {
			return nil
		}
		for r := 0; r < n.Len(); r, global = r+1, global+1 {
			v := n.Value(r)
			if !n.IsValid(r) || v < k || global >= len(cells) || !cells[global].ok {
				continue
			}
			cu := cells[global]
			mm := min(m, cu.max)
			lo := max(v-cu.extra, (v+mm-1)/mm)
			switch hi := min(v, cu.units); {
			case lo >= 2*k || (lo >= k && lo == hi):
				out[global] = lo
			case hi < k:
				out[global] = hi
			}
		}
	}
	return out
}

// undecidedRows counts the fast result's groups between K and K·M rows that known leaves.
func (j *Job) undecidedRows(recs []arrow.RecordBatch, known map[int]int64) int {
	k, m := int64(j.K), j.MaxRowsPerUnit
	undecided, global := 0, 0
	for _, rec := range recs {
		n := rec.Column(rec.Schema().FieldIndices(RowsColumn)[0]).(*array.Int64)
		for r := 0; r < n.Len(); r, global = r+1, global+1 {
			if _, ok := known[global]; !ok && n.Value(r) >= k && n.Value(r) < nearRows(k, m) {
				undecided++
			}
		}
	}
	return undecided
}

// checked is a check's result decided before runChecks (narrowDominance).
type checked struct {
	recs   []arrow.RecordBatch
	schema *arrow.Schema
}

// dominanceUndecided is DominanceUndecided of the job's rules over a result, with what the
// keys' values say of its cells (cells: nil, nothing): every row where its columns do not
// decide (no bound), false where the job has no dominance check.
func (j *Job) dominanceUndecided(recs []arrow.RecordBatch, cells []cellUnits) ([]int, bool) {
	if j.DominanceCheck < 1 || j.DominanceRules == nil {
		return nil, false
	}
	if rows, ok := dominanceUndecided(recs, j.Dominance, j.dominanceBound(), j.dominanceCells(cells), *j.DominanceRules); ok {
		return rows, true
	}
	var rows []int
	for _, rec := range recs {
		for r := 0; r < int(rec.NumRows()); r++ {
			rows = append(rows, len(rows))
		}
	}
	return rows, true
}

// runChecks runs a threshold job's check queries after its query, each result a further
// IPC stream on w. The dominance check is skipped, its result an empty stream, where the
// query's result shows every cell passes (DominanceSure), and run for the undecided cells
// alone where it shows that of some (DominanceUndecided, dominanceRestricted).
func runChecks(ctx context.Context, ar *duckdb.Arrow, j *Job, result []arrow.RecordBatch, w io.Writer, pre *checked, cells []cellUnits) error {
	var dom []arrow.RecordBatch // the dominance check's result, decided here
	var domSchema *arrow.Schema
	decided := false
	if pre != nil {
		decided, dom, domSchema = true, pre.recs, pre.schema
	} else if j.DominanceCheck > 0 && j.DominanceRules != nil {
		if rows, ok := dominanceUndecided(result, j.Dominance, j.dominanceBound(), j.dominanceCells(cells), *j.DominanceRules); ok {
			if len(rows) == 0 {
				decided, domSchema = true, arrow.NewSchema(nil, nil)
			} else if got, schema, err := dominanceRestricted(ctx, ar, j, result, rows); err != nil {
				return fmt.Errorf("check %d: %w", j.DominanceCheck, err)
			} else if schema != nil {
				decided, dom, domSchema = true, got, schema
				defer release(dom)
			}
		}
	}
	for i, q := range j.Checks {
		if decided && i+1 == j.DominanceCheck {
			if err := writeIPC(w, j.MaxResultBytes, domSchema, dom); err != nil {
				return err
			}
			continue
		}
		if i < len(j.CheckFast) && j.CheckFast[i] != "" {
			ok, err := fastCheck(ctx, ar, j.CheckFast[i], j.MaxResultBytes, w)
			if err != nil {
				return fmt.Errorf("check %d: %w", i+1, err)
			}
			if ok {
				continue
			}
		}
		if err := query(ctx, ar, q, j.MaxResultBytes, w); err != nil {
			return fmt.Errorf("check %d: %w", i+1, err)
		}
	}
	return nil
}

// empty writes what the gate gets where the row-counting plan has no rows: its result,
// with no rows, as from any result the row counts decide (schema, the row-counting plan's),
// and no cells of each check, each stream with the schema the full run would write (the
// dominance check an empty schema, as the result decides it; a difference check with a
// row-counting variant that variant's columns without DifferenceUndecided). LIMIT 0 has
// DuckDB bind each check, not run it. A check could name cells of no row (rows only a prior
// selects), which the gate matches with none: its output is the full run's.
func empty(ctx context.Context, ar *duckdb.Arrow, j *Job, schema *arrow.Schema, w io.Writer) error {
	zero := func(q string) string { return "SELECT * FROM (" + q + ") AS __veil_q LIMIT 0" }
	if err := writeIPC(w, j.MaxResultBytes, schema, nil); err != nil {
		return err
	}
	for i, q := range j.Checks {
		var err error
		switch {
		case i+1 == j.DominanceCheck && j.DominanceRules != nil && DominanceSure(nil, j.Dominance, j.dominanceBound(), *j.DominanceRules):
			err = writeIPC(w, j.MaxResultBytes, arrow.NewSchema(nil, nil), nil)
		case i < len(j.CheckFast) && j.CheckFast[i] != "":
			var ok bool
			if ok, err = fastCheck(ctx, ar, zero(j.CheckFast[i]), j.MaxResultBytes, w); err == nil && !ok {
				err = errors.New("fast check: undecided without rows")
			}
		default:
			err = query(ctx, ar, zero(q), j.MaxResultBytes, w)
		}
		if err != nil {
			return fmt.Errorf("check %d: %w", i+1, err)
		}
	}
	return nil
}

// fastCheck runs a check's row-counting variant; where it decides every cell (no row has
// DifferenceUndecided true) it writes the result without that column and reports true.
func fastCheck(ctx context.Context, ar *duckdb.Arrow, q string, limit int64, w io.Writer) (bool, error) {
	recs, schema, err := collect(ctx, ar, q, limit)
	if err != nil {
		return false, err
	}
	defer release(recs)
	idx := schema.FieldIndices(DifferenceUndecided)
	if len(idx) != 1 || idx[0] != schema.NumFields()-1 {
		return false, errors.New("fast check: no undecided column")
	}
	u := idx[0]
	var out []arrow.RecordBatch
	defer func() { release(out) }()
	fields := schema.Fields()[:u]
	ns := arrow.NewSchema(fields, nil)
	for _, rec := range recs {
		b, ok := rec.Column(u).(*array.Boolean)
		if !ok {
			return false, errors.New("fast check: the undecided column is not BOOLEAN")
		}
		for r := 0; r < b.Len(); r++ {
			if b.IsNull(r) || b.Value(r) {
				return false, nil
			}
		}
		out = append(out, array.NewRecordBatch(ns, rec.Columns()[:u], rec.NumRows()))
	}
	return true, writeIPC(w, limit, ns, out)
}

// collect runs q and keeps its result, at most limit bytes of it.
func collect(ctx context.Context, ar *duckdb.Arrow, q string, limit int64) ([]arrow.RecordBatch, *arrow.Schema, error) {
	rr, err := ar.QueryContext(ctx, q)
	if err != nil {
		return nil, nil, fmt.Errorf("query: %w", err)
	}
	defer rr.Release()
	var recs []arrow.RecordBatch
	var size int64
	for rr.Next() {
		rec := rr.RecordBatch()
		rec.Retain()
		recs = append(recs, rec)
		for _, c := range rec.Columns() {
			size += int64(c.Data().SizeInBytes())
		}
		if limit > 0 && size > limit {
			release(recs)
			return nil, nil, ErrResultTooLarge
		}
	}
	if err := rr.Err(); err != nil {
		release(recs)
		return nil, nil, fmt.Errorf("query: %w", err)
	}
	return recs, rr.Schema(), nil
}

// query streams the result of q to w as one Arrow IPC stream of at most limit bytes.
func query(ctx context.Context, ar *duckdb.Arrow, q string, limit int64, w io.Writer) error {
	rr, err := ar.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	defer rr.Release()
	lw := &limitWriter{w: w, n: limit}
	iw := ipc.NewWriter(lw, ipc.WithSchema(rr.Schema()))
	for rr.Next() {
		if err := iw.Write(rr.RecordBatch()); err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil {
		return fmt.Errorf("query: %w", err)
	}
	return iw.Close()
}

// Stream runs queries one after the other in the job's locked-down session and hands every
// record batch of query i to fn(i, batch); the batch is released when fn returns. It is how
// a runner that is not plain SQL (he scoring) reads the data: the same views, the same
// limits, nothing written anywhere.
func Stream(ctx context.Context, j *Job, queries []string, fn func(i int, rec arrow.RecordBatch) error) error {
	r, err := OpenRunner()
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Stream(ctx, j, queries, fn)
}

// Stream is the package's Stream in the runner's database.
func (r *Runner) Stream(ctx context.Context, j *Job, queries []string, fn func(i int, rec arrow.RecordBatch) error) error {
	return r.session(ctx, j, func(ar *duckdb.Arrow) error {
		for i, q := range queries {
			rr, err := ar.QueryContext(ctx, q)
			if err != nil {
				return fmt.Errorf("query %d: %w", i+1, err)
			}
			for rr.Next() {
				if err := fn(i, rr.RecordBatch()); err != nil {
					rr.Release()
					return err
				}
			}
			err = rr.Err()
			rr.Release()
			if err != nil {
				return fmt.Errorf("query %d: %w", i+1, err)
			}
		}
		return nil
	})
}

// session applies the lockdown to the runner's fresh database, creates the job's views and
// calls fn with an Arrow interface to it. A runner has one session: its database is never
// given a second job.
func (r *Runner) session(ctx context.Context, j *Job, fn func(ar *duckdb.Arrow) error) error {
	if r.used {
		return errors.New("a runner runs one job")
	}
	r.used = true
	if len(j.Tables) == 0 {
		return errors.New("job has no tables")
	}
	if r.temp != "" {
		// Made and set ahead (OpenRunnerWith) as below, and unused where the job has
		// another (lockdown sets that one instead).
		defer os.RemoveAll(r.temp)
	}
	var temp string
	switch {
	case r.preset.presetTemp(j):
	case j.TempDir != "":
		// DuckDB allows its temporary directory to every query, so it gets a directory of
		// its own that no query can name: a fresh one with a random name.
		dir, err := os.MkdirTemp(j.TempDir, "duckdb-")
		if err != nil {
			return fmt.Errorf("temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
		temp = dir
	}
	conn := r.conn

	// Views first: each exposes only the granted columns of its dataset's files.
	var views []string
	for _, t := range j.Tables {
		cols := make([]string, len(t.Columns))
		for i, col := range t.Columns {
			cols[i] = quoteIdent(col.Name)
		}
		views = append(views, fmt.Sprintf("CREATE VIEW %s AS SELECT %s FROM read_parquet(%s)",
			quoteIdent(t.Name), strings.Join(cols, ", "), quoteList(t.Files)))
	}
	for _, s := range append(lockdown(j, r.preset, temp), views...) {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("prepare session: %s: %w", strings.SplitN(s, " AS ", 2)[0], err)
		}
	}
	return conn.Raw(func(dc any) error {
		ar, err := duckdb.NewArrowFromConn(dc.(driver.Conn))
		if err != nil {
			return err
		}
		return fn(ar)
	})
}

// fast runs the row-counting variant of the query and returns its result and schema with
// the number of rows it leaves undecided: K <= n < nearRows(K, M) (n < K fails for certain,
// n >= K*M passes for certain, and from nearRows on its bound is not near K either). It returns no result, only the schema, where the query returned no
// rows.
func fast(ctx context.Context, ar *duckdb.Arrow, j *Job) ([]arrow.RecordBatch, *arrow.Schema, int, error) {
	rr, err := ar.QueryContext(ctx, j.FastSQL)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("query: %w", err)
	}
	defer rr.Release()
	var recs []arrow.RecordBatch
	var size int64
	undecided := 0
	for rr.Next() {
		rec := rr.RecordBatch()
		rec.Retain()
		recs = append(recs, rec)
		for _, c := range rec.Columns() {
			size += int64(c.Data().SizeInBytes())
		}
		if j.MaxResultBytes > 0 && size > j.MaxResultBytes {
			release(recs)
			return nil, nil, 0, ErrResultTooLarge
		}
		// The row count comes before the hidden group keys, if any.
		idx := rec.Schema().FieldIndices(RowsColumn)
		if len(idx) != 1 {
			release(recs)
			return nil, nil, 0, errors.New("fast plan: no row count column")
		}
		n, ok := rec.Column(idx[0]).(*array.Int64)
		if !ok {
			release(recs)
			return nil, nil, 0, errors.New("fast plan: no row count column")
		}
		for r := 0; r < n.Len(); r++ {
			if v := n.Value(r); v >= int64(j.K) && v < nearRows(int64(j.K), j.MaxRowsPerUnit) {
				undecided++
			}
		}
	}
	if err := rr.Err(); err != nil {
		release(recs)
		return nil, nil, 0, fmt.Errorf("query: %w", err)
	}
	schema := rr.Schema()
	if len(recs) == 0 {
		if idx := schema.FieldIndices(RowsColumn); len(idx) != 1 || schema.Field(idx[0]).Type.ID() != arrow.INT64 {
			return nil, nil, 0, errors.New("fast plan: no row count column")
		}
		return nil, schema, 0, nil
	}
	return recs, schema, undecided, nil
}

func release(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

func writeIPC(w io.Writer, limit int64, schema *arrow.Schema, recs []arrow.RecordBatch) error {
	iw := ipc.NewWriter(&limitWriter{w: w, n: limit}, ipc.WithSchema(schema))
	for _, r := range recs {
		if err := iw.Write(r); err != nil {
			return err
		}
	}
	return iw.Close()
}

// limitWriter fails once more than n bytes were written (n <= 0: no limit).
type limitWriter struct {
	w io.Writer
	n int64
	c int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	l.c += int64(len(p))
	if l.n > 0 && l.c > l.n {
		return 0, ErrResultTooLarge
	}
	return l.w.Write(p)
}
