package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Mode is how a grant's outputs may leave.
type Mode string

const (
	ModeThreshold Mode = "threshold"
	ModeDP        Mode = "dp"
	ModeHE        Mode = "he"
	ModeModel     Mode = "model"
)

var modes = []Mode{ModeThreshold, ModeDP, ModeHE, ModeModel}

// Status is where a grant is in its life.
type Status string

const (
	StatusPending   Status = "pending"   // in review
	StatusActive    Status = "active"    // jobs may run
	StatusRejected  Status = "rejected"  // a stage said no
	StatusSuspended Status = "suspended" // temporarily closed by the authority
	StatusRevoked   Status = "revoked"   // closed for good
	StatusExpired   Status = "expired"   // past its validity
)

// Decision is a review stage's outcome.
type Decision string

const (
	Approve Decision = "approve"
	Reject  Decision = "reject"
)

// MaxValidity is the longest a grant may run: the rules allow at most three years.
const MaxValidity = 3 * 365 * 24 * time.Hour

// Application is what a vendor asks for.
type Application struct {
	Scenario string          `json:"scenario"`
	Purpose  string          `json:"purpose"`
	Datasets []DatasetAccess `json:"datasets"`
	Modes    []Mode          `json:"modes"`
	K        int             `json:"k"`
	RoundTo  int             `json:"round_to"`
	Budget   Budget          `json:"budget"`
	ValidFor time.Duration   `json:"valid_for"`
}

// DatasetAccess names a dataset and the columns a grant may touch in it.
type DatasetAccess struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
}

// Stage is one review step of an application.
type Stage struct {
	Role      Role      `json:"role"`
	Org       string    `json:"org,omitempty"` // the provider organisation, for provider stages
	Deadline  time.Time `json:"deadline,omitzero"`
	Default   Decision  `json:"default"`
	Decision  Decision  `json:"decision,omitempty"`
	By        string    `json:"by,omitempty"`
	At        time.Time `json:"at,omitzero"`
	ByDefault bool      `json:"by_default,omitempty"` // the deadline passed and the default was taken
	Held      bool      `json:"held,omitempty"`       // overdue, but its default is not taken: a person decides (Hold)
	Reason    string    `json:"reason,omitempty"`
}

// Name is how messages refer to the stage.
func (s Stage) Name() string {
	if s.Org != "" {
		return string(s.Role) + ":" + s.Org
	}
	return string(s.Role)
}

// Grant is one scenario's authorisation (一场景一授权).
type Grant struct {
	ID         string            `json:"id"`
	Tenant     string            `json:"tenant"`
	Applicant  string            `json:"applicant"`
	Scenario   string            `json:"scenario"`
	Purpose    string            `json:"purpose"`
	Datasets   []DatasetAccess   `json:"datasets"`
	Versions   map[string]string `json:"versions"` // dataset versions when applied
	Modes      []Mode            `json:"modes"`
	K          int               `json:"k"`
	RoundTo    int               `json:"round_to"`
	Budget     Budget            `json:"budget"`
	Created    time.Time         `json:"created"`
	ValidFor   time.Duration     `json:"valid_for"`
	ValidFrom  time.Time         `json:"valid_from,omitzero"`
	ValidUntil time.Time         `json:"valid_until,omitzero"`
	Status     Status            `json:"status"`
	Stages     []Stage           `json:"stages"`
	Reason     string            `json:"reason,omitempty"` // last suspension, revocation or rejection reason
}

// ReviewConfig sets how long each review stage may take and what an overdue stage decides.
type ReviewConfig struct {
	Deadline time.Duration     // per stage
	Defaults map[Role]Decision // per stage role; missing means Approve (超期审核视为同意)
}

// DefaultReviewConfig gives each stage five days, and counts an overdue stage as consent, as
// the rules do.
func DefaultReviewConfig() ReviewConfig {
	return ReviewConfig{Deadline: 5 * 24 * time.Hour, Defaults: map[Role]Decision{}}
}

func (c ReviewConfig) def(r Role) Decision {
	if d, ok := c.Defaults[r]; ok {
		return d
	}
	return Approve
}

