package daemon

import (
	"context"
	"net/http"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// planJob plans a job without running it or spending: the request is a job's.
func (s *Server) planJob(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	return answer(w, r, http.StatusOK, func(ctx context.Context, req api.SubmitJob) (api.JobPlan, error) {
		return s.jobs.PlanJob(ctx, p, req)
	})
}
