// Package backup takes a consistent online backup of a Veil data directory and restores one
// into a new data directory (veil backup, veil restore).
//
// A backup is a directory: veil.db, a snapshot of the store taken with SQLite's online
// backup API (one read transaction, so it is consistent while the daemon writes), the files
// the platform keeps beside it (datasets, runtimes, blobs, programs, twins, tenant files,
// keys, platform.pub, and whatever else lives in the data directory but the socket, the
// sandboxes' state, jobs' scratch space and half-written temporaries), and manifest.json,
// written last, with every entry's type, mode, owner and SHA-256. The files are copied after
// the snapshot: the daemon writes a file before it commits the row that names it, so every
// file the snapshot names exists when it is copied; Create checks that each of them is in
// the backup, and takes the snapshot again if one was deleted in between (an ended grant's
// uploads, swept at that moment), and again if the snapshot holds audit entries not yet
// signed (the daemon signs right after each commit).
//
// Restore checks every file against the manifest while it copies, the store's integrity
// (PRAGMA quick_check) and its audit log (every record, hash and signature, against the
// backup's platform.pub), and refuses a backup older than an audit checkpoint the operator
// kept (a smaller tree, or a different tree of the same size) unless forced. Only then does
// it point the store's file paths at the new directory and mark the store as cleanly shut
// down, so that the daemon starts on it. Anything refused leaves no new directory behind.
//
// Package backup never sends a key or a data file anywhere but the two directories it is
// given, never writes into the data directory it backs up, and never restores over an
// existing data directory.
package backup
