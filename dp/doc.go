// Package dp turns exact, contribution-bounded aggregates into differentially private
// releases. What a release may spend is the ledger's (package ledger): the functions here
// take an epsilon and a delta and calibrate noise to exactly them.
//
// All noise comes from Google's differential-privacy library
// (github.com/google/differential-privacy/go/v3): its Laplace and Gaussian mechanisms sample
// from crypto/rand with secure granularity (released floats lie on a power-of-two grid, so
// the low bits of a float carry no trace of the exact value), its confidence intervals, its
// pre-aggregated partition selection and its quantile tree. No noise is drawn from anything else: never a
// seed, never math/rand, so a vendor cannot influence or replay it. One exception that is
// not noise: Synthesize samples synthetic rows from marginals that are already noisy with a
// seeded math/rand/v2 generator; that is post-processing of a release and touches no private
// value.
//
// Contribution bounding (each privacy unit in at most MaxGroups groups, with at most MaxRows
// rows per group, values clamped to bounds) is done before the numbers reach this package,
// in DuckDB inside the sandbox (package engine); the functions here take the sensitivities
// that bounding guarantees and calibrate noise to them.
//
// This package must never log, print or return an exact (pre-noise) value in an error.
package dp
