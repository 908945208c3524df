// Package runner is everything that runs inside a job's sandbox: the runner the daemon
// starts there (`veil runner`, Main), which runs a SQL job through the engine, scores an
// encrypted model over the granted columns (he-score), parses an uploaded he blob fully
// (he-check) and trains the built-in models with differential privacy. It also holds the
// specs the daemon sends and the results it reads back, the only types both sides share.
//
// Invariants: what leaves the runner is the result pipe only, and for the kinds of this
// package it is already protected: noisy, thresholded or encrypted. A refusal it writes for
// the vendor (a result's Error) names no data value.
//
// Package runner imports only engine, he and dp: it knows no grant, store or daemon, and it
// never runs outside a sandbox in production.
package runner
