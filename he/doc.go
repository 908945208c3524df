// Package he lets a credit or anti-fraud vendor score Veil's public data with
// a proprietary linear or logistic model without showing the model to the
// platform, while the platform never shows a row to the vendor.
//
// The vendor side (run on the vendor's own machine) generates keys
// (GenerateKeys), encrypts its model (EncryptModel) and finally decrypts the
// per-group sums it receives (Decrypt). The platform side (run inside a Veil
// sandbox) only ever holds the PublicBundle and the EncryptedModel: it packs
// clamped and scaled features into plaintexts (Scorer.Add), computes the
// encrypted per-group sums of scores (Scorer.Finish), optionally adds
// plaintext DP noise (EncryptedSums.AddNoise) and floods the result before
// export (EncryptedSums.Flood).
//
// The scheme is CKKS (lattigo v5 he/hefloat) with the single parameter set
// documented on Parameters.
//
// What this package must never do:
//   - decrypt anything on the platform: the only decrypting function is
//     Decrypt, which needs the vendor's SecretKey;
//   - hold a vendor secret key outside the vendor-side functions
//     (GenerateKeys, SecretKey.MarshalBinary, UnmarshalSecretKey, Decrypt):
//     platform-side types (PublicBundle, EncryptedModel, Scorer,
//     EncryptedSums) have no field that can carry it;
//   - log or print values: errors name the feature, the group or the blob
//     that was wrong, never a data value, a weight or key material, and the
//     package writes nothing to any log.
//
// Threat model: the vendor is assumed semi-honest (it follows the protocol
// and produces well-formed keys and model ciphertexts). Noise flooding
// (EncryptedSums.Flood) protects the platform's data against what the
// decryption noise would otherwise reveal; it does not protect against a
// vendor that crafts malformed ciphertexts (for example weights that differ
// from slot to slot, which would weight rows by their slot position, or
// oversized encryption noise). Proofs of well-formedness are not
// implemented.
package he
