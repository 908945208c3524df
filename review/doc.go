// Package review is the export review and release: the queue of outputs waiting for review,
// what a reviewer sees (the query, the grant, the mechanism, warnings such as small groups
// or near-identical queries, the output exactly as it would be released), the decisions
// (a reject deletes the output, approvals release it, findings of a custom output need a
// recorded override), and the export of a released output with its signed certificate.
//
// Invariants: a reviewer never decides on their own job nor twice on one; an output leaves
// only after the approvals the platform requires, as the bytes that were reviewed, and every
// export is recorded with the SHA-256 of what it returned; a certificate never carries a
// finding's location or message.
//
// Package review never changes an output: it shows, deletes or releases it.
package review
