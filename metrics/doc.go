// Package metrics is the operator's view of a running daemon in the Prometheus exposition
// format: requests by route and status, jobs by kind and state, the queues per tenant,
// sandbox starts, the review queue, the privacy budget per dataset and the audit log.
//
// Invariant: a label carries only names the platform gives (a route pattern, a job kind or
// state, a tenant, a dataset's name, an HTTP status), never a value read from data, a query
// text, a raw path or a query string; every label takes few values, so that no caller can
// grow the series without bound.
//
// Package metrics knows no other Veil package: the daemon hands it events and, per scrape,
// a Snapshot it reads from the store.
package metrics
