package console

import (
	"net/http"
	"net/url"
	"slices"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// grantActions are the grant actions the console posts, as the API names them.
var grantActions = []string{"approve", "reject", "suspend", "reinstate", "revoke"}

func (c *Console) grants(r *http.Request, s *session) ([]policy.Grant, error) {
	var gs []policy.Grant
	return gs, c.get(r, s, "/v1/grants", nil, &gs)
}

// myStage says whether the grant waits for the principal's stage: its role, and for a
// provider stage its organisation.
func myStage(s *session, g *policy.Grant) (policy.Stage, bool) {
	st, ok := g.Current()
	if !ok || st.Role != s.p.Role {
		return st, false
	}
	if st.Role == policy.Provider && st.Org != "" && st.Org != s.p.Tenant {
		return st, false
	}
	return st, true
}

// grantView is a grant with what the principal may do to it.
type grantView struct {
	G       policy.Grant
	Stage   policy.Stage
	Waiting bool // at a stage, not yet decided
	Mine    bool // the stage is the principal's
	Actions []string
}

func view(s *session, g policy.Grant) grantView {
	v := grantView{G: g}
	v.Stage, v.Mine = myStage(s, &g)
	_, v.Waiting = g.Current()
	if v.Mine && can(s, policy.ActGrantReview) {
		v.Actions = append(v.Actions, "approve", "reject")
	}
	if can(s, policy.ActGrantSuspend) {
		switch g.Status {
		case policy.StatusActive:
			v.Actions = append(v.Actions, "suspend", "revoke")
		case policy.StatusSuspended:
			v.Actions = append(v.Actions, "reinstate", "revoke")
		}
	}
	return v
}

func (c *Console) grant(w http.ResponseWriter, r *http.Request, s *session) {
	var g policy.Grant
	if err := c.get(r, s, "/v1/grants/"+url.PathEscape(r.PathValue("id")), nil, &g); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var b api.Budgets
	var budget []api.GrantBudget
	if can(s, policy.ActBudgetRead) && c.get(r, s, "/v1/budget", nil, &b) == nil {
		for _, x := range b.Grants {
			if x.Grant == g.ID {
				budget = append(budget, x)
			}
		}
	}
	c.render(w, r, http.StatusOK, "grant", c.newPage(r, s, tr(c.lang(r), "Grant")+" "+g.ID, map[string]any{"V": view(s, g), "Budget": budget}))
}

func (c *Console) actOnGrant(w http.ResponseWriter, r *http.Request, s *session) {
	id, action := r.PathValue("id"), r.PathValue("action")
	if !slices.Contains(grantActions, action) {
		c.fail(w, r, s, &apiError{Status: http.StatusNotFound, Kind: "not_found", Msg: tr(c.lang(r), "There is no such page.")})
		return
	}
	var g policy.Grant
	if err := c.call(r, s, http.MethodPost, "/v1/grants/"+url.PathEscape(id)+"/"+action, api.Decide{Reason: r.PostFormValue("reason")}, &g); err != nil {
		c.fail(w, r, s, err)
		return
	}
	back(w, r, Prefix+"grants/"+url.PathEscape(id), "granted")
}
