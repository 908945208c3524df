// Package sql is the SQL job kind: a vendor's SELECT in threshold or dp mode. Plan
// validates the query against the grant's scope (engine.Validator) and prices a dp query;
// Run has the runner compute the exact result, or the contribution-bounded partial
// aggregates, in the sandbox and passes it through the threshold or the DP gate. A threshold
// job also runs, in the same sandbox, its dominance check and its differencing check against
// the grant's latest threshold queries (engine.Checks).
//
// Invariants: what is queued is the checked, rewritten SQL, never the vendor's text; the
// exact result lives only in memory between the pipe and the gate and is cleared after it;
// a dp job's noise is calibrated to what the ledger charged for it.
//
// Package sql never writes a result anywhere: the protected output goes back to package jobs.
package sql
