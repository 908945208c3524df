// Package daemon is Veil's server: the HTTP API /v1, authentication and authorisation of
// every call, the scheduler and job state machine, the output gate and review queue, and the
// wiring of the policy, store, audit, sandbox and engine packages.
//
// Invariants: every request is authenticated and checked against its principal's role and
// tenant, and a vendor asking about another tenant's object gets the same answer as for an
// object that does not exist. Every state change is recorded in the audit log in the same
// store transaction. The exact result of a job exists only in this process's memory between
// the result pipe and the gate.
//
// Package daemon never writes an exact (pre-gate) result to disk, a log, an error message or
// the audit log, and never runs a vendor query outside the runner process.
package daemon
