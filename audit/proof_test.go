package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

func TestProveCheckProof(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{1, 2, 5, 16, 33} {
		l, k, m := newTestLog(t, n)
		v, _, err := ParseVerifierKey(k.VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		for i := range int64(n) {
			p, err := l.Prove(ctx, m, i)
			if err != nil {
				t.Fatalf("n=%d: Prove(%d): %v", n, i, err)
			}
			if p.Index != i || !bytes.Equal(p.Record, m.records[i]) {
				t.Fatalf("n=%d: Prove(%d) proves record %d", n, i, p.Index)
			}
			// Through JSON, as the daemon serves it and the CLI reads it.
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var q Proof
			if err := json.Unmarshal(b, &q); err != nil {
				t.Fatal(err)
			}
			if err := CheckProof(v, &q); err != nil {
				t.Fatalf("n=%d: CheckProof(%d): %v", n, i, err)
			}
			if _, err := DecodeEntry(q.Record); err != nil {
				t.Fatalf("proved record does not decode: %v", err)
			}
		}
		for _, i := range []int64{-1, int64(n)} {
			if _, err := l.Prove(ctx, m, i); !errors.Is(err, ErrNotFound) {
				t.Errorf("n=%d: Prove(%d) err = %v, want ErrNotFound", n, i, err)
			}
		}
	}
	if _, err := NewLog("veil.test", testKey(t, "veil.test", 1)).Prove(ctx, &memStore{}, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("Prove on an empty log: %v", err)
	}
}

func TestCheckProofRejects(t *testing.T) {
	ctx := context.Background()
	l, k, m := newTestLog(t, 21)
	good, err := l.Prove(ctx, m, 6)
	if err != nil {
		t.Fatal(err)
	}
	other := testKey(t, "veil.test", 99)
	cases := []struct {
		name   string
		change func(p *Proof)
		v      *Key
		want   error
	}{
		{"good", func(p *Proof) {}, k, nil},
		{"record byte changed", func(p *Proof) { p.Record[10] ^= 1 }, k, ErrTampered},
		{"another record", func(p *Proof) { p.Record = m.records[7] }, k, ErrTampered},
		{"index changed", func(p *Proof) { p.Index = 7 }, k, ErrTampered},
		{"index out of range", func(p *Proof) { p.Index = 21 }, k, ErrInvalid},
		{"negative index", func(p *Proof) { p.Index = -1 }, k, ErrInvalid},
		{"hash changed", func(p *Proof) { p.Hashes[1][5] ^= 1 }, k, ErrTampered},
		{"hash missing", func(p *Proof) { p.Hashes = p.Hashes[:len(p.Hashes)-1] }, k, ErrTampered},
		{"hash added", func(p *Proof) { p.Hashes = append(p.Hashes, tlog.Hash{}) }, k, ErrTampered},
		{"too many hashes", func(p *Proof) { p.Hashes = make([]tlog.Hash, 65) }, k, ErrInvalid},
		{"older checkpoint", func(p *Proof) { p.Checkpoint = m.cps[10].Note }, k, ErrTampered},
		{"checkpoint text changed", func(p *Proof) { p.Checkpoint = bytes.Replace(p.Checkpoint, []byte("\n21\n"), []byte("\n22\n"), 1) }, k, ErrTampered},
		{"checkpoint not a note", func(p *Proof) { p.Checkpoint = []byte("veil.test\n21\n") }, k, ErrInvalid},
		{"no checkpoint", func(p *Proof) { p.Checkpoint = nil }, k, ErrInvalid},
		{"another key", func(p *Proof) {}, other, ErrTampered},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &Proof{Index: good.Index, Record: bytes.Clone(good.Record), Checkpoint: bytes.Clone(good.Checkpoint),
				Hashes: append([]tlog.Hash(nil), good.Hashes...)}
			tc.change(p)
			err := CheckProof(tc.v.Verifier(), p)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("CheckProof err = %v, want %v", err, tc.want)
			}
		})
	}
	if err := CheckProof(k.Verifier(), nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil proof: %v", err)
	}
	if err := CheckProof(nil, good); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil verifier: %v", err)
	}
}

