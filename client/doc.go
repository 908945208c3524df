// Package client is the Go client of Veil's HTTP API /v1. The CLI, the tests and the
// benchmarks use it; it also verifies certificates and the audit log offline, with only the
// platform's public key.
//
// Package client never caches a token on disk and never sends one to any host but the
// daemon it was configured for.
package client
