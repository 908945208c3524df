// Package engine is everything Veil does with DuckDB: it reads the schema of data files at
// registration, validates and rewrites vendor SQL against a grant's scope, and runs the
// rewritten query inside the sandbox (the runner). What the gate does with the exact result
// is package gate's.
//
// The validator parses a query with DuckDB's own parser (json_serialize_sql), walks the tree
// with an allow-list, and regenerates the SQL that will run from the checked tree
// (json_deserialize_sql), so that what runs is exactly what was checked. Anything it does not
// know is refused, with a message that names the part of the query at fault.
//
// The runner opens a fresh in-memory DuckDB per job, locks it down (no temporary directory,
// only the job's dataset files readable, no external access, configuration locked, no
// extension loading), exposes each dataset as a view of its granted columns only, and streams
// the exact result as Arrow IPC to the one writer it is given.
//
// The engine must never write an exact result anywhere but that stream, never put a data value
// in an error message, and never run vendor SQL outside the runner. It imports no other Veil
// package.
package engine
