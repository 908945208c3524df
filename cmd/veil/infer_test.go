package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-dp/veil/policy"
)

// writeVisits writes a hospital-visits CSV as an agency holds it: ids with leading zeros,
// resident id numbers, phones, Chinese names and headers, a header with spaces and $.
func writeVisits(t *testing.T, dir string) string {
	return writeVisitsRows(t, dir, 120)
}

// writeVisitsRows writes the visits CSV with n rows (fewer than a million).
func writeVisitsRows(t *testing.T, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("Patient ID,身份证号,姓名,Mobile,Visit Date,Cost Total $,科室\n")
	surnames := []string{"王", "李", "张", "刘", "陈"}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%06d,1101011990%02d%02d%03d%d,%s%s,1380013%04d,2024-03-%02d,%d.50,科%d\n",
			i+1, 1+i%12, 1+i%28, i%1000, i%10, surnames[i%5], []string{"伟", "芳", "娜", "强"}[i%4], i%10000, 1+i%28, 100+i%1000, i%3)
	}
	p := filepath.Join(dir, "visits.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDatasetInfer: veil dataset infer drafts a schema from the files alone (no daemon): the
// headers as sources of simple names, ids with leading zeros as text, suggested kinds and
// masks for id numbers, phones and names, a suggested privacy unit, every level left for the
// provider (the draft is refused until they decide); after only classification edits it
// registers, and the id keeps its zeros.
func TestDatasetInfer(t *testing.T) {
	e := startCLI(t)
	csv := writeVisits(t, e.dir)
	draft, err := runVeil(t, "dataset", "infer", "--provider", "health-commission", "--name", "visits", csv)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# Draft schema by veil dataset infer: 120 rows, 7 columns.",
		`{name: patient_id, source: Patient ID, type: VARCHAR, level: 0, kind: none, privacy_unit: true, mask: hmac}`,
		`{name: column_2, source: 身份证号, type: VARCHAR, level: 0, kind: id_number, mask: "keep:6,4"}`,
		`{name: column_3, source: 姓名, type: VARCHAR, level: 0, kind: name, mask: name}`,
		`{name: mobile, source: Mobile, type: VARCHAR, level: 0, kind: phone, mask: "keep:3,4"}`,
		`{name: cost_total, source: Cost Total $, type: DOUBLE, level: 0, kind: none}`,
		"unit: person  # CONFIRM",
		"leading zeros: kept as text",
	} {
		if !strings.Contains(draft, want) {
			t.Errorf("draft lacks %s:\n%s", want, draft)
		}
	}
	if strings.Contains(draft, "王") || strings.Contains(draft, "1380013") {
		t.Fatalf("the draft quotes values of the file:\n%s", draft)
	}
	if _, err := policy.ParseSchema([]byte(draft)); err == nil || !strings.Contains(err.Error(), "level") {
		t.Fatalf("an unconfirmed draft parses: %v", err)
	}
	// The provider decides the levels, and nothing else.
	schema := filepath.Join(e.dir, "visits.yaml")
	confirmed := strings.ReplaceAll(draft, "level: 0", "level: 3")
	if err := os.WriteFile(schema, []byte(confirmed), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runVeil(t, e.as("operator", "principal", "create", "--name", "health", "--role", "provider", "--tenant", "health-commission")...)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["health"] = field(t, out, "token")
	out, err = runVeil(t, e.as("health", "dataset", "register", "--schema", schema, csv)...)
	if err != nil {
		t.Fatalf("the confirmed draft does not register: %v\n%s", err, confirmed)
	}
	if field(t, out, "rows") != "120" {
		t.Fatalf("registered: %s", out)
	}
	out, err = runVeil(t, e.as("health", "-o", "json", "dataset", "show", "visits")...)
	if err != nil || !strings.Contains(out, `"source": "Cost Total $"`) {
		t.Fatalf("show: %v\n%s", err, out)
	}
}

// TestRegisterUpload: veil dataset register --upload sends the files over the API (the daemon
// reads no path of the provider's) and registers them; no bar is drawn when stderr is not a
// terminal, and the bar a terminal gets shows the share sent.
func TestRegisterUpload(t *testing.T) {
	e := startCLI(t)
	csv := writeVisits(t, t.TempDir())
	draft, err := runVeil(t, "dataset", "infer", "--provider", "health-commission", "--name", "visits", csv)
	if err != nil {
		t.Fatal(err)
	}
	schema := filepath.Join(t.TempDir(), "visits.yaml")
	os.WriteFile(schema, []byte(strings.ReplaceAll(draft, "level: 0", "level: 2")), 0o644)
	out, err := runVeil(t, e.as("operator", "principal", "create", "--name", "health", "--role", "provider", "--tenant", "health-commission")...)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["health"] = field(t, out, "token")
	stdout, stderr, err := runVeilIO(t, "", e.as("health", "dataset", "register", "--upload", "--schema", schema, csv)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if field(t, stdout, "rows") != "120" || stderr != "visits.csv: 100% sent (9 KiB of 9 KiB)\n" {
		t.Fatalf("stdout %q stderr %q", stdout, stderr)
	}
	if got := renderBar("visits.csv", 3<<20, 12<<20); got != "\rvisits.csv [#######.......................]  25% 3 MiB/12 MiB" {
		t.Fatalf("bar %q", got)
	}
}

// TestDatasetVersionsCLI: veil dataset update registers a new version and says which active
// grants read it (none here); veil dataset versions lists both, in JSON too.
func TestDatasetVersionsCLI(t *testing.T) {
	e := startCLI(t)
	dir := t.TempDir()
	csv := writeVisits(t, dir)
	draft, err := runVeil(t, "dataset", "infer", "--provider", "health-commission", "--name", "visits", csv)
	if err != nil {
		t.Fatal(err)
	}
	schema := filepath.Join(dir, "visits.yaml")
	os.WriteFile(schema, []byte(strings.ReplaceAll(draft, "level: 0", "level: 2")), 0o644)
	out, err := runVeil(t, e.as("operator", "principal", "create", "--name", "health", "--role", "provider", "--tenant", "health-commission")...)
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["health"] = field(t, out, "token")
	if _, err := runVeil(t, e.as("health", "dataset", "register", "--schema", schema, csv)...); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(csv)
	os.WriteFile(csv, []byte(strings.TrimSuffix(string(b), "\n")[:strings.LastIndex(strings.TrimSuffix(string(b), "\n"), "\n")+1]), 0o644) // one row fewer
	out, err = runVeil(t, e.as("health", "dataset", "update", "visits", "--schema", schema, csv)...)
	if err != nil {
		t.Fatal(err)
	}
	if field(t, out, "rows") != "119" || !strings.Contains(out, "current") || !strings.Contains(out, "no active grant reads this dataset") {
		t.Fatalf("update:\n%s", out)
	}
	out, err = runVeil(t, e.as("health", "-o", "json", "dataset", "versions", "visits")...)
	if err != nil || strings.Count(out, `"version"`) != 3 { // the dataset's and two versions'
		t.Fatalf("versions: %v\n%s", err, out)
	}
}
