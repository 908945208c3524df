// Package sqlite implements store.Store on one SQLite file in WAL mode with synchronous=FULL.
//
// Writes go through a single connection whose transactions begin IMMEDIATE, so writers are
// serialised by SQLite itself and a read-modify-write (a budget reservation, an audit append)
// cannot interleave with another. Reads use a separate pool and see a consistent snapshot.
//
// UpdateAsync commits at synchronous=NORMAL (written to the log, not fsync'd) and returns
// a flush that fsyncs the log; a crash of the process loses none of it, one of the machine
// only what neither a flush nor a later synchronous commit reached the disk with. The flush
// fsyncs one descriptor of the log kept from the first flush (it reports every write-back
// failure since), and a reader connection held open for the store's life keeps any
// connection that closes last, ours or another program's, from deleting the log; a log
// removed or replaced by hand while the store is open latches the store (fail-stop).
//
// Start-up checks (OpenWith): a shutdown marker kept beside the store (or wherever the
// operator puts it) says "open" while the store is open and, after a clean Close, holds the
// SHA-256 of the database file. A store whose file is missing, changed or replaced since a
// clean shutdown, or that was not shut down cleanly and lost its write-ahead log, is refused
// with what to do; PRAGMA quick_check runs on every open. The write-ahead log is kept (empty)
// when the store closes, so that its absence always means someone removed it.
//
// Fail-stop: an I/O error (a failed fsync or write) or a damaged page latches the store:
// every later Update is refused at once with the first failure, Err reports it for the
// readiness check, and only a restart clears it, because after a failed fsync the kernel may
// have dropped the data and a retry could appear to succeed. A full disk refuses only the
// transaction at hand, which SQLite rolled back whole.
//
// Package sqlite never stores an exact (pre-gate) result and never decides policy.
package sqlite
