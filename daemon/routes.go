package daemon

import (
	"net/http"
	"strings"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, p policy.Principal) error) {
		mux.Handle(pattern, s.authed(fn, 16<<20))
	}
	mux.Handle("PUT /v1/blobs", s.authed(s.uploadBlob, maxBlobBytes))
	mux.Handle("PUT /v1/programs", s.authed(s.uploadProgram, maxProgramBytes))
	mux.Handle("PUT /v1/grants/{id}/fusion/{name}", s.authed(s.uploadFusion, maxFusionBytes))
	h("GET /v1/whoami", s.whoami)
	h("POST /v1/principals", s.createPrincipal)
	h("GET /v1/principals", s.listPrincipals)
	h("DELETE /v1/principals/{id}", s.revokePrincipal)
	h("POST /v1/datasets", s.registerDataset)
	h("GET /v1/datasets", s.listDatasets)
	h("GET /v1/datasets/{name}", s.showDataset)
	h("POST /v1/datasets/{name}/feedback", s.submitFeedback)
	h("GET /v1/feedback", s.listFeedback)
	h("POST /v1/feedback/{id}/resolve", s.resolveFeedback)
	h("POST /v1/grants", s.applyGrant)
	h("GET /v1/grants", s.listGrants)
	h("GET /v1/grants/{id}", s.showGrant)
	h("POST /v1/grants/{id}/{action}", s.actOnGrant)
	h("POST /v1/jobs", s.submitJob)
	h("GET /v1/jobs", s.listJobs)
	h("GET /v1/jobs/{id}", s.showJob)
	h("POST /v1/jobs/{id}/cancel", s.cancelJob)
	h("GET /v1/reviews", s.listReviews)
	h("GET /v1/reviews/{id}", s.showReview)
	h("POST /v1/reviews/{id}", s.decideReview)
	h("GET /v1/exports/{id}", s.getExport)
	h("GET /v1/budget", s.showBudget)
	h("POST /v1/datasets/{name}/twin", s.buildTwin)
	h("POST /v1/datasets/{name}/fusion/approve", s.approveFusion)
	h("POST /v1/dev/jobs", s.submitDev)
	h("GET /v1/dev/jobs/{id}", s.showDev)
	h("POST /v1/dev/jobs/{id}/promote", s.promoteDev)
	h("POST /v1/runtimes", s.registerRuntime)
	h("GET /v1/runtimes", s.listRuntimes)
	h("GET /v1/audit/records", s.auditRecords)
	h("GET /v1/audit/checkpoints", s.auditCheckpoints)
	h("GET /v1/audit/verify", s.auditVerify)
	h("GET /v1/audit/proof/{index}", s.auditProof)
	mux.HandleFunc("GET /v1/platform/key", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.PlatformKey{VerifierKey: s.key.VerifierKey(), PublicKey: s.key.PublicKey()})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.Error{Error: "no such endpoint: " + r.Method + " " + r.URL.Path, Kind: "not_found"})
	})
	return mux
}

// authed authenticates the bearer token and hands the principal to fn. Errors are mapped to
// statuses in one place.
func (s *Server) authed(fn func(w http.ResponseWriter, r *http.Request, p policy.Principal) error, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		p, err := s.authenticate(r)
		if err == nil {
			err = fn(w, r, p)
		}
		if err != nil {
			code, kind := status(err)
			msg := err.Error()
			if code == http.StatusInternalServerError {
				s.slog.Error("request failed", "method", r.Method, "path", r.URL.Path, "principal", p.ID, "err", err)
				msg = "internal error; the operator can find details in the daemon log"
			} else {
				s.slog.Info("request refused", "method", r.Method, "path", r.URL.Path, "principal", p.ID, "status", code, "err", err)
			}
			writeJSON(w, code, api.Error{Error: msg, Kind: kind})
		}
	})
}

func (s *Server) authenticate(r *http.Request) (policy.Principal, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		tok = ""
	}
	return s.principals.Authenticate(r.Context(), tok)
}
