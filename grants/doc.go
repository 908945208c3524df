// Package grants keeps grants as stored: a vendor's application, its review stage by stage
// (an overdue stage takes its configured default), suspension, reinstatement and
// revocation; what the engine may see of a grant (Scope); and what a principal may see of
// the budget ledger.
//
// Invariants: every state change goes through policy's grant functions and is recorded in
// the audit log in the same transaction; a grant becomes active only if the ledger can give
// it its budget slices; a principal who may not see a grant is told it does not exist.
//
// What a dataset has left to give depends on every tenant's grants, so a vendor's answers
// never depend on it: an application is refused only for what the vendor may know (a
// scenario its tenant holds, a slice beyond the dataset's whole budget as its schema states
// it, more than MaxPending applications in review at once), and every other application is
// stored for review by the same path, whatever is left. Whether the slice fits is decided at
// the last approval (ledger.Allocate): a reviewer who approves is told the figures; an
// overdue stage whose default approval does not fit is held for its reviewer
// (policy.Grant.Hold), audited as grant.review.held with the figures, and the vendor reads
// only that the stage awaits its reviewer. So a vendor learns at most one bit (fitted or
// not) per application, at its last review, for at most MaxPending applications at a time.
// Slices that a store written before this rule still holds for grants that never became
// active are given back when the daemon starts (ReleaseStranded).
//
// Package grants never runs a job and never touches a dataset's files.
package grants
