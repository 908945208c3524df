// Package durable writes files so that they survive a crash or a power cut whole: either
// the old content or the new, never a torn mix, and never a rename that a crash can undo.
//
// WriteFile is the one way Veil replaces a file that matters (keys, signer state,
// checkpoints, configuration with tokens): a temporary file in the same directory,
// written, fsync'd, renamed over the target, and the directory fsync'd so that the rename
// itself is on disk (rename(2) alone is atomic but not durable: ext4 and XFS may lose it on
// a crash). AppendFile appends one record to an append-only file and fsyncs it.
//
// An fsync error is final: after a failed fsync Linux may have dropped the dirty pages
// and cleared the error, so a retry can "succeed" without the data on disk (the
// PostgreSQL "fsyncgate", https://wiki.postgresql.org/wiki/Fsync_Errors). Callers must
// treat an error from this package as "the file may not hold what was written" and stop
// relying on it, never retry and carry on.
//
// Package durable never logs or returns file contents in errors: they may be secrets.
package durable
