package audit

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"testing"
)

// FuzzCertificatePayload reaches what FuzzVerifyCertificate cannot: the parsing of a
// payload that carries a valid signature (a certificate signed by a platform key that was
// misused, or by a buggy signer). Whatever the payload, verification never panics, and it
// accepts only an in-toto statement of Veil provenance with one subject whose digest is the
// output's.
func FuzzCertificatePayload(f *testing.F) {
	k := testKey(f, "veil.test", 2)
	env, err := SignCertificate(k, "j-1.csv", testOutput, map[string]any{"job": "j-1"})
	if err != nil {
		f.Fatal(err)
	}
	var e Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		f.Fatal(err)
	}
	f.Add(e.Payload, testOutput)
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"https://veil.dev/provenance/v1","predicate":{}}`), []byte("x"))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"00"}},{"name":"b","digest":{}}],"predicateType":"https://veil.dev/provenance/v1","predicate":[]}`), []byte{})
	f.Add([]byte(`{"_type":1}`), []byte{})
	f.Fuzz(func(t *testing.T, payload, output []byte) {
		env, err := json.Marshal(Envelope{PayloadType: PayloadType, Payload: payload,
			Signatures: []Signature{{KeyID: KeyID(k.pub), Sig: ed25519.Sign(k.priv, pae(PayloadType, payload))}}})
		if err != nil {
			t.Fatal(err)
		}
		st, err := VerifyCertificate(k.PublicKey(), env, output)
		if err != nil {
			return
		}
		sum := sha256.Sum256(output)
		if st.Type != StatementType || st.PredicateType != PredicateType || len(st.Subject) != 1 ||
			st.Subject[0].Digest["sha256"] != hex.EncodeToString(sum[:]) || len(st.Predicate) == 0 || st.Predicate[0] != '{' {
			t.Fatalf("accepted %q for output %q: %+v", payload, output, st)
		}
	})
}
