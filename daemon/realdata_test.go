package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
)

// strikesHeader is the header of the FAA wildlife-strike records as vega-datasets ships them
// (birdstrikes.csv), with an id column of leading zeros and a Chinese column added.
const strikesHeader = "Record ID,Airport Name,Aircraft Make Model,Effect Amount of damage,Flight Date,Aircraft Airline Operator,Origin State,Phase of flight,Wildlife Size,Wildlife Species,Time of day,Cost Other,Cost Repair,Cost Total $,Speed IAS in knots,机场所在省\n"

// writeStrikes writes n strike records over three states (Texas 60%, Ohio 37%, Utah 3%).
func writeStrikes(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(strikesHeader)
	for i := 0; i < n; i++ {
		st := "Texas"
		switch {
		case i >= n*97/100:
			st = "Utah"
		case i >= n*60/100:
			st = "Ohio"
		}
		fmt.Fprintf(&b, "%05d,AIRPORT %d,B-737,None,1990-01-%02d,AIRLINE,%s,Climb,Small,Gull,Day,0,%d,%d,%d,省%d\n", i, i%7, 1+i%28, st, i%3, 10*(i%9), 100+i%200, i%4)
	}
	p := filepath.Join(t.TempDir(), "birdstrikes.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// strikesSchema names most columns by their headers as they are (Veil derives the simple
// names vendors query), maps two explicitly, and declares each row its own unit.
const strikesSchema = `
name: strikes
provider: faa
unit: row
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: record_id, source: Record ID, type: VARCHAR, level: 2, kind: none}
  - {name: Airport Name, type: VARCHAR, level: 1, kind: none}
  - {name: Aircraft Make Model, type: VARCHAR, level: 1, kind: none}
  - {name: Effect Amount of damage, type: VARCHAR, level: 1, kind: none}
  - {name: Flight Date, type: DATE, level: 1, kind: none}
  - {name: Aircraft Airline Operator, type: VARCHAR, level: 1, kind: none}
  - {name: Origin State, type: VARCHAR, level: 1, kind: none}
  - {name: Phase of flight, type: VARCHAR, level: 1, kind: none}
  - {name: Wildlife Size, type: VARCHAR, level: 1, kind: none}
  - {name: Wildlife Species, type: VARCHAR, level: 1, kind: none}
  - {name: Time of day, type: VARCHAR, level: 1, kind: none}
  - {name: Cost Other, type: BIGINT, level: 1, kind: none}
  - {name: Cost Repair, type: BIGINT, level: 1, kind: none}
  - {name: Cost Total $, type: BIGINT, level: 1, kind: none, bounds: [0, 100000]}
  - {name: Speed IAS in knots, type: BIGINT, level: 1, kind: none}
  - {name: province, source: 机场所在省, type: VARCHAR, level: 1, kind: none}
`

// TestRealHeaders: the wildlife-strike records register unchanged, with their own headers,
// as event-level data (unit row); an id with leading zeros stays text; a vendor's query on
// "Origin State" and "Cost Total $" runs and the threshold gate counts rows as units.
func TestRealHeaders(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("faa", "provider", "faa")
	auth := e.principal("data bureau", "authority", "")
	acme := e.principal("acme analyst", "vendor", "acme")
	rev := e.principal("reviewer", "reviewer", "")
	csv := writeStrikes(t, 200)
	before, _ := os.ReadFile(csv)
	ds, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Files: []string{csv}})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(csv); string(after) != string(before) || ds.Rows != 200 {
		t.Fatalf("rows %d; file unchanged: %v", ds.Rows, string(after) == string(before))
	}
	var sch struct {
		Columns []struct{ Name, Source, Type string } `json:"columns"`
	}
	if err := json.Unmarshal(ds.Schema, &sch); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range sch.Columns {
		names = append(names, c.Name+"="+c.Source)
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"origin_state=Origin State", "cost_total=Cost Total $", "province=机场所在省", "record_id=Record ID", "veil_row_id="} {
		if !strings.Contains(got, want) {
			t.Fatalf("stored schema lacks %s: %s", want, got)
		}
	}
	gr, err := acme.ApplyGrant(ctx, api.ApplyGrant{Scenario: "strike costs", Purpose: "airport safety", Modes: []string{"threshold"}, K: 5, ValidFor: "30d",
		Datasets: []api.DatasetAccess{{Name: "strikes", Columns: []string{"origin_state", "cost_total", "record_id"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gid := gr["id"].(string)
	for _, c := range []*client.Client{e.op, auth, prov} {
		if _, err := c.ActOnGrant(ctx, gid, "approve", ""); err != nil {
			t.Fatal(err)
		}
	}
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: gid, SQL: `SELECT "Origin State", COUNT(*) AS n, SUM("Cost Total $") AS cost, MIN(record_id) AS first FROM strikes GROUP BY "Origin State" ORDER BY 1`})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		t.Fatalf("job %+v err %v", j, err)
	}
	rv, err := rev.Review(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Utah has 6 rows = 6 units (k=5 passes); every state shows; ids keep their zeros.
	if len(rv.Rows) != 3 || rv.Rows[0][0] != "Ohio" || rv.Rows[1][3] != "00000" {
		t.Fatalf("review rows %v", rv.Rows)
	}
}

// TestRegisterMismatchesAtOnce: every difference between schema and files is reported in one
// refusal, in the schema's column order; a CSV value that does not fit its type is named by
// line and column in one line that quotes no value. Nothing is registered.
func TestRegisterMismatchesAtOnce(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("faa", "provider", "faa")
	csv := writeStrikes(t, 20)
	bad := strings.Replace(strikesSchema, "  - {name: Wildlife Size, type: VARCHAR, level: 1, kind: none}\n", "", 1)
	bad = strings.Replace(bad, "name: Time of day", "name: Time of Night", 1)
	bad = strings.Replace(bad, "source: 机场所在省", "source: 省", 1)
	_, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: bad, Files: []string{csv}})
	if kindOf(err) != "invalid" {
		t.Fatalf("mismatched schema: %v", err)
	}
	msg := err.Error()
	order := []string{`"time_of_night"`, `"province" (header "省")`, `file column "Wildlife Size"`, `file column "Time of day"`, `file column "机场所在省"`}
	last := -1
	for _, w := range order {
		i := strings.Index(msg, w)
		if i < 0 || i < last {
			t.Fatalf("refusal does not list %s in order: %s", w, msg)
		}
		last = i
	}
	// A cost that is not a number, on line 4.
	b, _ := os.ReadFile(csv)
	lines := strings.Split(string(b), "\n")
	lines[3] = strings.Replace(lines[3], ",Day,0,", ",Day,CONFIDENTIAL,", 1)
	os.WriteFile(csv, []byte(strings.Join(lines, "\n")), 0o644)
	_, err = prov.RegisterDataset(ctx, api.RegisterDataset{Schema: strikesSchema, Files: []string{csv}})
	if kindOf(err) != "invalid" || !strings.Contains(err.Error(), `line 4, column "Cost Other"`) || strings.Contains(err.Error(), "CONFIDENTIAL") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("bad value: %v", err)
	}
	if ds, _ := e.op.Datasets(ctx); len(ds) != 0 {
		t.Fatalf("a refused dataset is listed: %v", ds)
	}
}
