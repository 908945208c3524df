// Package hescore is the he-score job kind: the vendor uploads its public key bundle and its
// encrypted model (Upload), then submits a job naming the dataset and the group-by keys. The
// runner reads the model's features in the sandbox, counts each group in the clear, drops
// groups with fewer than k persons (or selects them with differential privacy), scores the
// rest under encryption and sums per group; the output is the group keys, their row counts
// and one ciphertext only the vendor can decrypt.
//
// Invariants: the platform never decrypts, never holds a secret key and refuses one at
// upload, unread; untrusted key material is fully parsed only in a sandbox; a model reads
// only granted numeric columns that are neither the privacy unit nor a direct identifier.
//
// Package hescore never sees a score in the clear.
package hescore
