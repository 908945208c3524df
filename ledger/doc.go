// Package ledger is the privacy-budget ledger: every dataset has a total (its provider's
// declaration), a grant receives a slice of it when it becomes active, and each job spends
// from its grant's slice, reserved in the transaction that queues it.
//
// Amounts are integer micro-epsilon and femto-delta (Amount). They are added and compared as
// integers, never as floats, so that the ledger sums exactly; what a job spends is rounded up
// to a whole unit (Spend) and a declared total down (Total), and the noise is calibrated to
// exactly what was charged.
//
// Invariants: the slices of a dataset never add up to more than its total; the spends of a
// grant never add up to more than its slice; a refused job spends nothing, and only a job
// that never ran is refunded. Every check and the write that depends on it happen in the one
// store transaction the caller gives, which the store serializes with every other writer.
//
// Package ledger does no I/O of its own: it reads and writes only the store transaction it
// is given, and records its changes in the audit log through that same transaction.
package ledger