func TestProveOnTamperedLog(t *testing.T) {
	ctx := context.Background()
	l, _, orig := newTestLog(t, 12)
	m := orig.clone()
	m.records[4][15] ^= 1
	m.rehash(t)
	if _, err := l.Prove(ctx, m, 4); !errors.Is(err, ErrTampered) {
		t.Errorf("Prove of a changed record: %v, want ErrTampered", err)
	}
	m = orig.clone()
	m.records = m.records[:8]
	if _, err := l.Prove(ctx, m, 9); !errors.Is(err, ErrTampered) {
		t.Errorf("Prove of a removed record: %v, want ErrTampered", err)
	}
}

func TestConsistency(t *testing.T) {
	ctx := context.Background()
	l, k, orig := newTestLog(t, 37)
	for _, old := range []int64{1, 2, 13, 16, 36, 37} {
		p, err := l.ProveConsistency(ctx, orig, old, 0)
		if err != nil {
			t.Fatalf("ProveConsistency(%d): %v", old, err)
		}
		if err := CheckConsistency(k.Verifier(), p); err != nil {
			t.Fatalf("CheckConsistency(%d): %v", old, err)
		}
	}
	if _, err := l.ProveConsistency(ctx, orig, 0, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("ProveConsistency(0): %v", err)
	}
	p, _ := l.ProveConsistency(ctx, orig, 13, 0)
	// An auditor kept checkpoint 13; the operator rewrote record 5 and re-signed
	// everything after it... with the same key it could, but an old checkpoint kept
	// elsewhere does not match the new tree.
	m := orig.clone()
	m.records[5][12] ^= 1
	m.rehash(t)
	m.cps = nil
	l2 := NewLog("veil.test", k)
	m2 := &memStore{}
	for _, r := range m.records {
		e, err := DecodeEntry(r)
		if err != nil {
			e = testEntry(5)
			e.Actor = "forged"
		}
		if _, err := l2.Append(ctx, m2, e); err != nil {
			t.Fatal(err)
		}
	}
	p2, err := l2.ProveConsistency(ctx, m2, 13, 0)
	if err != nil {
		t.Fatal(err)
	}
	p2.Old = p.Old // the auditor's own copy of checkpoint 13
	if err := CheckConsistency(k.Verifier(), p2); !errors.Is(err, ErrTampered) {
		t.Errorf("rewritten history passes the consistency check: %v", err)
	}
	bad := *p
	bad.Hashes = append([]tlog.Hash(nil), p.Hashes...)
	bad.Hashes[0][0] ^= 1
	if err := CheckConsistency(k.Verifier(), &bad); !errors.Is(err, ErrTampered) {
		t.Errorf("tampered consistency proof: %v", err)
	}
	// A kept checkpoint larger than the log's: the log shrank.
	bad = *p
	bad.Old, bad.New = p.New, p.Old
	if err := CheckConsistency(k.Verifier(), &bad); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("swapped checkpoints: %v", err)
	}
	// Two different signed trees of one size: a fork.
	fork, err := l2.ProveConsistency(ctx, m2, 37, 37)
	if err != nil {
		t.Fatal(err)
	}
	fork.Old = orig.cps[36].Note
	if err := CheckConsistency(k.Verifier(), fork); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "forked") {
		t.Errorf("fork: %v", err)
	}
	// A stored tree that no longer matches its checkpoint proves nothing.
	m3 := orig.clone()
	m3.records[3][12] ^= 1
	m3.rehash(t)
	if _, err := l.ProveConsistency(ctx, m3, 13, 0); !errors.Is(err, ErrTampered) {
		t.Errorf("ProveConsistency on a rewritten store: %v", err)
	}
	// Consistency to an older stored checkpoint, and from a size with no stored checkpoint.
	m4 := orig.clone()
	m4.cps = []Checkpoint{m4.cps[4], m4.cps[20]}
	p4, err := l.ProveConsistency(ctx, m4, 9, 21)
	if err != nil || p4.Old != nil {
		t.Fatalf("ProveConsistency(9, 21) without a stored checkpoint of 9: %+v, %v", p4, err)
	}
	p4.Old = orig.cps[8].Note
	if err := CheckConsistency(k.Verifier(), p4); err != nil {
		t.Errorf("proof from the kept checkpoint 9 to 21: %v", err)
	}
	if _, err := l.ProveConsistency(ctx, m4, 22, 21); !errors.Is(err, ErrInvalid) {
		t.Errorf("ProveConsistency from beyond the new checkpoint: %v", err)
	}
	if _, err := l.ProveConsistency(ctx, m4, 1, 30); !errors.Is(err, ErrNotFound) {
		t.Errorf("ProveConsistency to a size with no checkpoint: %v", err)
	}
}
