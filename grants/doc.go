// Package grants keeps grants as stored: a vendor's application, its review stage by stage
// (an overdue stage takes its configured default), suspension, reinstatement and
// revocation; what the engine may see of a grant (Scope); and what a principal may see of
// the budget ledger.
//
// Invariants: every state change goes through policy's grant functions and is recorded in
// the audit log in the same transaction; a grant becomes active only if the ledger can give
// it its budget slices; a principal who may not see a grant is told it does not exist.
//
// Package grants never runs a job and never touches a dataset's files.
package grants
