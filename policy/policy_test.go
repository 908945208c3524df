package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const goodSchema = `
name: residents
provider: civil-affairs
unit: person
max_rows_per_unit: 1
budget: {epsilon: 10, delta: 1.0e-6}
columns:
  - {name: resident_id, type: BIGINT, level: 3, kind: none, privacy_unit: true, mask: hmac}
  - {name: id_number, type: VARCHAR, level: 3, kind: id_number, mask: "keep:6,4"}
  - {name: district, type: VARCHAR, level: 1, kind: none, domain: [a, b]}
  - {name: age, type: INTEGER, level: 2, kind: none, bounds: [0, 110], mask: "band:5"}
  - {name: religion, type: VARCHAR, level: 4, kind: none}
`

func TestParseSchema(t *testing.T) {
	s, err := ParseSchema([]byte(goodSchema))
	if err != nil {
		t.Fatal(err)
	}
	if s.UnitColumn().Name != "resident_id" {
		t.Errorf("unit column = %q", s.UnitColumn().Name)
	}
	if c, _ := s.Column("id_number"); !c.Identifier() {
		t.Error("id_number should be a direct identifier")
	}
	bad := []struct{ name, from, to, want string }{
		{"no unit", "privacy_unit: true, ", "", "exactly one column must be the privacy unit"},
		{"level 5", "level: 2, kind: none, bounds", "level: 5, kind: none, bounds", "level must be"},
		{"bad kind", "kind: id_number", "kind: passport", "kind must be one of"},
		{"identifier without mask", `, mask: "keep:6,4"`, "", "needs a mask rule"},
		{"bad bounds", "bounds: [0, 110]", "bounds: [110, 0]", "bounds must be"},
		{"bad mask", `mask: "band:5"`, `mask: "rot13"`, "unknown mask rule"},
		{"unknown field", "unit: person", "unit: person\nsecret: x", "field secret not found"},
		{"reserved name", "name: residents", "name: main", "reserved"},
		{"bad budget", "epsilon: 10", "epsilon: -1", "budget.epsilon"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(goodSchema, tc.from, tc.to, 1)
			if src == goodSchema {
				t.Fatalf("test case did not change the schema")
			}
			_, err := ParseSchema([]byte(src))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func catalog(t *testing.T) map[string]*Schema {
	s, err := ParseSchema([]byte(goodSchema))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*Schema{"residents": s}
}

var (
	vendor    = Principal{ID: "p-v", Role: Vendor, Tenant: "acme"}
	operator  = Principal{ID: "p-o", Role: Operator}
	authority = Principal{ID: "p-a", Role: Authority}
	provider  = Principal{ID: "p-p", Role: Provider, Tenant: "civil-affairs"}
	t0        = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func app() Application {
	return Application{Scenario: "s", Purpose: "p", Modes: []Mode{ModeThreshold}, K: 10, ValidFor: 365 * 24 * time.Hour,
		Datasets: []DatasetAccess{{Name: "residents", Columns: []string{"district", "age"}}}}
}

func TestApplyRefusals(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Application)
		kind error
		want string
	}{
		{"level 4", func(a *Application) { a.Datasets[0].Columns = []string{"religion"} }, ErrForbidden, "level 4"},
		{"unknown column", func(a *Application) { a.Datasets[0].Columns = []string{"salary"} }, ErrInvalid, "no column"},
		{"unknown dataset", func(a *Application) { a.Datasets[0].Name = "taxes" }, ErrNotFound, "not in the catalog"},
		{"too long", func(a *Application) { a.ValidFor = MaxValidity + time.Hour }, ErrInvalid, "at most 3 years"},
		{"small k", func(a *Application) { a.K = 1 }, ErrInvalid, "k between"},
		{"no scenario", func(a *Application) { a.Scenario = " " }, ErrInvalid, "scenario"},
		{"bad mode", func(a *Application) { a.Modes = []Mode{"raw"} }, ErrInvalid, "unknown output mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := app()
			tc.edit(&a)
			_, err := Apply("g-1", vendor, a, catalog(t), nil, DefaultReviewConfig(), t0)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.kind, tc.want)
			}
		})
	}
	if _, err := Apply("g-1", operator, app(), catalog(t), nil, DefaultReviewConfig(), t0); !errors.Is(err, ErrForbidden) {
		t.Fatalf("operator applying: err = %v", err)
	}
}

