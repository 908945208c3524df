package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// memStore is a slice-backed Writer: records, stored hashes (by stored-hash index) and
// checkpoints, as the SQLite store keeps them in three tables. Tests tamper with its
// slices directly, as someone with write access to the database file would.
type memStore struct {
	records [][]byte
	hashes  []tlog.Hash
	cps     []Checkpoint
}

var _ Writer = (*memStore)(nil)

func (m *memStore) Size(context.Context) (int64, error) { return int64(len(m.records)), nil }

func (m *memStore) ReadHashes(_ context.Context, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memStore) ReadRecords(_ context.Context, from, to int64) ([][]byte, error) {
	to = min(to, int64(len(m.records)))
	if from >= to {
		return nil, nil
	}
	return m.records[from:to], nil
}

func (m *memStore) Checkpoints(context.Context) ([]Checkpoint, error) { return m.cps, nil }

func (m *memStore) AppendRecord(_ context.Context, index int64, data []byte, hashes []tlog.Hash) error {
	if index != int64(len(m.records)) || tlog.StoredHashIndex(0, index) != int64(len(m.hashes)) {
		return fmt.Errorf("append at %d to a store of %d records and %d hashes", index, len(m.records), len(m.hashes))
	}
	m.records = append(m.records, append([]byte(nil), data...))
	m.hashes = append(m.hashes, hashes...)
	return nil
}

func (m *memStore) AddCheckpoint(_ context.Context, size int64, note []byte) error {
	m.cps = append(m.cps, Checkpoint{Size: size, Note: append([]byte(nil), note...)})
	return nil
}

// clone returns a deep copy, so each test case tampers with its own log.
func (m *memStore) clone() *memStore {
	c := &memStore{hashes: append([]tlog.Hash(nil), m.hashes...)}
	for _, r := range m.records {
		c.records = append(c.records, append([]byte(nil), r...))
	}
	for _, cp := range m.cps {
		c.cps = append(c.cps, Checkpoint{Size: cp.Size, Note: append([]byte(nil), cp.Note...)})
	}
	return c
}

// rehash recomputes every stored hash from the records, as a careful attacker would after
// changing them.
func (m *memStore) rehash(t *testing.T) {
	t.Helper()
	m.hashes = nil
	for i, r := range m.records {
		hs, err := tlog.StoredHashes(int64(i), r, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			return m.ReadHashes(context.Background(), idx)
		}))
		if err != nil {
			t.Fatal(err)
		}
		m.hashes = append(m.hashes, hs...)
	}
}

// testKey returns a deterministic key; seed varies it.
func testKey(t testing.TB, name string, seed byte) *Key {
	t.Helper()
	s := make([]byte, ed25519.SeedSize)
	for i := range s {
		s[i] = seed + byte(i)
	}
	k, err := NewKey(name, ed25519.NewKeyFromSeed(s))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 123456789, time.UTC)

func testEntry(i int) Entry {
	return Entry{
		Time:    t0.Add(time.Duration(i) * time.Second),
		Actor:   fmt.Sprintf("p-%d", i%7),
		Role:    "vendor",
		Tenant:  "acme",
		Action:  "job.submit",
		Object:  fmt.Sprintf("job/j-%d", i),
		Details: map[string]string{"grant": "g-1", "epsilon": "0.5"},
	}
}

// newTestLog appends n entries to a fresh store.
func newTestLog(t testing.TB, n int) (*Log, *Key, *memStore) {
	t.Helper()
	k := testKey(t, "veil.test", 1)
	l := NewLog("veil.test", k)
	m := &memStore{}
	for i := range n {
		idx, err := l.Append(context.Background(), m, testEntry(i))
		if err != nil {
			t.Fatal(err)
		}
		if idx != int64(i) {
			t.Fatalf("Append returned index %d, want %d", idx, i)
		}
	}
	return l, k, m
}
