package console

import (
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// authority shows the pipeline of applications (each stage, its deadline and the default an
// overdue stage takes, or took), the grants it may suspend, reinstate or revoke, and the
// budgets of every dataset and tenant.
func (c *Console) authority(w http.ResponseWriter, r *http.Request, s *session) {
	gs, err := c.grants(r, s)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	var pipeline, live, closed []grantView
	for _, g := range gs {
		v := view(s, g)
		switch g.Status {
		case policy.StatusPending:
			pipeline = append(pipeline, v)
		case policy.StatusActive, policy.StatusSuspended:
			live = append(live, v)
		default:
			closed = append(closed, v)
		}
	}
	var b api.Budgets
	if err := c.get(r, s, "/v1/budget", nil, &b); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "authority", c.newPage(r, s, tr(c.lang(r), "Applications and grants"),
		map[string]any{"Pipeline": pipeline, "Live": live, "Closed": closed, "Budget": b}))
}
