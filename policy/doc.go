// Package policy holds the rules of Veil as pure logic: roles and what each may do, the
// catalog's column classification, grants and their review workflow, and the output rules a
// job's result must pass.
//
// Invariant: grant state changes happen only through this package's functions, which
// check who may make them and when. A level-4 column can never enter a grant.
//
// Package policy never does I/O: it reads no file, opens no database and keeps no global
// state; callers pass in the time, the principal and the records.
package policy
