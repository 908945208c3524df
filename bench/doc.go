// Package bench is Veil's whole-system benchmark harness. It generates its data, runs each
// workload through Veil end to end and, in the same process, the baseline it is measured
// against (raw DuckDB on the same files, the same runner without a sandbox), and writes
// bench/RESULTS.md for people and bench/results.json for scripts.
//
// Package bench never asserts a wall-clock threshold: it measures and reports ratios.
package bench
