package client

import (
	"context"

	"github.com/veil-dp/veil/daemon/api"
)

// PlanJob plans a job without running it: what it would spend and how noisy its release
// would be. Nothing is spent.
func (c *Client) PlanJob(ctx context.Context, req api.SubmitJob) (api.JobPlan, error) {
	var p api.JobPlan
	return p, c.do(ctx, "POST", "/v1/jobs/plan", req, &p)
}
