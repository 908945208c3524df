package engine

import (
	"context"
	"strings"
	"testing"
)

// sourceScope is a dataset registered from files whose headers are not simple names.
func sourceScope(mode string) Scope {
	return Scope{Mode: mode, Tables: []Table{{Name: "strikes", Unit: "person", Columns: []Column{
		{Name: "strike_id", Type: "BIGINT", PrivacyUnit: true},
		{Name: "origin_state", Source: "Origin State", Type: "VARCHAR"},
		{Name: "cost_total", Source: "Cost Total $", Type: "DOUBLE", Bounds: []float64{0, 1e6}},
		{Name: "pilot", Source: "机长姓名", Type: "VARCHAR", Identifier: true},
		{Name: "district", Source: "区", Type: "VARCHAR"},
	}}}}
}

// A query may name columns by their quoted headers; what runs names the stored columns, and
// the rules decide on the column the header binds to.
func TestQuotedHeaders(t *testing.T) {
	v := newValidator(t)
	ctx := context.Background()
	q := `SELECT "Origin State", SUM("Cost Total $") AS cost, COUNT(*) FROM strikes s WHERE s."Cost Total $" > 0 AND "区" = 'a' GROUP BY "origin state"`
	plan, err := v.Validate(ctx, q, sourceScope("threshold"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plan.SQL, "Origin State") || strings.Contains(plan.SQL, "Cost Total $") || !strings.Contains(plan.SQL, "origin_state") || !strings.Contains(plan.SQL, "cost_total") {
		t.Fatalf("the SQL that runs does not name the stored columns: %s", plan.SQL)
	}
	dp, err := v.ValidateDP(ctx, `SELECT "Origin State", SUM("Cost Total $") FROM strikes GROUP BY "Origin State"`, sourceScope("dp"), DPOptions{Epsilon: 1, Delta: 1e-6})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dp.SQL, "Origin State") {
		t.Fatalf("dp SQL names a header: %s", dp.SQL)
	}
	// An identifier named by its header is still an identifier.
	_, err = v.Validate(ctx, `SELECT "机长姓名", COUNT(*) FROM strikes GROUP BY 1`, sourceScope("threshold"))
	refused(t, "identifier by its header", err)
	// A header that is not granted is an unknown column, not a way around the grant.
	sc := sourceScope("threshold")
	sc.Tables[0].Columns = sc.Tables[0].Columns[:2]
	_, err = v.Validate(ctx, `SELECT "Origin State", SUM("Cost Total $") FROM strikes GROUP BY 1`, sc)
	refused(t, "ungranted header", err)
}

// Event-level datasets (unit row) are not joined in dp mode: row numbers of two datasets
// name different events.
func TestRowUnitsNotJoined(t *testing.T) {
	v := newValidator(t)
	sc := dpScope("", "")
	for i := range sc.Tables {
		sc.Tables[i].Unit = "row"
	}
	_, err := v.ValidateDP(context.Background(), "SELECT COUNT(*) FROM residents r JOIN visits v ON r.resident_id = v.resident_id", sc, DPOptions{Epsilon: 1, Delta: 1e-6})
	refused(t, "join of row units", err, "unit is row")
	sc.Tables[1].Unit = "person"
	if _, err := v.ValidateDP(context.Background(), "SELECT COUNT(*) FROM residents", sc, DPOptions{Epsilon: 1, Delta: 1e-6}); err != nil {
		t.Fatal(err)
	}
}
