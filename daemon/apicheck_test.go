package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
)

var apiDoc struct {
	once   sync.Once
	router routers.Router
	err    error
}

// apiRouter loads the daemon's description of its API (OpenAPI 3.1, validated as such by
// kin-openapi) once for all tests.
func apiRouter() (routers.Router, error) {
	apiDoc.once.Do(func() {
		ctx := context.Background()
		doc, err := openapi3.NewLoader().LoadFromData(daemon.OpenAPI())
		if err == nil {
			err = doc.Validate(ctx)
		}
		if err == nil {
			apiDoc.router, err = gorillamux.NewRouter(doc)
		}
		apiDoc.err = err
	})
	return apiDoc.router, apiDoc.err
}

// checkAPI wraps a client's transport so that every request the daemon accepted and every
// answer it gave is checked against openapi.json: an end-to-end test then fails when the
// daemon and its description disagree. A refused request need not match (tests send bad
// ones on purpose); its answer must.
func checkAPI(t reporter) func(http.RoundTripper) http.RoundTripper {
	router, err := apiRouter()
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return func(next http.RoundTripper) http.RoundTripper {
		return &apiChecker{t: t, next: next, router: router}
	}
}

// reporter is where apiChecker reports: a *testing.T.
type reporter interface {
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

type apiChecker struct {
	t      reporter
	next   http.RoundTripper
	router routers.Router
}

func (c *apiChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))

	ctx := context.Background()
	vreq := req.Clone(ctx)
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	what := req.Method + " " + req.URL.Path
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		// A path the daemon does not have either is a test's business (not found).
		if resp.StatusCode != http.StatusNotFound {
			c.t.Errorf("openapi.json: %s is not described, yet the daemon answered %d", what, resp.StatusCode)
		}
		return resp, nil
	}
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	if resp.StatusCode < 300 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			c.t.Errorf("openapi.json: the daemon accepted %s (%d), which its description refuses: %v", what, resp.StatusCode, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	out.SetBodyBytes(answer)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		c.t.Errorf("openapi.json: the daemon's answer %d to %s does not match its description: %v", resp.StatusCode, what, err)
	}
	return resp, nil
}

// found records what apiChecker reports.
type found struct {
	mu   sync.Mutex
	errs []string
}

func (f *found) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *found) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// TestAPICheckerFindsDrift checks the checker itself: against a server that answers what
// the description does not say, each disagreement is reported, and what matches is not.
func TestAPICheckerFindsDrift(t *testing.T) {
	mux := http.NewServeMux()
	answer := func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
	mux.HandleFunc("GET /v1/whoami", answer(200, `{"id": "p-1", "name": "op", "role": "operator", "created": "2026-01-01T00:00:00Z"}`))
	mux.HandleFunc("GET /v1/version", answer(200, `{"version": 3}`))                                                                      // a number, not a string
	mux.HandleFunc("GET /v1/budget", answer(200, `{"datasets": [], "grants": [], "extra": 1}`))                                           // a field not described
	mux.HandleFunc("GET /v1/reviews", answer(418, `{"error": "teapot", "kind": "internal"}`))                                             // a status not described
	mux.HandleFunc("GET /v1/grants", answer(404, `{"error": "x", "kind": "forbidden"}`))                                                  // a kind of another status
	mux.HandleFunc("GET /v1/nowhere", answer(200, `{}`))                                                                                  // a route not described
	mux.HandleFunc("POST /v1/principals", answer(201, `{"id": "p-2", "name": "x", "role": "vendor", "created": "2026-01-01T00:00:00Z"}`)) // accepts a bad request
	srv := httptest.NewServer(mux)
	defer srv.Close()
	f := &found{}
	c, err := client.New(srv.URL, "tok", client.WithTransport(checkAPI(f)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Whoami(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.errs) != 0 {
		t.Fatalf("a described answer was reported: %v", f.errs)
	}
	c.Version(ctx)
	c.Budgets(ctx)
	c.Reviews(ctx)
	c.Grants(ctx)
	hc := &http.Client{Transport: checkAPI(f)(http.DefaultTransport)}
	if resp, err := hc.Get(srv.URL + "/v1/nowhere"); err == nil {
		resp.Body.Close()
	}
	if resp, err := hc.Post(srv.URL+"/v1/principals", "application/json", strings.NewReader(`{"name": 7}`)); err == nil {
		resp.Body.Close()
	}
	want := []string{"GET /v1/version", "GET /v1/budget", "GET /v1/reviews", "GET /v1/grants", "GET /v1/nowhere", "POST /v1/principals"}
	if len(f.errs) != len(want) {
		t.Fatalf("%d reports, want %d:\n%s", len(f.errs), len(want), strings.Join(f.errs, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(f.errs[i], w) {
			t.Errorf("report %d: %s, want one about %s", i, f.errs[i], w)
		}
	}
}
