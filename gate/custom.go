package gate

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/output"
)

// manifest is what a program may write to /out/manifest.json to declare its outputs.
type manifest struct {
	Outputs []struct {
		File        string   `json:"file"`
		Kind        string   `json:"kind"` // frequency, magnitude, regression, other
		CountColumn string   `json:"count_column"`
		Dataset     string   `json:"dataset"`
		GroupBy     []string `json:"group_by"`
		Value       string   `json:"value"`
		NObs        int      `json:"n_obs"`
		NParams     int      `json:"n_params"`
	} `json:"outputs"`
}

// CheckCustom runs the disclosure checks of a custom job's output files: every CSV against
// the inputs (row-level data), each table declared in manifest.json by its kind; undeclared
// files are findings for the reviewer to judge. limit, when set, is the number of input rows
// the row-level check compared (the inputs held more). magnitude recomputes the
// contributions to each cell of a declared magnitude table, which a program's output cannot
// be trusted to give. It returns the findings and each file's kind.
func CheckCustom(files []output.File, inputs []SDCTable, inputRows, limit int64, magnitude func(dataset string, groupBy []string, value string) ([]MagnitudeCell, error)) ([]Finding, map[string]string) {
	rules := DefaultSDCRules()
	var m manifest
	kinds := map[string]string{}
	var findings []Finding
	for _, f := range files {
		if f.Name == "manifest.json" {
			// Strictly: the reviewer reads the manifest, and must read what the checks
			// follow (a key given twice would be read one way by a person, the other way here).
			if err := api.Decode(f.Data, &m); err != nil {
				m = manifest{}
				findings = append(findings, Finding{Output: f.Name, Rule: "manifest", Message: "manifest.json is not a valid manifest (" + err.Error() + "); every output is treated as undeclared"})
			}
			kinds[f.Name] = "manifest"
		}
	}
	declared := map[string]int{}
	for i, o := range m.Outputs {
		declared[o.File] = i
	}
	if limit > 0 {
		findings = append(findings, Finding{Output: "*", Rule: "row_level_limited", Message: fmt.Sprintf("the inputs exceed %d rows: the row-level check compared the first rows only", limit)})
	}
	cells := maxCSVCells // for all the CSV files together: parsing costs memory per cell
	for _, f := range files {
		if f.Name == "manifest.json" {
			continue
		}
		var tbl *SDCTable
		if strings.HasSuffix(f.Name, ".csv") {
			t, err := parseCSV(f.Name, f.Data, &cells)
			if err != nil {
				findings = append(findings, Finding{Output: f.Name, Rule: "not_a_table", Message: "the file ends in .csv but is not readable as CSV: " + err.Error()})
			} else {
				tbl = t
				findings = append(findings, CheckRowLevel(*t, inputs, inputRows)...)
			}
		}
		i, ok := declared[f.Name]
		if !ok {
			kinds[f.Name] = "other"
			findings = append(findings, Finding{Output: f.Name, Rule: "undeclared", Message: "not declared in manifest.json; the reviewer must judge it by reading it"})
			continue
		}
		o := m.Outputs[i]
		kinds[f.Name] = o.Kind
		switch o.Kind {
		case "frequency":
			if tbl == nil {
				findings = append(findings, Finding{Output: f.Name, Rule: "not_a_table", Message: "a frequency table must be a CSV file"})
				continue
			}
			findings = append(findings, CheckFrequency(*tbl, o.CountColumn, rules)...)
		case "magnitude":
			cells, err := magnitude(o.Dataset, o.GroupBy, o.Value)
			if err != nil {
				findings = append(findings, Finding{Output: f.Name, Rule: "not_a_magnitude", Message: "its declaration cannot be checked: " + err.Error()})
				continue
			}
			findings = append(findings, CheckMagnitude(f.Name, cells, rules)...)
		case "regression":
			findings = append(findings, CheckRegression(f.Name, o.NObs, o.NParams, rules)...)
			if int64(o.NObs) > inputRows {
				findings = append(findings, Finding{Output: f.Name, Rule: "not_a_regression", Message: "it declares more observations than the inputs hold"})
			}
		case "other":
			findings = append(findings, Finding{Output: f.Name, Rule: "undeclared", Message: "declared as other: no rule applies; the reviewer must judge it by reading it"})
		default:
			findings = append(findings, Finding{Output: f.Name, Rule: "manifest", Message: fmt.Sprintf("unknown kind %q (frequency, magnitude, regression, other)", o.Kind)})
		}
	}
	return findings, kinds
}

// maxCSVCells bounds the cells the checks parse out of a custom output's CSV files.
const maxCSVCells = 2_000_000

// parseCSV parses a CSV output, taking its cells from *budget; a table beyond it is not
// parsed (and so is a finding for the reviewer).
func parseCSV(name string, data []byte, budget *int) (*SDCTable, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	var recs [][]string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errors.New("malformed CSV")
		}
		if *budget -= max(len(rec), 1); *budget < 0 {
			return nil, fmt.Errorf("the CSV files hold more than %d cells, more than the checks parse; reduce the output to what is needed", maxCSVCells)
		}
		recs = append(recs, rec)
	}
	if len(recs) == 0 {
		return &SDCTable{Name: name}, nil
	}
	return &SDCTable{Name: name, Columns: recs[0], Rows: recs[1:]}, nil
}
