// Package sqlite implements store.Store on one SQLite file in WAL mode with synchronous=FULL.
//
// Writes go through a single connection whose transactions begin IMMEDIATE, so writers are
// serialised by SQLite itself and a read-modify-write (a budget reservation, an audit append)
// cannot interleave with another. Reads use a separate pool and see a consistent snapshot.
//
// Package sqlite never stores an exact (pre-gate) result and never decides policy.
package sqlite
