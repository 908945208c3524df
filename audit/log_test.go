package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestAppendVerify(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{0, 1, 2, 3, 7, 8, 64, 100, 2*verifyBatch + 77} {
		l, k, m := newTestLog(t, n)
		rep, err := l.Verify(ctx, m)
		if err != nil {
			t.Fatalf("n=%d: Verify: %v", n, err)
		}
		root, err := tlog.TreeHash(int64(n), tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			return m.ReadHashes(ctx, idx)
		}))
		if err != nil {
			t.Fatal(err)
		}
		if rep.Records != int64(n) || rep.Checkpoints != int64(n) || rep.Root != root.String() {
			t.Errorf("n=%d: report %+v, want %d records and checkpoints, root %s", n, rep, n, root)
		}
		// An auditor holding only the published key gets the same answer.
		rep2, err := NewVerifyingLog(k.VerifierKey()).Verify(ctx, m)
		if err != nil || *rep2 != *rep {
			t.Errorf("n=%d: verifying log: %+v, %v", n, rep2, err)
		}
	}
}

func TestCheckpointFormat(t *testing.T) {
	_, k, m := newTestLog(t, 3)
	cp := m.cps[2]
	n, err := note.Open(cp.Note, note.VerifierList(k.Verifier()))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(n.Text, "\n")
	root, _ := tlog.TreeHash(3, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		return m.ReadHashes(context.Background(), idx)
	}))
	if len(lines) != 4 || lines[0] != "veil.test" || lines[1] != "3" || lines[2] != root.String() || lines[3] != "" {
		t.Errorf("checkpoint text %q, want origin, size and root lines", n.Text)
	}
	if !bytes.HasPrefix(cp.Note[len(n.Text):], []byte("\n— veil.test ")) {
		t.Errorf("checkpoint signature block: %q", cp.Note[len(n.Text):])
	}
}

