// Package policy holds the rules of Veil as pure logic: roles and what each may do, the
// catalog's column classification, and grants and their review workflow. The rules an
// output must pass are package gate's.
//
// Invariant: grant state changes happen only through this package's functions, which
// check who may make them and when. A level-4 column can never enter a grant.
//
// Package policy never does I/O: it reads no file, opens no database and keeps no global
// state; callers pass in the time, the principal and the records.
package policy
