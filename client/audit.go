package client

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon/api"
)

// AuditRecords fetches a page of audit records; tail returns the last limit records.
func (c *Client) AuditRecords(ctx context.Context, from, limit int64, tail bool) (api.AuditRecords, error) {
	var r api.AuditRecords
	q := "?from=" + strconv.FormatInt(from, 10) + "&limit=" + strconv.FormatInt(limit, 10)
	if tail {
		q += "&tail=1"
	}
	return r, c.do(ctx, "GET", "/v1/audit/records"+q, nil, &r)
}

// AuditProof fetches an inclusion proof of entry index against the latest checkpoint.
func (c *Client) AuditProof(ctx context.Context, index int64) (*audit.Proof, error) {
	var p audit.Proof
	return &p, c.do(ctx, "GET", "/v1/audit/proof/"+strconv.FormatInt(index, 10), nil, &p)
}

// ServerVerify asks the daemon to verify the log as stored, interior hashes included.
func (c *Client) ServerVerify(ctx context.Context) (ok bool, msg string, err error) {
	var out struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := c.do(ctx, "GET", "/v1/audit/verify", nil, &out); err != nil {
		return false, "", err
	}
	return out.OK, out.Error, nil
}

// memLog is an audit.Reader over records and checkpoints fetched from the daemon. Its
// interior hashes are recomputed here from the records, so verification trusts nothing the
// daemon computed: only the records, and checkpoints signed by the platform key.
type memLog struct {
	records [][]byte
	hashes  []tlog.Hash
	cps     []audit.Checkpoint
}

func (m *memLog) Size(context.Context) (int64, error) { return int64(len(m.records)), nil }

func (m *memLog) ReadHashes(_ context.Context, idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("hash %d out of range", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memLog) ReadRecords(_ context.Context, from, to int64) ([][]byte, error) {
	to = min(to, int64(len(m.records)))
	if from > to {
		return nil, nil
	}
	return m.records[from:to], nil
}

func (m *memLog) Checkpoints(context.Context) ([]audit.Checkpoint, error) { return m.cps, nil }

// VerifyAudit fetches the whole log and its checkpoints and verifies them locally against
// the platform's verifier key vkey.
func (c *Client) VerifyAudit(ctx context.Context, vkey string) (*audit.Report, error) {
	m := &memLog{}
	for {
		page, err := c.AuditRecords(ctx, int64(len(m.records)), 10000, false)
		if err != nil {
			return nil, err
		}
		m.records = append(m.records, page.Records...)
		if len(page.Records) == 0 || int64(len(m.records)) >= page.Size {
			break
		}
	}
	var cps api.AuditCheckpoints
	if err := c.do(ctx, "GET", "/v1/audit/checkpoints", nil, &cps); err != nil {
		return nil, err
	}
	for _, cp := range cps.Checkpoints {
		m.cps = append(m.cps, audit.Checkpoint{Size: cp.Size, Note: cp.Note})
	}
	for i, rec := range m.records {
		hs, err := tlog.StoredHashes(int64(i), rec, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			return m.ReadHashes(ctx, idx)
		}))
		if err != nil {
			return nil, err
		}
		m.hashes = append(m.hashes, hs...)
	}
	key, _, err := parseVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return key.Verify(ctx, m)
}

func parseVerifier(vkey string) (*audit.Log, ed25519.PublicKey, error) {
	v, pub, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("platform key: %w", err)
	}
	_ = v
	return audit.NewVerifyingLog(vkey), pub, nil
}

// VerifyExport checks an export's certificate against the platform key, offline.
func VerifyExport(vkey string, data, envelope []byte) (*audit.Statement, error) {
	_, pub, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		return nil, fmt.Errorf("platform key: %w", err)
	}
	return audit.VerifyCertificate(pub, envelope, data)
}
