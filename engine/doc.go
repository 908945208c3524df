// Package engine is everything Veil does with DuckDB: it reads the schema of data files at
// registration, validates and rewrites vendor SQL against a grant's scope, and runs the
// rewritten query inside the sandbox (the runner). What the gate does with the exact result
// is package gate's.
//
// The validator parses a query with DuckDB's own parser (json_serialize_sql), walks the tree
// with an allow-list, and regenerates the SQL that will run from the checked tree
// (json_deserialize_sql), so that what runs is exactly what was checked. It then decides the
// rules again on DuckDB's logical plan of that SQL over empty stand-ins of the granted
// columns (json_serialize_plan, unoptimized), where every name is the column the binder
// resolved it to: the privacy unit and direct identifiers may only be counted, and nothing
// may fail on a value (one allow-list for every mode: a failure caused by one person's row
// would reveal it through the job's status). Anything it does not know is refused, with a
// message that names the part of the query at fault. The validator never runs or optimizes a
// vendor query and never evaluates its expressions: constant expressions are refused before
// DuckDB binds them, since the binder folds them in the daemon, outside any sandbox.
//
// The runner opens a fresh in-memory DuckDB per job, locks it down (no temporary directory,
// only the job's dataset files readable, no external access, configuration locked, no
// extension loading), exposes each dataset as a view of its granted columns only, and streams
// the exact result as Arrow IPC to the one writer it is given, followed by the results of a
// threshold job's checks (checks.go: dominance and differencing), which name only the group
// keys of the cells that fail.
//
// ProjectColumns writes a copy of a dataset's files holding only a grant's columns, so that a
// sandbox never holds an ungranted column at all.
//
// The engine must never write an exact result anywhere but that stream, never put a data value
// in an error message, and never run vendor SQL outside the runner. It imports no other Veil
// package.
package engine
