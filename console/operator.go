package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/veil-dp/veil/daemon/api"
)

// jobStates are the job states the operator's page groups jobs by, in the API's order.
var jobStates = []string{"queued", "running", "review", "released", "rejected", "failed", "canceled", "dev"}

func (c *Console) operator(w http.ResponseWriter, r *http.Request, s *session) {
	c.operatorPage(w, r, s, nil)
}

// operatorPage shows principals (and, once, the token of one just created), runtimes,
// jobs by state and the daemon's health.
func (c *Console) operatorPage(w http.ResponseWriter, r *http.Request, s *session, created *api.Principal) {
	var ps []api.Principal
	if err := c.get(r, s, "/v1/principals", nil, &ps); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var rts []api.Runtime
	if err := c.get(r, s, "/v1/runtimes", nil, &rts); err != nil {
		c.fail(w, r, s, err)
		return
	}
	var js []api.Job
	if err := c.get(r, s, "/v1/jobs", nil, &js); err != nil {
		c.fail(w, r, s, err)
		return
	}
	byState := map[string][]api.Job{}
	for _, j := range js {
		byState[j.Status] = append(byState[j.Status], j)
	}
	type state struct {
		Name string
		Jobs []api.Job
	}
	var states []state
	for _, st := range jobStates {
		states = append(states, state{st, byState[st]})
	}
	var ready map[string]any
	readyErr := c.get(r, s, "/readyz", nil, &ready)
	var version map[string]any
	c.get(r, s, "/v1/version", nil, &version)
	health := tr(c.lang(r), "ready")
	if readyErr != nil {
		health = tr(c.lang(r), "not ready:") + " " + readyErr.Error()
	}
	checks, _ := json.Marshal(ready)
	c.render(w, r, http.StatusOK, "operator", c.newPage(r, s, tr(c.lang(r), "Operations"), map[string]any{
		"Principals": ps, "Runtimes": rts, "States": states, "Health": health, "Ready": readyErr == nil, "Checks": string(checks),
		"Version": version, "Created": created, "Roles": []string{"vendor", "provider", "reviewer", "authority", "auditor", "operator"}}))
}

func (c *Console) createPrincipal(w http.ResponseWriter, r *http.Request, s *session) {
	req := api.CreatePrincipal{Name: strings.TrimSpace(r.PostFormValue("name")), Role: r.PostFormValue("role"), Tenant: strings.TrimSpace(r.PostFormValue("tenant"))}
	var p api.Principal
	if err := c.call(r, s, http.MethodPost, "/v1/principals", req, &p); err != nil {
		c.fail(w, r, s, err)
		return
	}
	// The token is shown on this answer only (no redirect: it must not be in a URL).
	c.operatorPage(w, r, s, &p)
}

func (c *Console) revokePrincipal(w http.ResponseWriter, r *http.Request, s *session) {
	var p api.Principal
	if err := c.call(r, s, http.MethodDelete, "/v1/principals/"+url.PathEscape(r.PathValue("id")), nil, &p); err != nil {
		c.fail(w, r, s, err)
		return
	}
	back(w, r, Prefix+"operator", "revoked")
}
