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
