package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/veil-dp/veil/policy"
)

// A domain {file: PATH} is read by the CLI, relative to the schema, into the list the daemon
// takes; a schema without one is sent unchanged; a file too large is refused.
func TestDomainFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "states.txt"), []byte("Texas\r\nOhio\n\nUtah\nOhio\n"), 0o644)
	schema := []byte(`name: strikes
provider: faa
unit: row
budget: {epsilon: 1, delta: 1.0e-6}
columns:
  - {name: Origin State, type: VARCHAR, level: 1, kind: none, domain: {file: states.txt}}  # states
`)
	out, err := resolveDomainFiles(schema, dir)
	if err != nil {
		t.Fatal(err)
	}
	sch, err := policy.ParseSchema(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c, _ := sch.Column("origin_state")
	if !slices.Equal(c.Domain, []string{"Texas", "Ohio", "Utah"}) {
		t.Fatalf("domain %q", c.Domain)
	}
	plain := []byte("name: x\ncolumns: []\n")
	if got, _ := resolveDomainFiles(plain, dir); string(got) != string(plain) {
		t.Fatalf("a schema without domain files changed: %s", got)
	}
	os.WriteFile(filepath.Join(dir, "huge.txt"), []byte(strings.Repeat("v\n", maxDomainFileBytes)), 0o644)
	if _, err := resolveDomainFiles([]byte(strings.Replace(string(schema), "states.txt", "huge.txt", 1)), dir); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("huge domain file: %v", err)
	}
	// The daemon never reads a provider's path.
	if _, err := policy.ParseSchema(schema); err == nil || !strings.Contains(err.Error(), "read by the CLI") {
		t.Fatalf("a file domain reached the daemon: %v", err)
	}
}
