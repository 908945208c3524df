package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon/api"
)

// PlatformKeyring fetches the platform's keyring (GET /v1/platform/keyring): its current key
// and the retired ones with their terms. As with PlatformKey, verify with a keyring obtained
// out of band (the data directory's platform.keyring), not one fetched from the daemon whose
// answers you verify.
func (c *Client) PlatformKeyring(ctx context.Context) (api.PlatformKeyring, error) {
	var k api.PlatformKeyring
	return k, c.do(ctx, "GET", "/v1/platform/keyring", nil, &k)
}

// ParseKeyring reads a key file: a keyring (platform.keyring, or what veil platform key
// --keyring prints) or a single verifier key (platform.pub), which is a keyring of one.
func ParseKeyring(b []byte) (*audit.Keyring, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		vkey := strings.TrimSpace(string(b))
		_, pub, err := audit.ParseVerifierKey(vkey)
		if err != nil {
			return nil, fmt.Errorf("platform key: %w", err)
		}
		return audit.NewKeyring([]audit.RingKey{{VerifierKey: vkey, KeyID: audit.KeyID(pub)}})
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var kr api.PlatformKeyring
	if err := dec.Decode(&kr); err != nil {
		return nil, fmt.Errorf("%w: the keyring is not valid: %v", audit.ErrInvalid, err)
	}
	var keys []audit.RingKey
	for _, k := range kr.Keys {
		keys = append(keys, audit.RingKey{VerifierKey: k.VerifierKey, KeyID: k.KeyID, From: k.From, Until: k.Until, MaxSize: k.AuditSize})
	}
	return audit.NewKeyring(keys)
}

// VerifyExportKeyring checks an export's certificate offline against a keyring: signed by
// its current key, or by a retired key in that key's term.
func VerifyExportKeyring(ring *audit.Keyring, data, envelope []byte) (*audit.Statement, error) {
	return ring.VerifyCertificate(envelope, data)
}

// VerifyAuditKeyring is VerifyAudit with a keyring: checkpoints signed by any of its keys,
// a retired key's only up to the log's size when it was retired.
func (c *Client) VerifyAuditKeyring(ctx context.Context, ring *audit.Keyring) (*audit.Report, error) {
	m, err := c.fetchLog(ctx)
	if err != nil {
		return nil, err
	}
	return audit.NewKeyringLog(ring).Verify(ctx, m)
}

// VerifyAuditSinceKeyring is VerifyAuditSince with a keyring.
func (c *Client) VerifyAuditSinceKeyring(ctx context.Context, ring *audit.Keyring, kept []Kept) (*audit.Report, error) {
	return c.verifySince(ctx, audit.NewKeyringLog(ring), ring, kept)
}
