package client

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
)

// VerifiedHead is where an incremental verification ended: the signed checkpoint it
// verified last and, computed here from the records (never taken from the daemon), the
// hashes of the complete subtrees that make up the tree of that size. The next
// VerifyAuditIncrement starts from it and reads only what the log added since.
type VerifiedHead struct {
	Note []byte    // the latest checkpoint verified, as signed
	Size int64     // its tree size
	Root tlog.Hash // its root

	// frontier holds the roots of the complete subtrees covering entries [0, Size),
	// largest (leftmost) first; heights[i] is the height of frontier[i].
	frontier []tlog.Hash
	heights  []int
}

// push appends a record's leaf to the frontier.
func (h *VerifiedHead) push(rec []byte) {
	h.frontier = append(h.frontier, tlog.RecordHash(rec))
	h.heights = append(h.heights, 0)
	for n := len(h.frontier); n >= 2 && h.heights[n-1] == h.heights[n-2]; n = len(h.frontier) {
		h.frontier[n-2] = tlog.NodeHash(h.frontier[n-2], h.frontier[n-1])
		h.heights[n-2]++
		h.frontier, h.heights = h.frontier[:n-1], h.heights[:n-1]
	}
	h.Size++
}

// root is the RFC 6962 tree hash of the entries pushed so far.
func (h *VerifiedHead) root() tlog.Hash {
	if len(h.frontier) == 0 {
		return tlog.Hash{} // not used: an empty log has no root to compare
	}
	r := h.frontier[len(h.frontier)-1]
	for i := len(h.frontier) - 2; i >= 0; i-- {
		r = tlog.NodeHash(h.frontier[i], r)
	}
	return r
}

func (h *VerifiedHead) clone() *VerifiedHead {
	c := *h
	c.frontier = append([]tlog.Hash(nil), h.frontier...)
	c.heights = append([]int(nil), h.heights...)
	return &c
}

// VerifyAuditIncrement verifies what the log added since head (nil: the whole log) against
// the platform's verifier key vkey, reading only the new records and checkpoints: the
// latest checkpoint must extend head (the daemon's consistency proof, checked against
// head's note; no smaller tree, no other tree of the same size), every checkpoint signed
// since must verify, and the new records, hashed here onto head's subtrees, must give each
// of their roots. It returns the new head and the new records, each of which is verified.
//
// Entries before head are not read again, so a change made to them after head was
// verified is caught by a full VerifyAudit or VerifyAuditSince, not here. A failure is
// audit.ErrTampered, saying what is wrong.
func (c *Client) VerifyAuditIncrement(ctx context.Context, vkey string, head *VerifiedHead) (*VerifiedHead, [][]byte, error) {
	v, _, err := audit.ParseVerifierKey(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("platform key: %w", err)
	}
	latest, err := c.AuditCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("latest checkpoint: %w", err)
	}
	size, root, err := openAt(v, latest)
	if err != nil {
		return nil, nil, err
	}
	next := &VerifiedHead{}
	if head != nil {
		next = head.clone()
		if size < head.Size {
			return nil, nil, fmt.Errorf("%w: the latest checkpoint covers %d entries, fewer than the %d verified before: the log was truncated or replaced", audit.ErrTampered, size, head.Size)
		}
		if head.Size >= 1 {
			// The daemon's proof that the latest tree extends the one verified last,
			// checked against the verified note (a fork of the same size fails too).
			if err := c.CheckKept(ctx, v, Kept{Name: fmt.Sprintf("verified at size %d", head.Size), Note: head.Note}, latest); err != nil {
				return nil, nil, err
			}
		}
	}
	// The checkpoints signed since head, in order, up to the latest.
	var cps []audit.Checkpoint
	for from := next.Size + 1; from <= size; {
		page, err := c.AuditCheckpoints(ctx, from, checkpointsPage)
		if err != nil {
			return nil, nil, err
		}
		for _, cp := range page.Checkpoints {
			if cp.Size < from || len(cps) > 0 && cp.Size <= cps[len(cps)-1].Size {
				return nil, nil, fmt.Errorf("%w: the checkpoint for size %d is out of order or repeated", audit.ErrTampered, cp.Size)
			}
			if cp.Size <= size {
				cps = append(cps, audit.Checkpoint{Size: cp.Size, Note: cp.Note})
			}
		}
		if page.Next == 0 || page.Next <= from {
			break
		}
		from = page.Next
	}
	if size > next.Size && (len(cps) == 0 || cps[len(cps)-1].Size != size) {
		return nil, nil, fmt.Errorf("%w: the latest checkpoint (size %d) is not among the stored checkpoints", audit.ErrTampered, size)
	}
	// The new records, hashed onto the verified subtrees.
	var added [][]byte
	for next.Size < size {
		page, err := c.AuditRecords(ctx, next.Size, min(10000, size-next.Size), false)
		if err != nil {
			return nil, nil, err
		}
		if page.From != next.Size || len(page.Records) == 0 {
			return nil, nil, fmt.Errorf("%w: the log serves no entry %d, but a signed checkpoint covers %d entries: entries were removed (truncated)", audit.ErrTampered, next.Size, size)
		}
		for _, rec := range page.Records[:min(int64(len(page.Records)), size-next.Size)] {
			next.push(rec)
			added = append(added, rec)
			for len(cps) > 0 && cps[0].Size == next.Size {
				_, want, err := openAt(v, cps[0])
				if err != nil {
					return nil, nil, err
				}
				if next.root() != want {
					return nil, nil, fmt.Errorf("%w: entries %d..%d, hashed here, do not give the root of the checkpoint for size %d: they were changed", audit.ErrTampered, max(head.size(), 0), next.Size-1, next.Size)
				}
				cps = cps[1:]
			}
		}
	}
	if size > 0 && next.root() != root {
		return nil, nil, fmt.Errorf("%w: the log's %d entries do not give the latest checkpoint's root", audit.ErrTampered, size)
	}
	next.Note, next.Root = latest.Note, root
	return next, added, nil
}

func (h *VerifiedHead) size() int64 {
	if h == nil {
		return 0
	}
	return h.Size
}

// openAt opens a checkpoint and checks that it is signed for the size it is stored at.
func openAt(v note.Verifier, cp audit.Checkpoint) (int64, tlog.Hash, error) {
	origin, size, root, err := audit.OpenCheckpoint(v, cp.Note)
	if err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("the checkpoint for size %d does not verify: %w", cp.Size, err)
	}
	if origin != v.Name() {
		return 0, tlog.Hash{}, fmt.Errorf("%w: the checkpoint for size %d is for log %.100q, not %.100q", audit.ErrTampered, cp.Size, origin, v.Name())
	}
	if size != cp.Size {
		return 0, tlog.Hash{}, fmt.Errorf("%w: the checkpoint stored for size %d is signed for size %d", audit.ErrTampered, cp.Size, size)
	}
	return size, root, nil
}
