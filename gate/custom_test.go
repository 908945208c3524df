package gate

import (
	"strings"
	"testing"

	"github.com/veil-dp/veil/output"
)

func findingsOf(fs []Finding, file string) map[string]string {
	out := map[string]string{}
	for _, f := range fs {
		if f.Output == file {
			out[f.Rule] = f.Message
		}
	}
	return out
}

// TestCheckCustomBoundsCSV: the CSV files of an output are parsed up to a number of cells
// for all of them together; beyond it a file is a finding, not an allocation per comma.
func TestCheckCustomBoundsCSV(t *testing.T) {
	small := output.File{Name: "a.csv", Data: []byte("district,persons\nnorth,60\n")}
	commas := output.File{Name: "b.csv", Data: []byte(strings.Repeat(",", maxCSVCells+10) + "\n")}
	fs, _ := CheckCustom([]output.File{small, commas}, nil, 100, 0, nil)
	if m := findingsOf(fs, "b.csv")["not_a_table"]; !strings.Contains(m, "more than") {
		t.Fatalf("a CSV of %d cells was parsed: %+v", maxCSVCells+10, fs)
	}
	if _, ok := findingsOf(fs, "a.csv")["not_a_table"]; ok {
		t.Fatalf("a small CSV was refused: %+v", fs)
	}
	// Together: many files each under the bound, above it in sum.
	var many []output.File
	row := strings.Repeat("x,", 999) + "x\n"
	for i := range 3 {
		many = append(many, output.File{Name: string(rune('c'+i)) + ".csv", Data: []byte(strings.Repeat(row, maxCSVCells/2/1000+1))})
	}
	fs, _ = CheckCustom(many, nil, 100, 0, nil)
	if m := findingsOf(fs, "e.csv")["not_a_table"]; !strings.Contains(m, "more than") {
		t.Fatalf("the cells of several CSV files were not bounded together: %+v", findingsOf(fs, "e.csv"))
	}
}

// TestCheckCustomManifestStrict: a manifest is read as a reviewer reads it: a key given twice
// (encoding/json would take the last) makes it no manifest, so every output is undeclared.
func TestCheckCustomManifestStrict(t *testing.T) {
	table := output.File{Name: "t.csv", Data: []byte("district,persons\nnorth,60\nsouth,35\n")}
	for _, tc := range []struct {
		manifest   string
		undeclared bool
	}{
		{`{"outputs": [{"file": "t.csv", "kind": "frequency", "count_column": "persons"}]}`, false},
		{`{"outputs": [{"file": "t.csv", "kind": "other"}], "outputs": [{"file": "t.csv", "kind": "frequency", "count_column": "persons"}]}`, true},
		{`{"outputs": [{"file": "t.csv", "kind": "frequency", "Kind": "other", "count_column": "persons"}]}`, true},
	} {
		fs, kinds := CheckCustom([]output.File{{Name: "manifest.json", Data: []byte(tc.manifest)}, table}, nil, 100, 0, nil)
		_, undeclared := findingsOf(fs, "t.csv")["undeclared"]
		if undeclared != tc.undeclared || (tc.undeclared && findingsOf(fs, "manifest.json")["manifest"] == "") {
			t.Errorf("%s: findings %+v kinds %v", tc.manifest, fs, kinds)
		}
	}
}
