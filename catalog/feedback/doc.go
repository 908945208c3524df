// Package feedback is data-quality feedback (数据质量反馈): a vendor that has used a dataset
// under a grant files a note on it, the dataset's provider reads and resolves it.
//
// Invariants: the audit log binds each note and resolution by its SHA-256 only, so that a
// note that quotes what it should not can be corrected where it is stored; a principal who
// may not see feedback is told it does not exist; feedback is resolved once, by the provider
// that holds the dataset.
//
// Package feedback never writes a note's text to the audit log.
package feedback
