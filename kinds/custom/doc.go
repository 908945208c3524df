// Package custom is the custom job kind: an operator registers runtime images (a root
// filesystem, copied and recorded with its digest); a vendor uploads a program and submits
// it for one of them under a model grant. The program runs in a container on that image with
// the grant's columns as read-only Parquet files in /in (the privacy unit replaced by a
// per-job pseudonym) and writes its outputs to /out, a size-limited tmpfs.
//
// Invariants: no network; the vendor learns only a status class (ok, failed, limit hit),
// never stdout, stderr or the exit code, and only coarse timing; the outputs face the
// disclosure checks of package gate and a reviewer, and a release with findings needs a
// recorded override. A runtime's name never changes meaning.
//
// Package custom makes no differential-privacy claim and never runs a program outside a
// container.
package custom
