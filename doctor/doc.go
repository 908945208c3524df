// Package doctor checks, before the daemon runs and while it runs, that a host and a data
// directory are fit for Veil: the kernel, cgroups and their controllers, user namespaces and
// seccomp that the sandbox needs; the data directory's ownership and modes (secrets
// owner-only, datasets traversable by the sandbox's unprivileged root); free disk; the
// store's integrity; and the audit log against its signed checkpoints. Each failed check
// says what to do.
//
// Package doctor only reads: it never writes to the data directory, never opens the store
// for writing, never repairs anything itself, and never prints a secret (the platform key
// is read only to check that platform.pub is its public half; token hashes are not read).
// The one trace it can leave is SQLite's: a reader of a WAL database creates the store's
// empty -wal and -shm companions when they are missing, with the store's own mode.
package doctor