// sign signs a checkpoint text with k (to forge checkpoints in tests).
func sign(t *testing.T, k *Key, text string) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: text}, k.Signer())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVerifyDetectsTampering(t *testing.T) {
	const n = 40
	ctx := context.Background()
	l, k, orig := newTestLog(t, n)
	other := testKey(t, "veil.test", 99)

	cases := []struct {
		name   string
		tamper func(t *testing.T, m *memStore)
		index  int64
		says   string
	}{
		{"change one byte", func(t *testing.T, m *memStore) {
			m.records[17][20] ^= 1
		}, 17, "changed"},
		{"change one byte, rewrite hashes", func(t *testing.T, m *memStore) {
			m.records[17][20] ^= 1
			m.rehash(t)
		}, 17, "does not match the checkpoint"},
		{"change the last record", func(t *testing.T, m *memStore) {
			m.records[n-1] = bytes.Replace(m.records[n-1], []byte("acme"), []byte("evil"), 1)
		}, n - 1, "changed"},
		{"delete a record (shift)", func(t *testing.T, m *memStore) {
			m.records = append(m.records[:9], m.records[10:]...)
		}, 9, "changed, removed or reordered"},
		{"delete a record (shift), rewrite hashes", func(t *testing.T, m *memStore) {
			m.records = append(m.records[:9], m.records[10:]...)
			m.rehash(t)
		}, 9, "does not match the checkpoint"},
		{"delete the first record", func(t *testing.T, m *memStore) {
			m.records = m.records[1:]
			m.rehash(t)
		}, 0, "does not match the checkpoint"},
		{"reorder two records", func(t *testing.T, m *memStore) {
			m.records[12], m.records[30] = m.records[30], m.records[12]
		}, 12, "reordered"},
		{"reorder two records, rewrite hashes", func(t *testing.T, m *memStore) {
			m.records[12], m.records[30] = m.records[30], m.records[12]
			m.rehash(t)
		}, 12, "reordered"},
		{"truncate the tail", func(t *testing.T, m *memStore) {
			m.records = m.records[:33]
			m.hashes = m.hashes[:tlog.StoredHashIndex(0, 33)]
		}, 33, "truncated"},
		{"truncate the tail, keep its hashes", func(t *testing.T, m *memStore) {
			m.records = m.records[:33]
		}, 33, "truncated"},
		{"truncate everything", func(t *testing.T, m *memStore) {
			m.records, m.hashes = nil, nil
		}, 0, "truncated"},
		{"tamper a stored record hash", func(t *testing.T, m *memStore) {
			m.hashes[tlog.StoredHashIndex(0, 21)][3] ^= 0x80
		}, 21, "changed"},
		{"tamper a stored interior hash", func(t *testing.T, m *memStore) {
			// Record 23 completes subtrees of 2, 4 and 8 records: it stores 4 hashes.
			m.hashes[tlog.StoredHashIndex(0, 23)+2][0] ^= 1
		}, 23, "stored tree hash (level 2)"},
		{"delete stored hashes", func(t *testing.T, m *memStore) {
			m.hashes = m.hashes[:tlog.StoredHashIndex(0, 35)]
		}, 35, "read its stored hashes"},
		{"tamper a checkpoint signature", func(t *testing.T, m *memStore) {
			note := m.cps[25].Note
			i := bytes.LastIndexByte(note, ' ')
			sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(note[i+1:])))
			if err != nil {
				t.Fatal(err)
			}
			sig[len(sig)-1] ^= 1
			m.cps[25].Note = append(note[:i+1:i+1], base64.StdEncoding.EncodeToString(sig)+"\n"...)
		}, 25, "signature"},
		{"tamper a checkpoint root", func(t *testing.T, m *memStore) {
			m.cps[25].Note = bytes.Replace(m.cps[25].Note, []byte("\n26\n"), []byte("\n26\nX"), 1)
		}, 25, "does not verify"},
		{"checkpoint signed by another key", func(t *testing.T, m *memStore) {
			text := string(m.cps[25].Note[:bytes.Index(m.cps[25].Note, []byte("\n\n"))+1])
			m.cps[25].Note = sign(t, other, text)
		}, 25, "not signed by key veil.test"},
		{"checkpoint of another log", func(t *testing.T, m *memStore) {
			text := string(m.cps[25].Note[:bytes.Index(m.cps[25].Note, []byte("\n\n"))+1])
			m.cps[25].Note = sign(t, k, strings.Replace(text, "veil.test", "other.log", 1))
		}, 25, "for log"},
		{"checkpoint stored under another size", func(t *testing.T, m *memStore) {
			m.cps[25].Note = m.cps[24].Note
		}, 25, "signed for size 25"},
		{"checkpoints out of order", func(t *testing.T, m *memStore) {
			m.cps[5], m.cps[6] = m.cps[6], m.cps[5]
		}, 5, "out of order"},
		{"pending record changed", func(t *testing.T, m *memStore) {
			appendUnsigned(t, m, testEntry(1000))
			m.records[n][20] ^= 1
		}, n, "changed"},
		{"forged record and checkpoint by another key", func(t *testing.T, m *memStore) {
			l2 := NewLog("veil.test", other)
			if _, err := l2.Append(ctx, m, testEntry(1000)); err != nil {
				t.Fatal(err)
			}
		}, n, "not signed by key veil.test"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := orig.clone()
			tc.tamper(t, m)
			_, err := l.Verify(ctx, m)
			if err == nil {
				t.Fatal("tampered log verifies")
			}
			t.Log(err)
			var ve *VerifyError
			switch {
			case errors.As(err, &ve):
				if !errors.Is(err, ErrTampered) {
					t.Errorf("errors.Is(%v, ErrTampered) = false", err)
				}
				if ve.Index != tc.index {
					t.Errorf("error names record %d, want %d: %v", ve.Index, tc.index, err)
				}
			case !strings.Contains(err.Error(), "record "+strconv.FormatInt(tc.index, 10)+":"):
				t.Errorf("error %q does not name record %d", err, tc.index)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
			// The log stays unverifiable for an auditor with only the public key.
			if _, err := NewVerifyingLog(k.VerifierKey()).Verify(ctx, m); err == nil {
				t.Error("tampered log verifies with the verifying log")
			}
		})
	}
}

// TestVerifyAcrossBatches tampers past the first read batch.
func TestVerifyAcrossBatches(t *testing.T) {
	ctx := context.Background()
	l, _, orig := newTestLog(t, verifyBatch+300)
	for _, idx := range []int64{verifyBatch - 1, verifyBatch, verifyBatch + 299} {
		m := orig.clone()
		m.records[idx][30] ^= 1
		m.rehash(t)
		_, err := l.Verify(ctx, m)
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Index != idx {
			t.Errorf("changed record %d: %v", idx, err)
		}
	}
}

