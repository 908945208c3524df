package client

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strconv"

	"golang.org/x/mod/sumdb/note"
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

// AuditCheckpoints fetches a page of the signed checkpoints: at most limit (1..10000) of
// size ≥ from. The page's Next is the from of the next page, 0 after the last.
func (c *Client) AuditCheckpoints(ctx context.Context, from, limit int64) (api.AuditCheckpoints, error) {
	var r api.AuditCheckpoints
	q := "?from=" + strconv.FormatInt(from, 10) + "&limit=" + strconv.FormatInt(limit, 10)
	return r, c.do(ctx, "GET", "/v1/audit/checkpoints"+q, nil, &r)
}

// checkpointsPage is how many checkpoints AllAuditCheckpoints asks for at a time.
const checkpointsPage = 1000

// AllAuditCheckpoints fetches every signed checkpoint, in order of size, following the
// pages of GET /v1/audit/checkpoints, pageSize at a time (0: 1000). Checkpoints the
// daemon signs meanwhile may be included; none is left out or repeated.
func (c *Client) AllAuditCheckpoints(ctx context.Context, pageSize int64) ([]audit.Checkpoint, error) {
	if pageSize <= 0 {
		pageSize = checkpointsPage
	}
	var out []audit.Checkpoint
	for from := int64(0); ; {
		page, err := c.AuditCheckpoints(ctx, from, pageSize)
		if err != nil {
			return nil, err
		}
		for _, cp := range page.Checkpoints {
			out = append(out, audit.Checkpoint{Size: cp.Size, Note: cp.Note})
		}
		if page.Next <= from || len(page.Checkpoints) == 0 {
			return out, nil // the last page (a Next that does not advance would loop)
		}
		from = page.Next
	}
}

// AuditProof fetches an inclusion proof of entry index against the latest checkpoint.
func (c *Client) AuditProof(ctx context.Context, index int64) (*audit.Proof, error) {
	var p audit.Proof
	return &p, c.do(ctx, "GET", "/v1/audit/proof/"+strconv.FormatInt(index, 10), nil, &p)
}

// AuditCheckpoint fetches the latest signed checkpoint (GET /v1/audit/checkpoint). It is
// not checked here: open it with the platform key (audit.OpenCheckpoint).
func (c *Client) AuditCheckpoint(ctx context.Context) (audit.Checkpoint, error) {
	var cp audit.Checkpoint
	return cp, c.do(ctx, "GET", "/v1/audit/checkpoint", nil, &cp)
}

// AuditConsistency fetches a proof that the log's tree at its checkpoint of size to (0: the
// latest) extends its tree of size from (GET /v1/audit/consistency?from=N&to=M). Check it
// against a checkpoint you kept, never against the proof's own Old.
func (c *Client) AuditConsistency(ctx context.Context, from, to int64) (*audit.ConsistencyProof, error) {
	var p audit.ConsistencyProof
	q := "?from=" + strconv.FormatInt(from, 10)
	if to > 0 {
		q += "&to=" + strconv.FormatInt(to, 10)
	}
	return &p, c.do(ctx, "GET", "/v1/audit/consistency"+q, nil, &p)
}

