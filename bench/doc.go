// Package bench is Veil's whole-system benchmark harness. It generates its data, runs each
// workload through Veil (end to end through a daemon in this process, or through the
// runner in a sandbox of its own where the figure is about the runner and the sandbox) and,
// in the same run, the baseline it is measured against (raw DuckDB on the same files, the
// same runner without a sandbox), and writes RESULTS.md for people and results.json for
// scripts, figure by figure as they are measured (Results).
//
// A run is a list of suites (Suites; veil bench --only): each records its own figures, and
// one that fails does not stop the others. Suites that compare steps whose times drift on
// a shared machine run them interleaved, round by round, and report medians of per-round
// ratios. A new workload is a suite: a function of the run's env (its data, its daemon, its
// sandboxes) that adds figures, and one line in suites.
//
// Package bench never asserts a wall-clock threshold: it measures and reports ratios.
package bench