func TestReviewWorkflow(t *testing.T) {
	cfg := DefaultReviewConfig()
	g, err := Apply("g-1", vendor, app(), catalog(t), nil, cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	if cols, _ := g.Access("residents"); !strings.Contains(strings.Join(cols, ","), "resident_id") {
		t.Errorf("the privacy unit should be added to the grant's columns, got %v", cols)
	}
	// Out of turn: the authority cannot review before the operator.
	if _, err := g.Review(authority, Approve, "", t0, cfg.Deadline); !errors.Is(err, ErrForbidden) {
		t.Fatalf("authority out of turn: %v", err)
	}
	if _, err := g.Review(operator, Approve, "", t0.Add(time.Hour), cfg.Deadline); err != nil {
		t.Fatal(err)
	}
	// The authority lets its deadline pass: the default (approve) is taken and recorded.
	late := t0.Add(time.Hour + cfg.Deadline + time.Minute)
	decided := g.Advance(late, cfg.Deadline)
	if len(decided) != 1 || decided[0].Role != Authority || !decided[0].ByDefault || decided[0].Decision != Approve {
		t.Fatalf("advance decided %+v", decided)
	}
	// A provider of another agency cannot decide for civil-affairs.
	other := Principal{ID: "p-x", Role: Provider, Tenant: "health"}
	if _, err := g.Review(other, Approve, "", late, cfg.Deadline); !errors.Is(err, ErrForbidden) {
		t.Fatalf("other provider: %v", err)
	}
	if _, err := g.Review(provider, Approve, "", late, cfg.Deadline); err != nil {
		t.Fatal(err)
	}
	if g.Status != StatusActive || !g.ValidUntil.Equal(late.Add(365*24*time.Hour)) {
		t.Fatalf("status %s valid until %v", g.Status, g.ValidUntil)
	}
	if err := g.Usable(late, ModeThreshold); err != nil {
		t.Fatal(err)
	}
	if err := g.Usable(late, ModeDP); !errors.Is(err, ErrForbidden) {
		t.Fatalf("dp under threshold grant: %v", err)
	}
	if err := g.Suspend(vendor, "x", late); !errors.Is(err, ErrForbidden) {
		t.Fatalf("vendor suspends: %v", err)
	}
	if err := g.Suspend(authority, "audit", late); err != nil {
		t.Fatal(err)
	}
	if err := g.Usable(late, ModeThreshold); !errors.Is(err, ErrConflict) {
		t.Fatalf("suspended grant usable: %v", err)
	}
	if err := g.Reinstate(authority, "done", late); err != nil {
		t.Fatal(err)
	}
	if err := g.Usable(g.ValidUntil, ModeThreshold); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired grant usable: %v", err)
	}
	if err := g.Revoke(authority, "breach", late); err != nil {
		t.Fatal(err)
	}
	if err := g.Reinstate(authority, "oops", late); !errors.Is(err, ErrConflict) {
		t.Fatalf("reinstate revoked: %v", err)
	}
}

func TestOverdueRejectDefault(t *testing.T) {
	cfg := DefaultReviewConfig()
	cfg.Defaults[Operator] = Reject
	g, err := Apply("g-1", vendor, app(), catalog(t), nil, cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	g.Advance(t0.Add(cfg.Deadline), cfg.Deadline)
	if g.Status != StatusRejected || !g.Stages[0].ByDefault {
		t.Fatalf("status %s stages %+v", g.Status, g.Stages)
	}
	if _, err := g.Review(operator, Approve, "", t0.Add(cfg.Deadline), cfg.Deadline); !errors.Is(err, ErrConflict) {
		t.Fatalf("review after default reject: %v", err)
	}
}

func TestVisibility(t *testing.T) {
	g, _ := Apply("g-1", vendor, app(), catalog(t), nil, DefaultReviewConfig(), t0)
	cases := []struct {
		p    Principal
		want bool
	}{
		{vendor, true},
		{Principal{Role: Vendor, Tenant: "rival"}, false},
		{provider, true},
		{Principal{Role: Provider, Tenant: "health"}, false},
		{operator, true},
		{Principal{Role: Auditor}, false},
	}
	for _, tc := range cases {
		if got := CanSeeGrant(tc.p, g); got != tc.want {
			t.Errorf("CanSeeGrant(%+v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if CanSeeTenantObject(Principal{Role: Vendor, Tenant: "rival"}, "acme") {
		t.Error("a vendor sees another tenant's job")
	}
	if err := Allow(vendor, ActOutputReview); !errors.Is(err, ErrForbidden) {
		t.Error("a vendor may review outputs")
	}
}

// TestHoldLastStage: a held stage takes no default, however late, and its reviewer decides.
func TestHoldLastStage(t *testing.T) {
	cfg := DefaultReviewConfig()
	g, err := Apply("g-1", vendor, app(), catalog(t), nil, cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	late := t0.Add(10 * cfg.Deadline)
	if g.Advance(late, cfg.Deadline); g.Status != StatusActive {
		t.Fatalf("all stages overdue: %s", g.Status)
	}
	g.Hold()
	last := g.Stages[len(g.Stages)-1]
	if g.Status != StatusPending || !last.Held || last.Decision != "" || !g.ValidUntil.IsZero() {
		t.Fatalf("held: %s %+v", g.Status, last)
	}
	if decided := g.Advance(late.Add(10*cfg.Deadline), cfg.Deadline); len(decided) != 0 || g.Status != StatusPending {
		t.Fatalf("a held stage took its default: %+v", decided)
	}
	if _, err := g.Review(provider, Reject, "no room", late, cfg.Deadline); err != nil || g.Status != StatusRejected || g.Stages[len(g.Stages)-1].Held {
		t.Fatalf("the reviewer's decision on a held stage: %s %v", g.Status, err)
	}
}
