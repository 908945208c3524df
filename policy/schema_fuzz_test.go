package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParseSchema: ParseSchema never panics and either refuses a schema file with
// ErrInvalid or accepts it; an accepted schema written back as YAML parses again to the same
// schema.
func FuzzParseSchema(f *testing.F) {
	f.Add([]byte(goodSchema))
	for _, edit := range [][2]string{
		{"privacy_unit: true, ", ""}, {"level: 2, kind: none, bounds", "level: 5, kind: none, bounds"},
		{"kind: id_number", "kind: passport"}, {`, mask: "keep:6,4"`, ""}, {"bounds: [0, 110]", "bounds: [110, 0]"},
		{`mask: "band:5"`, `mask: "rot13"`}, {"unit: person", "unit: person\nsecret: x"}, {"name: residents", "name: main"},
		{"epsilon: 10", "epsilon: -1"}, {"delta: 1.0e-6}", "delta: 1.0e-6, max_query_epsilon: .nan}"},
		{"bounds: [0, 110]", "bounds: [.inf, 1]"}, {"max_rows_per_unit: 1", "max_rows_per_unit: -1"},
		{"domain: [a, b]", "domain: []"}, {"type: VARCHAR, level: 1", "type: '', level: 1"},
		{"name: residents", "name: &a residents"}, {"columns:", "synthetic: true\ncolumns:"},
	} {
		f.Add([]byte(strings.Replace(goodSchema, edit[0], edit[1], 1)))
	}
	f.Add([]byte("a: &a [*a, *a, *a, *a]\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSchema(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("an error that is not ErrInvalid: %v", err)
			}
			return
		}
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("an accepted schema does not marshal: %v", err)
		}
		again, err := ParseSchema(out)
		if err != nil {
			t.Fatalf("an accepted schema, written back, is refused: %v\n%s", err, out)
		}
		a, errA := json.Marshal(s)
		b, errB := json.Marshal(again)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("the schema changed on a round trip (%v, %v):\n%s\n%s", errA, errB, a, b)
		}
	})
}
