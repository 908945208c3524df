// Package train is the model job kind: a built-in trainer (linear and logistic regression,
// histograms, quantiles) with differential privacy, from a declarative spec. Plan checks the
// spec against the grant (granted, numeric, bounded columns; sizes; a budget) and prices it;
// Run has the runner train in the sandbox, which adds its noise before anything leaves.
//
// Invariants: a trainer reads no privacy unit or direct identifier; its noise is calibrated
// to what the ledger charged.
//
// Package train never sees an exact statistic: only noisy results come back from the runner.
package train
