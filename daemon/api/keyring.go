package api

import "time"

// PlatformKeyring is the platform's current verification key and the retired ones, each
// with its term: what verifies certificates and checkpoints signed before a key rotation.
type PlatformKeyring struct {
	Keys []KeyringKey `json:"keys"` // the current key last
}

// KeyringKey is one key of the keyring. A retired key has Until and verifies only
// certificates exported before it and checkpoints of at most AuditSize entries.
type KeyringKey struct {
	VerifierKey string    `json:"verifier_key"`
	KeyID       string    `json:"key_id"`
	From        time.Time `json:"from,omitzero"`
	Until       time.Time `json:"until,omitzero"`
	AuditSize   int64     `json:"audit_size,omitempty"`
}

// RotatePrincipal asks for a new token for a principal (POST /v1/principals/{id}/rotate).
// The old token keeps working for Grace ("24h", "7d"; empty: it ends at once), then is
// refused; Expires, if set, ends the new token after that long.
type RotatePrincipal struct {
	Grace   string `json:"grace,omitempty"`
	Expires string `json:"expires,omitempty"`
}
