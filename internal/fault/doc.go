// Package fault makes chosen system calls fail in the calling process, so that tests can
// watch real code (SQLite, package durable) meet a failing disk: fsync returning EIO, a
// write returning EIO. It installs a seccomp filter on every thread, which cannot be
// undone, so the failing part of a test runs in a child process (RunChild).
//
// Package fault is for tests only; nothing in Veil's binaries imports it.
package fault
