// Package twin builds the dev twins of datasets: a masked sample (each column by its catalog
// masking rule, applied by Veil) or a synthetic dataset drawn from differentially private
// marginals (spending the dataset's budget). A twin is an output like any other: it waits for
// export review, and only a released twin is used, by vendors' dev runs (package jobs).
//
// Invariants: a masked twin shows no column above what its rule leaves; a synthetic twin is
// post-processing of noisy marginals and its budget stays spent whatever the review decides.
//
// Package twin never hands out a twin that a reviewer has not released.
package twin
