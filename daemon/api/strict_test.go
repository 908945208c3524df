package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// bodies holds a value of every request body type the daemon decodes (a new request type
// gets its line here, and so its fuzzing).
var bodies = []func() any{
	func() any { return &CreatePrincipal{} }, func() any { return &RegisterDataset{} }, func() any { return &ApplyGrant{} },
	func() any { return &Decide{} }, func() any { return &DecideOutput{} }, func() any { return &RegisterRuntime{} },
	func() any { return &SubmitJob{} }, func() any { return &BuildTwin{} }, func() any { return &SubmitFeedback{} },
	func() any { return &ResolveFeedback{} },
}

func TestDecodeStrict(t *testing.T) {
	cases := []struct {
		name, body, want string // want: "" accepted, else part of the error
	}{
		{"plain", `{"grant":"g-1","sql":"SELECT 1","dp":{"epsilon":0.5,"bounds":{"a":[0,1]}}}`, ""},
		{"whitespace after", "{\"grant\":\"g\"}\n\t ", ""},
		{"duplicate key", `{"grant":"g-1","sql":"a","sql":"b"}`, `key "sql" is given twice`},
		{"duplicate nested", `{"grant":"g","dp":{"epsilon":1,"epsilon":9}}`, `key "dp.epsilon" is given twice`},
		{"duplicate in array element", `{"custom":{"runtime":"r","program":"p","datasets":["a"]},"train":{"dataset":"d","trainer":"t","epsilon":1,"bounds":{"x":[0,1],"x":[0,2]}}}`, `"train.bounds.x" is given twice`},
		{"case variant", `{"Grant":"g-1"}`, `the field is "grant"`},
		{"case variant nested", `{"grant":"g","dp":{"Epsilon":1}}`, `the field is "dp.epsilon"`},
		{"unknown", `{"grant":"g","budget":1}`, `unknown field "budget"`},
		{"unknown nested", `{"grant":"g","he":{"dataset":"d","keys":[1]}}`, `unknown field "he.keys"`},
		{"trailing value", `{"grant":"g"}{"grant":"h"}`, "after its JSON value"},
		{"trailing garbage", `{"grant":"g"} x`, ""},
		{"invalid utf-8", "{\"grant\":\"g\xff\"}", "UTF-8"},
		{"lone surrogate", `{"grant":"g\ud800"}`, "surrogate"},
		{"lone low surrogate", `{"grant":"\udc00x"}`, "surrogate"},
		{"surrogate pair", `{"grant":"\ud83d\ude00"}`, ""},
		{"deep", `{"dp":{"bounds":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}}`, "deeper"},
		{"truncated", `{"grant":"g"`, "ends before"},
		{"wrong type", `{"grant":1}`, "cannot unmarshal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v SubmitJob
			err := Decode([]byte(tc.body), &v)
			switch {
			case tc.name == "trailing garbage":
				if err == nil {
					t.Fatal("accepted trailing garbage")
				}
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestDecodeEveryBodyRefusesVariants checks, for every request type, each of its fields
// (at every level reachable from a zero value filled by a seed) in a case variant and
// twice.
func TestDecodeEveryBodyRefusesVariants(t *testing.T) {
	for _, mk := range bodies {
		v := mk()
		typ := reflect.TypeOf(v).Elem()
		for name := range fieldsOf(typ) {
			for _, body := range []string{
				`{"` + strings.ToUpper(name[:1]) + name[1:] + `":null}`,
				`{"` + name + `":null,"` + name + `":null}`,
			} {
				if strings.ToUpper(name[:1]) == name[:1] && !strings.Contains(body, ",") {
					continue // no lower-case letter to vary
				}
				if err := Decode([]byte(body), mk()); err == nil {
					t.Errorf("%s: accepted %s", typ.Name(), body)
				}
			}
		}
	}
}

// FuzzDecode: the strict decoder never panics, and what it accepts re-encodes to a canonical
// form that it accepts again and that re-encodes to itself.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"grant":"g-1","sql":"SELECT 1","dp":{"epsilon":0.5,"bounds":{"a":[0,1]}}}`,
		`{"name":"x","role":"vendor","tenant":"acme"}`,
		`{"schema":"name: x","files":["/a"]}`,
		`{"scenario":"s","purpose":"p","datasets":[{"name":"r","columns":["a"]}],"modes":["dp"],"k":5,"round_to":5,"valid_for":"30d"}`,
		`{"decision":"approve","digest":"sha256:00","reason":"ok","override":true}`,
		`{"kind":"synthetic","pairs":[["a","b"]],"epsilon":1}`,
		`{"train":{"dataset":"d","trainer":"histogram","column":"c","ranks":[0.5],"epsilon":1}}`,
		`{"grant":"g","sql":"a","sql":"b"}`, `{"Grant":"g"}`, `[1,2,{"a":1}]`, `"\ud800"`,
	} {
		for i := range bodies {
			f.Add(byte(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, which byte, data []byte) {
		mk := bodies[int(which)%len(bodies)]
		v := mk()
		if err := Decode(data, v); err != nil {
			return
		}
		b1, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", data, err)
		}
		v2 := mk()
		if err := Decode(b1, v2); err != nil {
			t.Fatalf("accepted %q but not its encoding %s: %v", data, b1, err)
		}
		b2, _ := json.Marshal(v2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("encoding is not canonical: %s then %s", b1, b2)
		}
	})
}
