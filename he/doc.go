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
// The scheme is CKKS (lattigo v5 he/hefloat) over the conjugate-invariant
// ring, with the single parameter set documented on Parameters. The
// evaluation's NTT-bound steps (NTTs, the relinearization's key switch, the
// rescales, the lane folds) and the sigmoid's ciphertext products run on own
// code next to lattigo's, on AVX-512 IFMA where the CPU has it (ntt.go,
// keyswitch.go, tensor.go), each tested to give lattigo's result bit for bit.
//
// What this package must never do:
//   - decrypt anything on the platform: the only decrypting function is
//     Decrypt, which needs the vendor's SecretKey;
//   - hold a vendor secret key outside the vendor-side functions
//     (GenerateKeys, SecretKey.MarshalBinary, UnmarshalSecretKey, Decrypt):
//     platform-side types (PublicBundle, EncryptedModel, Scorer,
//     EncryptedSums) have no field that can carry it;
//   - let a row meet a weight it does not share with every row of its group:
//     a logistic scorer uses only the lane averages of the vendor's weight and
//     bias ciphertexts, which it computes itself (Scorer, issue #12 item 9) or
//     takes from the platform's own PreparedModel of the same blobs; a
//     linear scorer lets only clear per-group sums meet the weights;
//   - hand untrusted bytes to lattigo's decoders before checking them against
//     the exact layout this package writes (layout.go): those decoders
//     allocate whatever length the input claims;
//   - log or print values: errors name the feature, the group or the blob
//     that was wrong, never a data value, a weight or key material, and the
//     package writes nothing to any log.
//
// Threat model. The model ciphertexts may be anything the vendor can make with
// its own secret key: whatever their slots hold, every row of a group is scored
// with the same weights (their lane averages), so the decrypted sums are a
// function of per-group aggregates only; ciphertexts of another level, scale,
// degree, slot count or with unreduced coefficients are refused, and the
// accepted ones are rebuilt with canonical metadata. The rounding of the
// plaintexts that carry rows is randomized (roundingSigma), so an amplified
// weight in an empty or unused slot reads noise, not the fractional parts of
// the encoding. What remains:
//   - the weights' magnitudes: a huge weight makes every score leave the
//     sigmoid's interval, so the sums of a logistic model are per-group
//     aggregates of a vendor-chosen function that need not lie in [0, 1]; a
//     differential-privacy bound on them rests on the declared score bound,
//     which the platform cannot check;
//   - the evaluation keys are assumed well formed. The platform cannot check a
//     relinearization or Galois key without the secret key; a crafted one
//     turns a key switch on a ciphertext that depends on the data into a
//     channel (and a crafted Galois key can undo the lane averaging). Closing
//     this needs proofs of well-formed keys (none implemented) or keys made by
//     a tool the platform trusts. The uniform halves of the Galois keys are at
//     least derived from a seed (newCRS), not chosen by the vendor;
//   - noise flooding (EncryptedSums.Flood) is sized for honest noise and
//     protects the data in the differential-privacy sense documented there, not
//     with statistical 2^-lambda hiding.
package he
