package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
)

// Handler returns the HTTP API. Each route names the action its caller's role must be
// allowed (none: the handler or the service decides, as for grant actions that depend on
// the stage, and the audit routes).
func (s *Server) Handler() http.Handler {
	mux := newRouteMux()
	h := func(pattern string, act policy.Action, fn handler) {
		mux.Handle(pattern, s.authed(fn, act, maxJSONBody))
	}
	mux.Handle("PUT /v1/blobs", s.authed(s.uploadBlob, policy.ActJobSubmit, maxBlobBytes))
	mux.Handle("PUT /v1/programs", s.authed(s.uploadProgram, policy.ActJobSubmit, maxProgramBytes))
	mux.Handle("PUT /v1/grants/{id}/fusion/{name}", s.authed(s.uploadFusion, policy.ActJobSubmit, maxFusionBytes))
	s.uploadRoutes(mux)
	s.versionRoutes(mux)
	h("GET /v1/whoami", "", s.whoami)
	h("PUT /v1/whoami/zone", "", s.setZone)
	h("POST /v1/principals", policy.ActPrincipalManage, s.createPrincipal)
	h("GET /v1/principals", policy.ActPrincipalManage, s.listPrincipals)
	h("DELETE /v1/principals/{id}", policy.ActPrincipalManage, s.revokePrincipal)
	h("POST /v1/principals/{id}/rotate", policy.ActPrincipalManage, s.rotatePrincipal)
	h("POST /v1/datasets", policy.ActDatasetRegister, s.registerDataset)
	h("GET /v1/datasets", policy.ActDatasetRead, s.listDatasets)
	h("GET /v1/datasets/{name}", policy.ActDatasetRead, s.showDataset)
	h("POST /v1/datasets/{name}/feedback", policy.ActFeedbackSubmit, s.submitFeedback)
	h("GET /v1/feedback", policy.ActFeedbackRead, s.listFeedback)
	h("POST /v1/feedback/{id}/resolve", "", s.resolveFeedback)
	h("POST /v1/grants", policy.ActGrantApply, s.applyGrant)
	h("GET /v1/grants", policy.ActGrantRead, s.listGrants)
	h("GET /v1/grants/{id}", policy.ActGrantRead, s.showGrant)
	h("POST /v1/grants/{id}/{action}", "", s.actOnGrant)
	h("POST /v1/jobs", policy.ActJobSubmit, s.submitJob)
	h("POST /v1/jobs/plan", policy.ActJobSubmit, s.planJob)
	h("GET /v1/jobs", policy.ActJobRead, s.listJobs)
	h("GET /v1/jobs/{id}", policy.ActJobRead, s.showJob)
	h("POST /v1/jobs/{id}/cancel", policy.ActJobCancel, s.cancelJob)
	h("GET /v1/reviews", policy.ActOutputReview, s.listReviews)
	h("GET /v1/reviews/{id}", policy.ActOutputReview, s.showReview)
	h("POST /v1/reviews/{id}", policy.ActOutputReview, s.decideReview)
	h("GET /v1/exports/{id}", policy.ActExportGet, s.getExport)
	h("GET /v1/budget", policy.ActBudgetRead, s.showBudget)
	h("GET /v1/budget/spends", policy.ActBudgetRead, s.budgetSpends)
	h("POST /v1/datasets/{name}/twin", policy.ActDatasetRegister, s.buildTwin)
	h("POST /v1/datasets/{name}/fusion/approve", policy.ActGrantSuspend, s.approveFusion)
	h("POST /v1/dev/jobs", policy.ActJobSubmit, s.submitDev)
	h("GET /v1/dev/jobs/{id}", policy.ActJobRead, s.showDev)
	h("POST /v1/dev/jobs/{id}/promote", policy.ActJobSubmit, s.promoteDev)
	h("POST /v1/runtimes", policy.ActRuntimeManage, s.registerRuntime)
	h("GET /v1/runtimes", policy.ActRuntimeRead, s.listRuntimes)
	h("GET /v1/audit/records", "", s.auditRecords)
	h("GET /v1/audit/checkpoints", "", s.auditCheckpoints)
	h("GET /v1/audit/verify", "", s.auditVerify)
	h("GET /v1/audit/proof/{index}", "", s.auditProof)
	h("GET /v1/audit/checkpoint", "", s.auditCheckpoint)
	h("GET /v1/audit/consistency", "", s.auditConsistency)
	mux.HandleFunc("GET /v1/platform/keyring", s.platformKeyring)
	mux.HandleFunc("GET /v1/platform/key", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.PlatformKey{VerifierKey: s.key.VerifierKey(), PublicKey: s.key.PublicKey()})
	})
	// Operations (ops.go): liveness and readiness for probes (no token, nothing revealed),
	// the metrics for the operator, the API's description, the daemon's version.
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	h("GET /metrics", policy.ActMetricsRead, s.serveMetrics)
	mux.HandleFunc("GET /v1/openapi.json", serveOpenAPI)
	h("GET /v1/version", "", s.version)
	mux.HandleFunc(catchAll, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.Error{Error: "no such endpoint: " + r.Method + " " + r.URL.Path, Kind: "not_found"})
	})
	return mux
}

// handler serves one route for an authenticated principal.
type handler func(w http.ResponseWriter, r *http.Request, p policy.Principal) error

// authed authenticates the bearer token, checks that the principal's role may do act (when
// the route names one) and hands the principal to fn. Errors are mapped to statuses in one
// place.
func (s *Server) authed(fn handler, act policy.Action, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		err := checkQuery(r)
		var p policy.Principal
		if err == nil {
			p, err = s.authenticate(r)
		}
		if err == nil && act != "" {
			err = policy.Allow(p, act)
		}
		if err == nil {
			err = fn(w, r, p)
		}
		if err != nil {
			s.noteRefusal(r, p, act, err)
			code, kind := status(err)
			msg := err.Error()
			if code == http.StatusInternalServerError {
				s.slog.Error("request failed", "method", r.Method, "path", r.URL.Path, "principal", p.ID, "err", err)
				msg = "internal error; the operator can find details in the daemon log"
			} else {
				s.slog.Info("request refused", "method", r.Method, "path", r.URL.Path, "principal", p.ID, "status", code, "err", err)
			}
			retryAfter(w, err)
			writeJSON(w, code, api.Error{Error: msg, Kind: kind})
		}
	})
}

func (s *Server) authenticate(r *http.Request) (policy.Principal, error) {
	if len(r.Header.Values("Authorization")) > 1 {
		// A proxy may pass on the first and the daemon read the last, or the other way round.
		return policy.Principal{}, fmt.Errorf("%w: the request has more than one Authorization header; send one", platform.ErrUnauthenticated)
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		tok = ""
	}
	return noteCaller(r)(s.principals.Authenticate(r.Context(), tok))
}

// noteRefusal has a refused authentication or authorization audited (coalesced): by the
// route's action, or its pattern when the handler decides who may.
func (s *Server) noteRefusal(r *http.Request, p policy.Principal, act policy.Action, err error) {
	name := string(act)
	if name == "" {
		name = r.Pattern
	}
	switch {
	case errors.Is(err, platform.ErrUnauthenticated):
		s.refusals.Unauthenticated(source(r), name)
	case errors.Is(err, policy.ErrForbidden):
		s.refusals.Forbidden(p, name)
	case p.ID != "":
		if kind := refusalKind(err); kind != "" {
			s.refusals.Refused(p, name, kind)
		}
	}
}
