// Package store defines what Veil persists and the interface of a store: principals, the
// catalog, grants, jobs, protected outputs, reviews, the budget ledger and the audit log's
// records. store/sqlite implements it on one SQLite file; a deployment that outgrows one
// machine can implement it on PostgreSQL.
//
// Invariant: every change happens inside a transaction (Update), and the audit entry that
// records a change is appended in the same transaction, so both commit or neither does. A
// store that hit a storage failure stops taking writes (Err, Halt) rather than carry on
// over data it cannot vouch for.
//
// Package store never holds an exact (pre-gate) result: Output.Data is the protected output
// only. It applies no policy: rules live in package policy, budget arithmetic in package ledger.
package store
