//go:build race

package daemon_test

// The race detector's shadow memory counts against a sandbox's memory limit: the runner (this
// test binary, re-executed) needs about three times what a normal build does.
func init() { jobMemoryMB = 3072 }
