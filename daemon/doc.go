// Package daemon is Veil's server, and only its HTTP side: the API /v1, the authentication
// of every call by bearer token, strict decoding of request bodies, the one mapping of error
// kinds to statuses (errors.go), thin handlers that call the packages below, and the wiring
// of those packages (New), including the registration of the job kinds, and of the audit
// signer (signing.go: the key loaded in one place, the signer's state and archives, the
// start-up checks of the store and the log, group-committed signing after each commit).
//
// Invariants: every request is authenticated and checked against its principal's role, and
// every refusal of either is audited (coalesced); a body, its headers and its query are
// bounded and decoded strictly by one decoder (api.Decode: no key twice, none in another
// case, none unknown, at any level); an internal error reaches the caller as "internal
// error", its details only the operator's log. The daemon never starts on a store whose
// files or log fail the start-up checks, never signs a tree that does not extend its own
// last checkpoint, and stops taking writes (503) after a storage failure or a log it can no
// longer sign.
//
// Package daemon holds no business rule of its own: grants, jobs, gates, the ledger, the
// review and the catalog are their packages'. Only cmd/veil imports it.
package daemon
