// Package audit keeps Veil's tamper-evident audit log and signs the provenance
// certificates of released outputs.
//
// The log is an append-only Merkle tree in the style of the Go checksum database
// (golang.org/x/mod/sumdb/tlog, RFC 6962 hashing). Each Append stores one canonical JSON
// Entry at the next index together with the tree hashes tlog.StoredHashes returns, and
// signs a checkpoint of the new tree with the platform's ed25519 key as a signed note
// (golang.org/x/mod/sumdb/note). Storage belongs to the caller, behind the small Reader and
// Writer interfaces defined here, so that an entry commits in the same database
// transaction as the state change it records.
//
// Checkpoint format: the C2SP tlog-checkpoint body, three lines each ending in a newline,
//
//	<origin>
//	<tree size, decimal>
//	<root hash, standard base64>
//
// followed by the note signature block ("— <key name> <base64(key hash ‖ ed25519 sig)>").
// Extra lines after the root are signed but ignored, as that format allows.
//
// Invariant: the log is append-only and every change is detectable. Log.Verify recomputes
// the tree from the records alone, checks every stored hash, every checkpoint signature,
// every checkpoint root and the consistency of successive checkpoints, and names the first
// record index that was changed, removed, reordered, appended without a checkpoint, or
// truncated away. (Truncating the records together with the checkpoints that cover them can
// only be seen against a checkpoint kept elsewhere; publish checkpoints to make it so.)
// Log.Prove and CheckProof give offline inclusion proofs against the latest checkpoint.
//
// Certificates are in-toto Statements (v1) in DSSE envelopes signed with the same key; the
// subject digest binds a certificate to the exact bytes of one export.
//
// Package audit never holds an exact (pre-gate) query result or a secret: entries carry
// identifiers, actions and digests only, and callers must keep it that way. It imports no
// other Veil package and keeps no global state.
package audit