// Apply checks an application against the catalog and opens a grant in review. catalog holds
// the schemas of the datasets it names, keyed by dataset name; versions their content hashes.
func Apply(id string, vendor Principal, app Application, catalog map[string]*Schema, versions map[string]string, cfg ReviewConfig, now time.Time) (*Grant, error) {
	if vendor.Role != Vendor || vendor.Tenant == "" {
		return nil, fmt.Errorf("%w: only a vendor of a tenant may apply for a grant", ErrForbidden)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	app.Scenario = strings.TrimSpace(app.Scenario)
	if app.Scenario == "" || len(app.Scenario) > 200 {
		return nil, bad("scenario is required (at most 200 characters): one grant per application scenario")
	}
	if strings.TrimSpace(app.Purpose) == "" || len(app.Purpose) > 2000 {
		return nil, bad("purpose is required (at most 2000 characters)")
	}
	if len(app.Modes) == 0 {
		return nil, bad("name at least one output mode (threshold, dp, he, model)")
	}
	for _, m := range app.Modes {
		if !slices.Contains(modes, m) {
			return nil, bad("unknown output mode %q (threshold, dp, he, model)", m)
		}
	}
	if slices.Contains(app.Modes, ModeThreshold) && (app.K < 2 || app.K > 1000) {
		return nil, bad("threshold mode needs k between 2 and 1000 (groups with fewer persons are suppressed)")
	}
	if slices.Contains(app.Modes, ModeHE) && (app.K < 2 || app.K > 1000) {
		return nil, bad("he mode needs k between 2 and 1000 (groups with fewer persons are not scored; their counts are in the clear)")
	}
	if app.RoundTo < 0 || app.RoundTo > 1000 {
		return nil, bad("round_to must be between 0 and 1000")
	}
	if app.Budget.Epsilon < 0 || app.Budget.Delta < 0 || app.Budget.Delta >= 1e-3 {
		return nil, bad("budget must be non-negative, with delta below 0.001")
	}
	if slices.Contains(app.Modes, ModeDP) && app.Budget.Epsilon == 0 {
		return nil, bad("dp mode needs a budget: give an epsilon")
	}
	if app.Budget.MaxQueryEpsilon < 0 || app.Budget.MaxQueryEpsilon > app.Budget.Epsilon {
		return nil, bad("the per-query epsilon cap must be between 0 and the grant's epsilon")
	}
	if app.ValidFor <= 0 || app.ValidFor > MaxValidity {
		return nil, bad("validity must be positive and at most 3 years")
	}
	if len(app.Datasets) == 0 {
		return nil, bad("name at least one dataset and the columns you need")
	}
	seen := map[string]bool{}
	var orgs []string
	for i, d := range app.Datasets {
		s, ok := catalog[d.Name]
		if !ok {
			return nil, fmt.Errorf("%w: dataset %q is not in the catalog", ErrNotFound, d.Name)
		}
		if seen[d.Name] {
			return nil, bad("dataset %q is named twice", d.Name)
		}
		seen[d.Name] = true
		if len(d.Columns) == 0 {
			return nil, bad("dataset %q: name the columns you need (least necessary)", d.Name)
		}
		cols := map[string]bool{}
		for _, cn := range d.Columns {
			c, ok := s.Column(cn)
			if !ok {
				return nil, bad("dataset %q has no column %q", d.Name, cn)
			}
			if c.Level >= 4 {
				return nil, fmt.Errorf("%w: column %s.%s is level 4 and can never be granted", ErrForbidden, d.Name, cn)
			}
			cols[cn] = true
		}
		// The privacy unit is always part of the grant: the gate needs it to count persons,
		// although queries may not filter or group on it.
		unit := s.UnitColumn().Name
		if !cols[unit] {
			app.Datasets[i].Columns = append(app.Datasets[i].Columns, unit)
		}
		app.Datasets[i].Columns = dedupe(app.Datasets[i].Columns)
		if !slices.Contains(orgs, s.Provider) {
			orgs = append(orgs, s.Provider)
		}
	}
	sort.Strings(orgs)
	g := &Grant{
		ID: id, Tenant: vendor.Tenant, Applicant: vendor.ID,
		Scenario: app.Scenario, Purpose: app.Purpose, Datasets: app.Datasets, Versions: versions,
		Modes: app.Modes, K: app.K, RoundTo: app.RoundTo, Budget: app.Budget,
		Created: now, ValidFor: app.ValidFor, Status: StatusPending,
	}
	g.Stages = append(g.Stages, Stage{Role: Operator, Default: cfg.def(Operator)}, Stage{Role: Authority, Default: cfg.def(Authority)})
	for _, o := range orgs {
		g.Stages = append(g.Stages, Stage{Role: Provider, Org: o, Default: cfg.def(Provider)})
	}
	g.Stages[0].Deadline = now.Add(cfg.Deadline)
	return g, nil
}

func dedupe(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// current returns the index of the stage under review, or -1.
func (g *Grant) current() int {
	if g.Status != StatusPending {
		return -1
	}
	for i, s := range g.Stages {
		if s.Decision == "" {
			return i
		}
	}
	return -1
}

// Current returns the stage under review, if any.
func (g *Grant) Current() (Stage, bool) {
	i := g.current()
	if i < 0 {
		return Stage{}, false
	}
	return g.Stages[i], true
}

// Advance applies the configured default to every overdue stage, in order, and returns the
// stages it decided so the caller can record them. stageTime is how long each later stage
// gets from the moment the previous one is decided.
func (g *Grant) Advance(now time.Time, stageTime time.Duration) []Stage {
	var decided []Stage
	for {
		i := g.current()
		if i < 0 || g.Stages[i].Held || now.Before(g.Stages[i].Deadline) {
			return decided
		}
		s := &g.Stages[i]
		s.Decision, s.ByDefault, s.At = s.Default, true, s.Deadline
		s.Reason = "deadline passed; the configured default was taken"
		decided = append(decided, *s)
		g.afterDecision(i, s.Deadline, stageTime)
	}
}

func (g *Grant) afterDecision(i int, at time.Time, stageTime time.Duration) {
	s := g.Stages[i]
	if s.Decision == Reject {
		g.Status = StatusRejected
		g.Reason = fmt.Sprintf("rejected at stage %s: %s", s.Name(), s.Reason)
		return
	}
	if i+1 < len(g.Stages) {
		g.Stages[i+1].Deadline = at.Add(stageTime)
		return
	}
	g.Status = StatusActive
	g.ValidFrom = at
	g.ValidUntil = at.Add(g.ValidFor)
}

// Hold undoes the default approval of the last stage, which made g active, and leaves that
// stage to its reviewer, with no default any more: the grant is pending again. The caller
// holds a grant whose budget slice could not be given at that approval, so that whether a
// slice fits is never decided, nor shown to the vendor, by a deadline alone.
func (g *Grant) Hold() {
	s := &g.Stages[len(g.Stages)-1]
	s.Decision, s.ByDefault, s.At, s.By, s.Held = "", false, time.Time{}, "", true
	s.Reason = "deadline passed; this stage awaits its reviewer's decision"
	g.Status, g.ValidFrom, g.ValidUntil = StatusPending, time.Time{}, time.Time{}
}

// Review records p's decision on the stage under review. Overdue stages are settled first, so
// a reviewer who comes after the deadline finds the default already taken.
func (g *Grant) Review(p Principal, d Decision, reason string, now time.Time, stageTime time.Duration) ([]Stage, error) {
	if d != Approve && d != Reject {
		return nil, fmt.Errorf("%w: decision must be approve or reject", ErrInvalid)
	}
	decided := g.Advance(now, stageTime)
	i := g.current()
	if i < 0 {
		return decided, fmt.Errorf("%w: grant %s is %s, not in review", ErrConflict, g.ID, g.Status)
	}
	s := &g.Stages[i]
	if p.Role != s.Role || (s.Org != "" && p.Tenant != s.Org) {
		return decided, fmt.Errorf("%w: grant %s awaits review by %s", ErrForbidden, g.ID, s.Name())
	}
	if d == Reject && strings.TrimSpace(reason) == "" {
		return decided, fmt.Errorf("%w: a rejection needs a reason", ErrInvalid)
	}
	s.Decision, s.By, s.At, s.Reason, s.Held = d, p.ID, now, reason, false
	decided = append(decided, *s)
	g.afterDecision(i, now, stageTime)
	return decided, nil
}

// Effective returns the status as of now: an active or suspended grant past its validity is
// expired.
func (g *Grant) Effective(now time.Time) Status {
	if (g.Status == StatusActive || g.Status == StatusSuspended) && !now.Before(g.ValidUntil) {
		return StatusExpired
	}
	return g.Status
}

// Suspend closes an active grant for now (暂时关闭使用权限).
func (g *Grant) Suspend(p Principal, reason string, now time.Time) error {
	return g.transition(p, reason, now, StatusActive, StatusSuspended)
}

// Reinstate reopens a suspended grant.
func (g *Grant) Reinstate(p Principal, reason string, now time.Time) error {
	return g.transition(p, reason, now, StatusSuspended, StatusActive)
}

// Revoke closes a grant for good (撤回授权).
func (g *Grant) Revoke(p Principal, reason string, now time.Time) error {
	if p.Role != Authority {
		return fmt.Errorf("%w: only the authority may revoke a grant", ErrForbidden)
	}
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: give a reason", ErrInvalid)
	}
	switch g.Status {
	case StatusRevoked, StatusRejected:
		return fmt.Errorf("%w: grant %s is already %s", ErrConflict, g.ID, g.Status)
	}
	g.Status, g.Reason = StatusRevoked, reason
	return nil
}

func (g *Grant) transition(p Principal, reason string, now time.Time, from, to Status) error {
	if p.Role != Authority {
		return fmt.Errorf("%w: only the authority may suspend or reinstate a grant", ErrForbidden)
	}
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: give a reason", ErrInvalid)
	}
	if st := g.Effective(now); st != from {
		return fmt.Errorf("%w: grant %s is %s, not %s", ErrConflict, g.ID, st, from)
	}
	g.Status, g.Reason = to, reason
	return nil
}

// Usable reports whether a job of the given mode may run under the grant now. It is checked
// when a job is submitted and again when it starts running.
func (g *Grant) Usable(now time.Time, m Mode) error {
	if st := g.Effective(now); st != StatusActive {
		return fmt.Errorf("%w: grant %s is %s; jobs run only under an active grant", ErrConflict, g.ID, st)
	}
	if !slices.Contains(g.Modes, m) {
		return fmt.Errorf("%w: grant %s does not allow output mode %s", ErrForbidden, g.ID, m)
	}
	return nil
}

// Access returns the columns the grant allows in a dataset.
func (g *Grant) Access(dataset string) ([]string, bool) {
	for _, d := range g.Datasets {
		if d.Name == dataset {
			return d.Columns, true
		}
	}
	return nil, false
}
