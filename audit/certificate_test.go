package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

type testProvenance struct {
	Job      string   `json:"job"`
	Query    string   `json:"query"`
	Epsilon  float64  `json:"epsilon"`
	Datasets []string `json:"datasets"`
}

var testOutput = []byte("district,count\nDongcheng,1021\nXicheng,988\n")

func TestPAE(t *testing.T) {
	// The example of the DSSE protocol spec.
	got := pae("http://example.com/HelloWorld", []byte("hello world"))
	if want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"; string(got) != want {
		t.Errorf("pae = %q, want %q", got, want)
	}
}

func TestCertificate(t *testing.T) {
	k := testKey(t, "veil.test", 1)
	prov := testProvenance{Job: "j-1", Query: "SELECT district, COUNT(*) FROM residents GROUP BY district", Epsilon: 0.5, Datasets: []string{"residents"}}
	env, err := SignCertificate(k, "j-1.csv", testOutput, prov)
	if err != nil {
		t.Fatal(err)
	}
	st, err := VerifyCertificate(k.PublicKey(), env, testOutput)
	if err != nil {
		t.Fatalf("VerifyCertificate: %v", err)
	}
	sum := sha256.Sum256(testOutput)
	if st.Type != StatementType || st.PredicateType != PredicateType || len(st.Subject) != 1 ||
		st.Subject[0].Name != "j-1.csv" || st.Subject[0].Digest["sha256"] != hex.EncodeToString(sum[:]) {
		t.Errorf("statement %+v", st)
	}
	var got testProvenance
	if err := json.Unmarshal(st.Predicate, &got); err != nil || got.Query != prov.Query || got.Epsilon != 0.5 {
		t.Errorf("predicate %s: %v", st.Predicate, err)
	}

	// The envelope has exactly DSSE's shape.
	var raw map[string]any
	if err := json.Unmarshal(env, &raw); err != nil {
		t.Fatal(err)
	}
	sigs, _ := raw["signatures"].([]any)
	if raw["payloadType"] != "application/vnd.in-toto+json" || len(sigs) != 1 || len(raw) != 3 {
		t.Errorf("envelope %s", env)
	}
	if s := sigs[0].(map[string]any); s["keyid"] != KeyID(k.PublicKey()) || s["sig"] == "" {
		t.Errorf("signature %v", s)
	}

	other := testKey(t, "veil.test", 99)
	changePayload := func(f func(st map[string]any)) []byte {
		var e Envelope
		if err := json.Unmarshal(env, &e); err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		if err := json.Unmarshal(e.Payload, &st); err != nil {
			t.Fatal(err)
		}
		f(st)
		e.Payload, _ = json.Marshal(st)
		b, _ := json.Marshal(e)
		return b
	}
	changeEnvelope := func(f func(e *Envelope)) []byte {
		var e Envelope
		if err := json.Unmarshal(env, &e); err != nil {
			t.Fatal(err)
		}
		f(&e)
		b, _ := json.Marshal(e)
		return b
	}
	flipped := bytes.Clone(testOutput)
	flipped[20] ^= 1
	resign := func(payload string) []byte {
		return changeEnvelope(func(e *Envelope) {
			e.Payload = []byte(payload)
			e.Signatures = []Signature{{Sig: ed25519.Sign(k.priv, pae(PayloadType, e.Payload))}}
		})
	}

	cases := []struct {
		name     string
		pub      ed25519.PublicKey
		envelope []byte
		output   []byte
		want     error
		says     string
	}{
		{"ok", k.PublicKey(), env, testOutput, nil, ""},
		{"one output byte changed", k.PublicKey(), env, flipped, ErrTampered, "digest does not match"},
		{"output truncated", k.PublicKey(), env, testOutput[:len(testOutput)-1], ErrTampered, "digest does not match"},
		{"payload digest changed", k.PublicKey(), changePayload(func(st map[string]any) {
			sum := sha256.Sum256(flipped)
			st["subject"] = []any{map[string]any{"name": "j-1.csv", "digest": map[string]any{"sha256": hex.EncodeToString(sum[:])}}}
		}), flipped, ErrTampered, "signature does not verify"},
		{"payload predicate changed", k.PublicKey(), changePayload(func(st map[string]any) {
			st["predicate"].(map[string]any)["epsilon"] = 0.1
		}), testOutput, ErrTampered, "signature does not verify"},
		{"payload type changed", k.PublicKey(), changeEnvelope(func(e *Envelope) { e.PayloadType = "application/json" }), testOutput, ErrInvalid, "payload type"},
		{"another key", other.PublicKey(), env, testOutput, ErrTampered, "signature does not verify"},
		{"signed by another key", k.PublicKey(), changeEnvelope(func(e *Envelope) {
			e.Signatures = []Signature{{KeyID: KeyID(other.pub), Sig: ed25519.Sign(other.priv, pae(PayloadType, e.Payload))}}
		}), testOutput, ErrTampered, "signature does not verify"},
		{"signature over the payload without PAE", k.PublicKey(), changeEnvelope(func(e *Envelope) {
			e.Signatures = []Signature{{Sig: ed25519.Sign(k.priv, e.Payload)}}
		}), testOutput, ErrTampered, "signature does not verify"},
		{"signature truncated", k.PublicKey(), changeEnvelope(func(e *Envelope) { e.Signatures[0].Sig = e.Signatures[0].Sig[:10] }), testOutput, ErrTampered, "signature does not verify"},
		{"no signatures", k.PublicKey(), changeEnvelope(func(e *Envelope) { e.Signatures = nil }), testOutput, ErrInvalid, "not signed"},
		{"a bad and a good signature", k.PublicKey(), changeEnvelope(func(e *Envelope) {
			e.Signatures = append([]Signature{{KeyID: "x", Sig: make([]byte, 64)}}, e.Signatures...)
		}), testOutput, nil, ""},
		{"too many signatures", k.PublicKey(), changeEnvelope(func(e *Envelope) {
			e.Signatures = make([]Signature, maxSignatures+1)
		}), testOutput, ErrInvalid, "signatures"},
		{"not JSON", k.PublicKey(), []byte("hello"), testOutput, ErrInvalid, "not a DSSE envelope"},
		{"empty", k.PublicKey(), nil, testOutput, ErrInvalid, "not a DSSE envelope"},
		{"short key", k.PublicKey()[:16], env, testOutput, ErrInvalid, "key has 16 bytes"},
		{"signed, wrong statement type", k.PublicKey(), resign(`{"_type":"https://in-toto.io/Statement/v0.1","subject":[],"predicateType":"https://veil.dev/provenance/v1","predicate":{}}`), testOutput, ErrInvalid, "statement type"},
		{"signed, wrong predicate type", k.PublicKey(), resign(`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}`), testOutput, ErrInvalid, "predicate type"},
		{"signed, two subjects", k.PublicKey(), resign(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{}},{"name":"b","digest":{}}],"predicateType":"https://veil.dev/provenance/v1","predicate":{}}`), testOutput, ErrInvalid, "2 subjects"},
		{"signed, no sha256", k.PublicKey(), resign(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha512":"00"}}],"predicateType":"https://veil.dev/provenance/v1","predicate":{}}`), testOutput, ErrInvalid, "no sha256"},
		{"signed, predicate not an object", k.PublicKey(), resign(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"00"}}],"predicateType":"https://veil.dev/provenance/v1","predicate":[1]}`), testOutput, ErrInvalid, "not a JSON object"},
		{"signed, trailing data", k.PublicKey(), resign(`{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"https://veil.dev/provenance/v1","predicate":{}}{}`), testOutput, ErrInvalid, "not an in-toto statement"},
		{"signed, not JSON", k.PublicKey(), resign(`hello`), testOutput, ErrInvalid, "not an in-toto statement"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyCertificate(tc.pub, tc.envelope, tc.output)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("VerifyCertificate: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyCertificate err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
		})
	}
}

func TestSignCertificateRejects(t *testing.T) {
	k := testKey(t, "veil.test", 1)
	for name, pred := range map[string]any{"array": []int{1}, "string": "x", "nil": nil, "unencodable": func() {}} {
		if _, err := SignCertificate(k, "x", testOutput, pred); !errors.Is(err, ErrInvalid) {
			t.Errorf("predicate %s: %v", name, err)
		}
	}
	if _, err := SignCertificate(k, "", testOutput, map[string]string{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty subject name: %v", err)
	}
	if _, err := SignCertificate(nil, "x", testOutput, map[string]string{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil key: %v", err)
	}
}
