package daemon_test

import (
	"context"
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