// AuditProver returns the daemon's consistency proofs as an audit.ProveFunc, for a witness.
func (c *Client) AuditProver() audit.ProveFunc {
	return func(ctx context.Context, from, to int64) ([]tlog.Hash, error) {
		p, err := c.AuditConsistency(ctx, from, to)
		if err != nil {
			return nil, err
		}
		return p.Hashes, nil
	}
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

// fetchLog fetches the log as of its latest checkpoint: the checkpoints first (page by
// page; the last one fetched fixes the size), then the records up to the latest one's size, so that entries appended in the
// meantime are left out instead of looking like a truncation. It recomputes every hash.
func (c *Client) fetchLog(ctx context.Context) (*memLog, error) {
	cps, err := c.AllAuditCheckpoints(ctx, 0)
	if err != nil {
		return nil, err
	}
	m := &memLog{cps: cps}
	var size int64
	if len(m.cps) > 0 {
		size = m.cps[len(m.cps)-1].Size
	}
	for int64(len(m.records)) < size {
		page, err := c.AuditRecords(ctx, int64(len(m.records)), min(10000, size-int64(len(m.records))), false)
		if err != nil {
			return nil, err
		}
		if len(page.Records) == 0 {
			break // fewer records than the checkpoint covers: Verify reports the truncation
		}
		m.records = append(m.records, page.Records[:min(len(page.Records), int(size)-len(m.records))]...)
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
	return m, nil
}

// VerifyAudit fetches the log as of its latest checkpoint and verifies it locally against
// the platform's verifier key vkey.
func (c *Client) VerifyAudit(ctx context.Context, vkey string) (*audit.Report, error) {
	l, _, err := parseVerifier(vkey)
	if err != nil {
		return nil, err
	}
	m, err := c.fetchLog(ctx)
	if err != nil {
		return nil, err
	}
	return l.Verify(ctx, m)
}

// Kept is a checkpoint an auditor kept (veil audit checkpoint -o FILE), and its name in
// messages.
type Kept struct {
	Name string
	Note []byte
}

// VerifyAuditSince verifies the log as VerifyAudit does and proves that it extends every
// kept checkpoint: with the daemon's consistency proof from the kept checkpoint's size to
// the latest checkpoint, checked against the kept copy, and again against the tree
// recomputed here from the records. A log smaller than a kept checkpoint, a different tree
// of the same size (a fork) or a proof that does not verify is audit.ErrTampered, naming
// the kept checkpoint.
func (c *Client) VerifyAuditSince(ctx context.Context, vkey string, kept []Kept) (*audit.Report, error) {
	l, _, err := parseVerifier(vkey)
	if err != nil {
		return nil, err
	}
	v, _, _ := audit.ParseVerifierKey(vkey)
	return c.verifySince(ctx, l, v, kept)
}

func (c *Client) verifySince(ctx context.Context, l *audit.Log, v note.Verifier, kept []Kept) (*audit.Report, error) {
	latest, err := c.AuditCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("latest checkpoint: %w", err)
	}
	for _, k := range kept {
		if err := c.CheckKept(ctx, v, k, latest); err != nil {
			return nil, err
		}
	}
	m, err := c.fetchLog(ctx)
	if err != nil {
		return nil, err
	}
	rep, err := l.Verify(ctx, m)
	if err != nil {
		return nil, err
	}
	// The records themselves, hashed here, must give every kept root.
	for _, k := range kept {
		_, size, root, _ := audit.OpenCheckpoint(v, k.Note)
		if size > int64(len(m.records)) {
			return nil, fmt.Errorf("kept checkpoint %s: %w: it covers %d entries, the log served %d", k.Name, audit.ErrTampered, size, len(m.records))
		}
		if size == 0 {
			continue
		}
		got, err := tlog.TreeHash(size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return m.ReadHashes(ctx, idx) }))
		if err != nil {
			return nil, err
		}
		if got != root {
			return nil, fmt.Errorf("kept checkpoint %s: %w: the log's first %d records, hashed here, do not give its root: they were changed", k.Name, audit.ErrTampered, size)
		}
	}
	return rep, nil
}

// CheckKept checks that the log's checkpoint latest (signed by v) extends the kept
// checkpoint k, with the daemon's consistency proof between their sizes.
func (c *Client) CheckKept(ctx context.Context, v note.Verifier, k Kept, latest audit.Checkpoint) error {
	if err := c.checkKept(ctx, v, k, latest); err != nil {
		return fmt.Errorf("kept checkpoint %s: %w", k.Name, err)
	}
	return nil
}

func (c *Client) checkKept(ctx context.Context, v note.Verifier, k Kept, latest audit.Checkpoint) error {
	_, size, _, err := audit.OpenCheckpoint(v, k.Note)
	if err != nil {
		return err
	}
	p := &audit.ConsistencyProof{Old: k.Note, New: latest.Note}
	if size >= 1 && size < latest.Size {
		q, err := c.AuditConsistency(ctx, size, latest.Size)
		if err != nil {
			return fmt.Errorf("consistency proof from %d to %d entries: %w", size, latest.Size, err)
		}
		p.Hashes = q.Hashes
	}
	return audit.CheckConsistency(v, p)
}

func parseVerifier(vkey string) (*audit.Log, ed25519.PublicKey, error) {
	_, pub, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("platform key: %w", err)
	}
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
