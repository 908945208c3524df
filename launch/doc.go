// Package launch runs the runner of a job (the veil binary re-executed as `veil runner`), or
// a vendor's program on a runtime image, in a fresh sandbox with the operator's limits, and
// reduces how it ended to a Failure whose message a vendor may read.
//
// Invariants: with container isolation only a job's own dataset files and inputs are
// mounted, read-only; with process isolation (development only) no dataset that holds real
// data is ever admitted. The runner's stderr, which can quote data values, reaches the
// operator's log only when the operator asked for it.
//
// Package launch knows nothing of grants or SQL beyond the engine.Job it passes on, and
// never reads a job's result: it copies the stream to the writer it is given.
package launch