func TestVerifyEmptyAndMisuse(t *testing.T) {
	ctx := context.Background()
	k := testKey(t, "veil.test", 1)
	rep, err := NewLog("veil.test", k).Verify(ctx, &memStore{})
	if err != nil || rep.Records != 0 || rep.Root != "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=" {
		t.Errorf("empty log: %+v, %v", rep, err)
	}
	if _, err := NewVerifyingLog("not a key").Verify(ctx, &memStore{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad verifier key: %v", err)
	}
	if _, err := NewVerifyingLog(k.VerifierKey()).Append(ctx, &memStore{}, testEntry(0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("append to a verifying log: %v", err)
	}
	if _, err := NewLog("", k).Append(ctx, &memStore{}, testEntry(0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("append with empty origin: %v", err)
	}
	if _, err := NewLog("a\nb", k).Append(ctx, &memStore{}, testEntry(0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("append with two-line origin: %v", err)
	}
	if _, err := NewLog("veil.test", nil).Append(ctx, &memStore{}, testEntry(0)); !errors.Is(err, ErrInvalid) {
		t.Errorf("append without key: %v", err)
	}
}

func TestAppendRejectsBadEntries(t *testing.T) {
	l, _, m := newTestLog(t, 2)
	big := testEntry(0)
	big.Details = map[string]string{"blob": strings.Repeat("x", MaxEntrySize)}
	noTime := testEntry(0)
	noTime.Time = time.Time{}
	noAction := testEntry(0)
	noAction.Action = ""
	badUTF8 := testEntry(0)
	badUTF8.Details = map[string]string{"k": "\xff"}
	for name, e := range map[string]Entry{"too big": big, "no time": noTime, "no action": noAction, "bad utf-8": badUTF8} {
		if _, err := l.Append(context.Background(), m, e); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Append err = %v, want ErrInvalid", name, err)
		}
	}
	if len(m.records) != 2 || len(m.cps) != 2 {
		t.Errorf("refused entries were stored: %d records, %d checkpoints", len(m.records), len(m.cps))
	}
}

func TestEntryEncoding(t *testing.T) {
	e := testEntry(3)
	data, err := encodeEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2025-03-01T09:00:03.123456789Z","actor":"p-3","role":"vendor","tenant":"acme","action":"job.submit","object":"job/j-3","details":{"epsilon":"0.5","grant":"g-1"}}`
	if string(data) != want {
		t.Errorf("encoding\n got %s\nwant %s", data, want)
	}
	// The same entry in another time zone, with a monotonic reading, encodes the same.
	e2 := e
	e2.Time = e.Time.In(time.FixedZone("CST", 8*3600))
	e2.Details = map[string]string{"grant": "g-1", "epsilon": "0.5"}
	if data2, _ := encodeEntry(e2); !bytes.Equal(data, data2) {
		t.Errorf("encoding is not canonical: %s vs %s", data, data2)
	}
	now := time.Now()
	e3 := Entry{Time: now, Action: "a"}
	d3, _ := encodeEntry(e3)
	got, err := DecodeEntry(d3)
	if err != nil || !got.Time.Equal(now) {
		t.Errorf("round trip of now: %v %v", got.Time, err)
	}

	got, err = DecodeEntry(data)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Time.Equal(e.Time) || got.Actor != e.Actor || got.Object != e.Object || got.Details["grant"] != "g-1" || got.Tenant != "acme" {
		t.Errorf("DecodeEntry = %+v, want %+v", got, e)
	}
}

func TestDecodeEntryRejects(t *testing.T) {
	for _, in := range []string{
		``, `null`, `{}`, `[]`, `"x"`,
		`{"time":"2025-03-01T09:00:03Z"}`,
		`{"time":"2025-03-01T09:00:03Z","action":"a","extra":1}`,
		`{"time":"2025-03-01T09:00:03Z","action":"a"} {}`,
		`{"time":"2025-03-01T09:00:03Z","action":"a"}]`,
		`{"time":"yesterday","action":"a"}`,
		`{"time":"2025-03-01T09:00:03Z","action":"a","details":{"k":1}}`,
		`{"time":"2025-03-01T09:00:03Z","action":"a","details":"` + strings.Repeat("x", MaxEntrySize) + `"}`,
	} {
		if _, err := DecodeEntry([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeEntry(%.60q) err = %v, want ErrInvalid", in, err)
		}
	}
	if _, err := DecodeEntry([]byte(" {\"time\":\"2025-03-01T09:00:03Z\",\"action\":\"a\"}\n")); err != nil {
		t.Errorf("DecodeEntry with surrounding space: %v", err)
	}
}

// appendUnsigned appends e as a Signer's Log does: record and hashes, no checkpoint.
func appendUnsigned(t *testing.T, m *memStore, e Entry) {
	t.Helper()
	l := &Log{origin: "veil.test", appendOnly: true}
	if _, err := l.Append(context.Background(), m, e); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyPending: records committed after the latest checkpoint are checked against
// their hashes and reported as pending, not as damage (a Signer signs after the commit).
func TestVerifyPending(t *testing.T) {
	ctx := context.Background()
	l, _, m := newTestLog(t, 10)
	for i := range 3 {
		appendUnsigned(t, m, testEntry(100+i))
	}
	rep, err := l.Verify(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 13 || rep.Size != 10 || rep.Pending != 3 {
		t.Errorf("report %+v, want 13 records, checkpoint size 10, 3 pending", rep)
	}
	root, _ := tlog.TreeHash(10, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return m.ReadHashes(ctx, idx) }))
	if rep.Root != root.String() {
		t.Errorf("root %s, want the root of the checkpointed 10 records %s", rep.Root, root)
	}
}
