package daemon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/veil-dp/veil/daemon/api"
)

// TestCatalogHidesPerColumnStats: the rows per person within each value of a column, which
// registration measures for the threshold plan's bound (max_rows_per_unit_by), are exact
// statistics of single persons ("one person has 37 rows with diagnosis X"), and so are the
// units and rows of each value (value_units: "diagnosis X: 3 persons"); the catalog keeps
// them to itself. Every vendor can list the catalog, grant or not.
func TestCatalogHidesPerColumnStats(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	acme := e.principal("acme analyst", "vendor", "acme")
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: residentsSchema, Files: []string{writeResidents(t, t.TempDir())}}); err != nil {
		t.Fatal(err)
	}
	for who, c := range map[string]interface {
		Datasets(context.Context) ([]api.Dataset, error)
	}{"the vendor": acme, "the provider": prov, "the operator": e.op} {
		ds, err := c.Datasets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 {
			t.Fatalf("%s lists %d datasets, want 1", who, len(ds))
		}
		if s := string(ds[0].Schema); strings.Contains(s, "max_rows_per_unit_by") || strings.Contains(s, "value_units") {
			t.Errorf("%s reads the per-column rows per person or the units per value in the catalog: %s", who, s)
		}
	}
}

const clinicSchema = `
name: clinic_visits
title: Clinic visits
provider: civil-affairs
unit: person
synthetic: true
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: person_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: clinic, type: VARCHAR, level: 1, kind: none}
`

// TestCatalogHidesMeasuredRowsPerUnit: registration measures the most rows one person has
// (max_rows_per_unit, which the gate relies on) and whether every row has a person; where
// the schema did not declare the maximum, the catalog showed the measured one to every
// vendor: "one person has 23 visits", an exact statistic of the heaviest person, changing
// with each version.
func TestCatalogHidesMeasuredRowsPerUnit(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	prov := e.principal("civil affairs", "provider", "civil-affairs")
	acme := e.principal("acme analyst", "vendor", "acme")
	var b strings.Builder
	b.WriteString("person_id,clinic\n")
	for i := range 40 {
		b.WriteString(fmt.Sprintf("%d,north\n", i))
	}
	for range 22 {
		b.WriteString("7,south\n") // person 7: 23 rows
	}
	file := filepath.Join(t.TempDir(), "visits.csv")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: clinicSchema, Files: []string{file}}); err != nil {
		t.Fatal(err)
	}
	ds, err := acme.Datasets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("the vendor lists %d datasets, want 1", len(ds))
	}
	if s := string(ds[0].Schema); strings.Contains(s, "max_rows_per_unit") || strings.Contains(s, "unit_complete") || strings.Contains(s, "23") {
		t.Errorf("the vendor reads measured rows per person in the catalog: %s", s)
	}
}
