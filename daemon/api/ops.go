package api

// Version is the daemon's build (GET /v1/version).
type Version struct {
	Version string `json:"version"`          // Veil's version, e.g. v1.4.0 or a commit with -dirty
	Commit  string `json:"commit,omitempty"` // the commit it was built from
}

// Health is the answer of /healthz and /readyz: ok, or not ready (the reason is in the
// daemon's log, not here).
type Health struct {
	Status string `json:"status"`
}
