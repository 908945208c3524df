// Package audit keeps Veil's tamper-evident audit log and signs the provenance
// certificates of released outputs.
//
// The log is an append-only Merkle tree in the style of the Go checksum database
// (golang.org/x/mod/sumdb/tlog, RFC 6962 hashing). Log.Append stores one canonical JSON
// Entry at the next index together with the tree hashes tlog.StoredHashes returns, inside
// the caller's transaction, so that an entry commits with the state change it records.
// Storage belongs to the caller, behind the small Reader and Writer interfaces defined here.
//
// Signing is separate from writing. A Signer signs checkpoints after the commit, and only of
// trees that extend the last checkpoint it signed, which it keeps in a state file of its own
// (Signer.Check is the start-up check that the store still extends it). A Checkpointer runs
// the Signer after each commit, stores the checkpoint and appends it to Archives: files or
// directories out of the writer's reach that refuse a checkpoint inconsistent with their
// last one. Auditors keep checkpoints and check that the log still extends them
// (CheckConsistency, with proofs from Log.ProveConsistency); an independent Witness
// cosigns checkpoints after the same check. The older mode, NewLog with a key, signs inside
// the transaction; it remains until the daemon uses a Signer.
//
// Formats, for standard tooling: checkpoints are C2SP tlog-checkpoint notes,
//
//	<origin>
//	<tree size, decimal>
//	<root hash, standard base64>
//
// followed by the note signature block ("— <key name> <base64(key hash ‖ ed25519 sig)>"),
// extra lines after the root being signed but ignored; cosignatures are C2SP
// tlog-cosignature "cosignature/v1" Ed25519 signature lines on the same note; consistency
// proofs are RFC 6962/9162 proofs as tlog.ProveTree computes them.
//
// Invariant: the log is append-only and every change is detectable. Log.Verify recomputes
// the tree from the records alone, checks every stored hash, every checkpoint signature,
// every checkpoint root and the consistency of successive checkpoints, and names the first
// record index that was changed, removed, reordered or truncated away. What a writer of the
// store can do to the log and its checkpoints together (truncate, roll back to a backup,
// fork with a stolen key) is caught against a checkpoint kept elsewhere: the Signer's state,
// an Archive, a Witness's state, an auditor's kept copy.
//
// Certificates are in-toto Statements (v1) in DSSE envelopes signed with the same key; the
// subject digest binds a certificate to the exact bytes of one export.
//
// Package audit never holds an exact (pre-gate) query result or a secret other than the
// keys it is given: entries carry identifiers, actions and digests only, and callers must
// keep it that way. It imports no other Veil package but durable, and keeps no global state.
package audit
