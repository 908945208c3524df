package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
)

// Fuzz tests for everything that parses untrusted input: certificates, records and
// proofs may all come from a copy of the data the verifier does not control.

func FuzzVerifyCertificate(f *testing.F) {
	k := testKey(f, "veil.test", 1)
	env, err := SignCertificate(k, "j-1.csv", testOutput, map[string]any{"job": "j-1", "epsilon": 0.5})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env, testOutput)
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AAAA"}]}`), []byte{})
	f.Add([]byte(`{}`), []byte("x"))
	f.Fuzz(func(t *testing.T, envelope, output []byte) {
		st, err := VerifyCertificate(k.PublicKey(), envelope, output)
		if err != nil {
			return
		}
		// Anything accepted must carry our signature over what the statement says.
		if st.Type != StatementType || st.PredicateType != PredicateType || len(st.Subject) != 1 {
			t.Fatalf("accepted statement %+v", st)
		}
		if !bytes.Equal(output, testOutput) {
			t.Fatalf("certificate accepted for other output %q", output)
		}
	})
}

func FuzzDecodeEntry(f *testing.F) {
	for i := range 3 {
		data, err := encodeEntry(testEntry(i))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"time":"2025-03-01T09:00:03Z","action":"a","details":{"k":"\u00ff"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEntry(data)
		if err != nil {
			return
		}
		// A decoded entry re-encodes, and that encoding decodes to the same entry.
		again, err := encodeEntry(e)
		if err != nil {
			return // e.g. a record near the size limit that grows when re-encoded
		}
		e2, err := DecodeEntry(again)
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if again2, _ := encodeEntry(e2); !bytes.Equal(again, again2) {
			t.Fatalf("encoding is not stable: %s vs %s", again, again2)
		}
	})
}

func FuzzCheckProof(f *testing.F) {
	l, k, m := newTestLog(f, 13)
	for _, i := range []int64{0, 6, 12} {
		p, err := l.Prove(context.Background(), m, i)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := json.Marshal(p)
		f.Add(b)
	}
	f.Add([]byte(`{"index":0,"record":"","checkpoint":"","hashes":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Proof
		if json.Unmarshal(data, &p) != nil {
			return
		}
		if err := CheckProof(k.Verifier(), &p); err != nil {
			return
		}
		// Only genuine records can be proved.
		if p.Index < 0 || p.Index >= int64(len(m.records)) || !bytes.Equal(p.Record, m.records[p.Index]) {
			t.Fatalf("proof of a record the log does not hold at %d accepted", p.Index)
		}
	})
}

// FuzzCheckConsistency: a consistency proof comes from a daemon the auditor does not trust.
// Only a proof between two genuine trees of the log can pass.
func FuzzCheckConsistency(f *testing.F) {
	l, k, m := newTestLog(f, 21)
	for _, from := range []int64{1, 7, 16, 21} {
		p, err := l.ProveConsistency(context.Background(), m, from, 0)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := json.Marshal(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p ConsistencyProof
		if json.Unmarshal(data, &p) != nil || CheckConsistency(k.Verifier(), &p) != nil {
			return
		}
		// Both checkpoints are the log's own (signed; the key is not the fuzzer's).
		found := 0
		for _, cp := range m.cps {
			if bytes.Equal(cp.Note, p.Old) || bytes.Equal(cp.Note, p.New) {
				found++
			}
		}
		if found == 0 || found == 1 && !bytes.Equal(p.Old, p.New) {
			t.Fatalf("consistency accepted for checkpoints the log did not sign")
		}
	})
}

// FuzzSplitNotes: an archive file is read back from a place others may write.
func FuzzSplitNotes(f *testing.F) {
	_, _, m := newTestLog(f, 4)
	all := bytes.Join([][]byte{m.cps[0].Note, m.cps[1].Note, m.cps[2].Note}, nil)
	f.Add(all, true)
	f.Add(all[17:], false)
	f.Add([]byte("a\n\n— x y\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, atStart bool) {
		notes, _ := splitNotes(data, atStart)
		for _, n := range notes {
			if !bytes.Contains(data, n) || !bytes.Contains(n, []byte("\n\n— ")) || n[len(n)-1] != '\n' {
				t.Fatalf("split out %q", n)
			}
		}
	})
}

// FuzzCosignatureVerifier: witness keys and cosigned checkpoints come from other parties.
func FuzzCosignatureVerifier(f *testing.F) {
	c := testCosigner(f, 3)
	k := testKey(f, "veil.test", 1)
	_, _, m := newTestLog(f, 2)
	w, _ := OpenWitness(c, k.Verifier(), f.TempDir()+"/state", true)
	cosigned, err := w.Cosign(context.Background(), m.cps[1].Note, proverOf(m))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.VerifierKey(), cosigned)
	f.Add("x+00000000+BA==", []byte("x\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, vkey string, msg []byte) {
		v, err := NewCosignatureVerifier(vkey)
		if err != nil {
			return
		}
		if _, err := CosignedAt(k.Verifier(), v, msg); err == nil && v.KeyHash() != c.KeyHash() {
			t.Fatalf("a checkpoint is cosigned by a key that never signed")
		}
	})
}
