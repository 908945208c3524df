// Package platform holds what every part of the daemon shares about the platform itself:
// its configuration, the principals and their bearer tokens, the ids it hands out, the audit
// trail every state change is written to (Recorder, with the platform's clock; Refusals, the
// coalesced record of refused requests), and the files it keeps for tenants.
//
// Invariants: a token is stored only as its SHA-256 and shown once, when it is made; every
// audit entry is appended inside the store transaction of the change it records, so both
// commit or neither does; a tenant's upload is found by its digest only, so no path ever
// comes from a request, and is read back with its upload's bound and checked against that
// digest; refused requests are recorded with counts, never with a token or a body.
//
// Package platform never serves HTTP, never runs a job and never applies an output rule.
package platform
