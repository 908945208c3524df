//go:build race

package daemon_test

// The race detector's shadow memory counts against a sandbox's memory limit: the runner (this
// test binary, re-executed) needs about three times what a normal build does. And he scoring
// runs ten times slower under it, inside a sandbox whose runner is single-threaded: the he
// tests run in the ordinary pass only (see startHE).
func init() {
	jobMemoryMB = 3072
	raceEnabled = true
}
