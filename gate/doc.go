// Package gate holds every output gate: it turns the exact result of a job into its
// protected output, or finds what a reviewer must look at before a vendor's own output may
// leave.
//
//   - Threshold: rows with fewer than k distinct privacy units are suppressed, and so are
//     the cells the threshold checks name (ThresholdChecked: dominance rules, differencing
//     against the grant's earlier queries); counts rounded, the hidden columns dropped
//     (threshold mode).
//   - DP: noise calibrated to exactly what the ledger charged, on contribution-bounded
//     partial aggregates, with partition selection or a public domain (dp mode).
//   - HE: the reviewable record of an he-score job, whose sums stay encrypted.
//   - The statistical disclosure checks of custom outputs (sdc.go, custom.go).
//
// Invariants: what comes out holds no value of the exact input that the gate's rule does not
// release; an error or a finding names columns, rules and places, never a data value.
//
// Package gate does no I/O: it reads no file, opens no store and starts no sandbox. The
// caller passes in the exact result and takes the protected output; the exact record stays
// the caller's to release.
package gate
