// Package review is the export review and release: the queue of outputs waiting for review,
// what a reviewer sees (the query, the grant, the mechanism, warnings such as small groups
// or near-identical queries, the output exactly as it would be released, and its digest),
// the decisions (a reject deletes the output, approvals release it, findings of a custom
// output need a recorded override), and the export of a released output with its signed
// certificate.
//
// Invariants: a reviewer never decides on their own job nor twice on one; an approval names
// the digest of the output it approves, and an output leaves only as the bytes its gate
// produced (checked, at every show, approval and export, against the digest the job.gate
// audit entry recorded) after the approvals the platform requires; what a release rests on
// (the grant active, the submitter not revoked, the approving reviewers still reviewers, the
// quorum) is checked again at each approval and each download, and a release that no longer
// has it goes back to review; every export is recorded with the SHA-256 of what it returned;
// a certificate never carries a finding's location or message.
//
// Package review never changes an output: it shows, deletes or releases it.
package review
