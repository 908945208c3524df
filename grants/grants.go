package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// parseValidity accepts a Go duration or a number of days ("365d").
func parseValidity(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil {
			return 0, fmt.Errorf("%w: validity %q: use days (365d) or a duration (720h)", policy.ErrInvalid, s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w: validity %q: use days (365d) or a duration (720h)", policy.ErrInvalid, s)
	}
	return d, nil
}

// Service is the grants as stored, and their review.
type Service struct {
	platform.Env
	ledger *ledger.Book
}

// New returns the grants of db; the last approval of a grant draws its budget slices from l.
func New(env platform.Env, l *ledger.Book) *Service {
	return &Service{Env: env, ledger: l}
}

// Apply records a vendor's application for a grant, to be reviewed stage by stage.
func (s *Service) Apply(ctx context.Context, p policy.Principal, req api.ApplyGrant) (*policy.Grant, error) {
	valid, err := parseValidity(req.ValidFor)
	if err != nil {
		return nil, err
	}
	app := policy.Application{Scenario: req.Scenario, Purpose: req.Purpose, K: req.K, RoundTo: req.RoundTo,
		Budget: policy.Budget{Epsilon: req.Epsilon, Delta: req.Delta, MaxQueryEpsilon: req.MaxQuery}, ValidFor: valid}
	var names []string
	for _, d := range req.Datasets {
		app.Datasets = append(app.Datasets, policy.DatasetAccess{Name: d.Name, Columns: d.Columns})
		names = append(names, d.Name)
	}
	for _, m := range req.Modes {
		app.Modes = append(app.Modes, policy.Mode(m))
	}
	var g *policy.Grant
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		schemas, sets, err := catalog.Load(ctx, tx, names)
		if err != nil {
			return err
		}
		for n, sch := range schemas {
			if sch.Owner != "" {
				// A vendor's fused upload joins its own grant through the authority only.
				return fmt.Errorf("%w: dataset %q is not in the catalog", policy.ErrNotFound, n)
			}
		}
		versions := map[string]string{}
		for n, d := range sets {
			versions[n] = d.Version
		}
		g, err = policy.Apply(platform.NewID("g"), p, app, schemas, versions, s.Config.Review, s.Rec.Now())
		if err != nil {
			return err
		}
		// Refused now rather than after the review stages: what could never be approved.
		if err := s.admissible(ctx, tx, g); err != nil {
			return err
		}
		if err := Put(ctx, tx, g, s.Rec.Now()); err != nil {
			return err
		}
		return s.Rec.Record(ctx, tx, p, "grant.apply", "grant/"+g.ID, map[string]string{"scenario": g.Scenario, "datasets": strings.Join(names, ",")})
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// Put stores a grant.
func Put(ctx context.Context, tx store.Tx, g *policy.Grant, now time.Time) error {
	body, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return tx.PutGrant(ctx, store.Grant{ID: g.ID, Tenant: g.Tenant, Status: string(g.Status), Body: body, Updated: now})
}

// Decode reads a stored grant.
func Decode(sg store.Grant) (*policy.Grant, error) {
	var g policy.Grant
	if err := json.Unmarshal(sg.Body, &g); err != nil {
		return nil, fmt.Errorf("decode grant %s: %w", sg.ID, err)
	}
	return &g, nil
}

// Load reads a grant that p may see. A grant p may not see is reported as not found,
// exactly like one that does not exist.
func Load(ctx context.Context, tx store.Tx, p policy.Principal, id string) (*policy.Grant, error) {
	sg, err := tx.Grant(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("%w: grant %s not found", policy.ErrNotFound, id)
	}
	g, err := Decode(sg)
	if err != nil {
		return nil, err
	}
	if !policy.CanSeeGrant(p, g) {
		return nil, fmt.Errorf("%w: grant %s not found", policy.ErrNotFound, id)
	}
	return g, nil
}

// Settle applies the configured default to every overdue review stage and records each
// such decision. It runs before grants are read and periodically.
func (s *Service) Settle(ctx context.Context) error {
	return s.DB.Update(ctx, func(tx store.Tx) error {
		gs, err := tx.Grants(ctx, "")
		if err != nil {
			return err
		}
		for _, sg := range gs {
			if sg.Status != string(policy.StatusPending) {
				continue
			}
			g, err := Decode(sg)
			if err != nil {
				return err
			}
			decided := g.Advance(s.Rec.Now(), s.Config.Review.Deadline)
			if len(decided) == 0 {
				continue
			}
			if g.Status == policy.StatusActive {
				// A default approval that cannot be given its slice is not taken: whether a
				// slice fits depends on other tenants' grants, so it is decided by a person
				// (the last stage's reviewer, who may see the ledger), never by a deadline,
				// and the vendor reads only that the stage awaits its reviewer.
				var ob *ledger.OverBudget
				if err := s.ledger.Allocate(ctx, tx, g); errors.As(err, &ob) {
					g.Hold()
					decided = decided[:len(decided)-1]
					if err := s.Rec.Record(ctx, tx, platform.System, "grant.review.held", "grant/"+g.ID, ob.Detail()); err != nil {
						return err
					}
					if s.Log != nil {
						s.Log.Warn("grant held for its last reviewer: its slice does not fit", "grant", g.ID, "dataset", ob.Dataset)
					}
				} else if err != nil {
					return err
				}
			}
			if err := Put(ctx, tx, g, s.Rec.Now()); err != nil {
				return err
			}
			for _, st := range decided {
				if err := s.Rec.Record(ctx, tx, platform.System, "grant.review.default", "grant/"+g.ID, map[string]string{
					"stage": st.Name(), "decision": string(st.Decision), "deadline": st.Deadline.Format(time.RFC3339)}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// List lists the grants p may see, each with its status as of now.
func (s *Service) List(ctx context.Context, p policy.Principal) ([]*policy.Grant, error) {
	if err := s.Settle(ctx); err != nil {
		return nil, err
	}
	out := []*policy.Grant{}
	tenant := ""
	if p.Role == policy.Vendor {
		tenant = p.Tenant
	}
	err := s.DB.View(ctx, func(tx store.Tx) error {
		gs, err := tx.Grants(ctx, tenant)
		for _, sg := range gs {
			g, err := Decode(sg)
			if err != nil {
				return err
			}
			if policy.CanSeeGrant(p, g) {
				g.Status = g.Effective(s.Rec.Now())
				out = append(out, g)
			}
		}
		return err
	})
	return out, err
}

// Show shows a grant p may see, with its status as of now.
func (s *Service) Show(ctx context.Context, p policy.Principal, id string) (*policy.Grant, error) {
	if err := s.Settle(ctx); err != nil {
		return nil, err
	}
	var g *policy.Grant
	err := s.DB.View(ctx, func(tx store.Tx) error {
		var err error
		g, err = Load(ctx, tx, p, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	g.Status = g.Effective(s.Rec.Now())
	return g, nil
}

// Act approves, rejects, suspends, reinstates or revokes a grant. A grant that is revoked or
// rejected leaves its fused uploads to be swept.
func (s *Service) Act(ctx context.Context, p policy.Principal, id, action string, req api.Decide) (*policy.Grant, error) {
	if err := s.Settle(ctx); err != nil {
		return nil, err
	}
	var g *policy.Grant
	err := s.DB.Update(ctx, func(tx store.Tx) error {
		var err error
		if g, err = Load(ctx, tx, p, id); err != nil {
			return err
		}
		details := map[string]string{"reason": req.Reason}
		switch action {
		case "approve", "reject":
			if err := policy.Allow(p, policy.ActGrantReview); err != nil {
				return err
			}
			stage, _ := g.Current()
			if _, err := g.Review(p, policy.Decision(action), req.Reason, s.Rec.Now(), s.Config.Review.Deadline); err != nil {
				return err
			}
			details["stage"] = stage.Name()
			details["status"] = string(g.Status)
			if g.Status == policy.StatusActive {
				// The last approval hands out the budget slices; if they do not fit, the
				// approval does not happen.
				if err := s.ledger.Allocate(ctx, tx, g); err != nil {
					return ownFigures(ctx, tx, p, err)
				}
			}
		case "suspend":
			err = g.Suspend(p, req.Reason, s.Rec.Now())
		case "reinstate":
			err = g.Reinstate(p, req.Reason, s.Rec.Now())
		case "revoke":
			err = g.Revoke(p, req.Reason, s.Rec.Now())
		default:
			return fmt.Errorf("%w: unknown grant action %q (approve, reject, suspend, reinstate, revoke)", policy.ErrNotFound, action)
		}
		if err != nil {
			return err
		}
		if err := Put(ctx, tx, g, s.Rec.Now()); err != nil {
			return err
		}
		return s.Rec.Record(ctx, tx, p, "grant."+action, "grant/"+g.ID, details)
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// Datasets names the datasets of a grant.
func Datasets(g *policy.Grant) []string {
	var names []string
	for _, d := range g.Datasets {
		names = append(names, d.Name)
	}
	return names
}

// Scope builds what the engine may see of a grant: the granted columns of each dataset,
// which of them is the privacy unit, which are direct identifiers.
func Scope(g *policy.Grant, schemas map[string]*policy.Schema, sets map[string]store.Dataset, mode policy.Mode) engine.Scope {
	sc := engine.Scope{Mode: string(mode)}
	for _, d := range g.Datasets {
		sch := schemas[d.Name]
		t := engine.Table{Name: d.Name, Files: sets[d.Name].Files, MaxRowsPerUnit: sch.MaxRowsPerUnit, UnitComplete: sch.UnitComplete,
			MaxRowsPerUnitBy: sch.MaxRowsPerUnitBy}
		for col, vals := range sch.ValueUnits {
			if t.ValueUnits == nil {
				t.ValueUnits = map[string]map[string]engine.ValueUnits{}
			}
			m := make(map[string]engine.ValueUnits, len(vals))
			for v, u := range vals {
				m[v] = engine.ValueUnits{Rows: u.Rows, Units: u.Units, Max: u.Max}
			}
			t.ValueUnits[col] = m
		}
		t.Unit = sch.Unit
		for _, cn := range d.Columns {
			c, _ := sch.Column(cn)
			t.Columns = append(t.Columns, engine.Column{Name: cn, Source: c.Source, Type: c.Type, PrivacyUnit: c.PrivacyUnit, Identifier: c.Identifier(),
				Bounds: c.Bounds, Domain: c.Domain})
		}
		sc.Tables = append(sc.Tables, t)
	}
	return sc
}

// ownFigures keeps a refused slice's figures from a provider approving last whose refusal is
// on another provider's dataset: what a dataset has left is its provider's and the platform
// roles' to see, so that approver reads which dataset refused, not its figures.
func ownFigures(ctx context.Context, tx store.Tx, p policy.Principal, err error) error {
	var ob *ledger.OverBudget
	if p.Role != policy.Provider || !errors.As(err, &ob) {
		return err
	}
	if d, derr := tx.Dataset(ctx, ob.Dataset); derr == nil && d.Provider == p.Tenant {
		return err
	}
	return fmt.Errorf("%w: dataset %s, of another provider, cannot give grant %s its slice (its figures are its provider's and the data bureau's to see; slices given are never returned): reject this application with a reason, so that its vendor may apply for less",
		ledger.ErrBudget, ob.Dataset, ob.Grant)
}
