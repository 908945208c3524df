package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
)

// token makes a principal and returns its token, for requests the client would not send.
func (e *env) token(name, role, tenant string) string {
	e.t.Helper()
	p, err := e.op.CreatePrincipal(context.Background(), api.CreatePrincipal{Name: name, Role: role, Tenant: tenant})
	if err != nil {
		e.t.Fatalf("create %s: %v", name, err)
	}
	return p.Token
}

// rawRequest sends one request as it is given, and returns the status and the error's kind.
func (e *env) rawRequest(method, path, token string, body io.Reader, header http.Header) (int, api.Error) {
	e.t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.cfg.Socket)
	}}}
	req, err := http.NewRequest(method, "http://veil"+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if token != "" {
		req.Header.Add("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var ae api.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	json.Unmarshal(b, &ae)
	return resp.StatusCode, ae
}

// zeros is an endless stream of a byte.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

// TestStrictRequests sends bodies that encoding/json alone would take one way while a proxy
// or a log reads them another: keys twice, keys in another case, unknown keys, at every
// level; oversize bodies and uploads get 413; query parameters twice, two Authorization
// headers and oversize headers are refused; nothing of a refused request is done.
func TestStrictRequests(t *testing.T) {
	e := start(t, func(c *daemon.Config) { c.Isolation = "process" })
	ctx := context.Background()
	op := e.token("second operator", "operator", "")
	vendor := e.token("acme", "vendor", "acme")
	before, err := e.op.Principals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, method, path, token, body string
		status                          int
		kind, want                      string
	}{
		{"duplicate key", "POST", "/v1/principals", op, `{"name":"x","role":"auditor","role":"operator"}`, 400, "invalid", `"role" is given twice`},
		{"case variant", "POST", "/v1/principals", op, `{"name":"x","Role":"operator","role":"auditor"}`, 400, "invalid", `the field is "role"`},
		{"unknown key", "POST", "/v1/principals", op, `{"name":"x","role":"auditor","admin":true}`, 400, "invalid", `unknown field "admin"`},
		{"nested duplicate", "POST", "/v1/jobs", vendor, `{"grant":"g-x","sql":"SELECT 1","dp":{"epsilon":0.1,"epsilon":5}}`, 400, "invalid", `"dp.epsilon" is given twice`},
		{"nested case variant", "POST", "/v1/jobs", vendor, `{"grant":"g-x","dp":{"Epsilon":5}}`, 400, "invalid", `the field is "dp.epsilon"`},
		{"array element", "POST", "/v1/grants", vendor, `{"scenario":"s","purpose":"p","modes":["dp"],"valid_for":"30d","datasets":[{"name":"a","columns":[],"Name":"b"}]}`, 400, "invalid", `the field is "datasets[0].name"`},
		{"two values", "POST", "/v1/principals", op, `{"name":"x","role":"auditor"}{"name":"y","role":"operator"}`, 400, "invalid", "after its JSON value"},
		{"lone surrogate", "POST", "/v1/principals", op, `{"name":"x\udbff","role":"auditor"}`, 400, "invalid", "surrogate"},
		{"oversize body", "POST", "/v1/principals", op, `{"name":"` + strings.Repeat("a", 5<<20) + `","role":"auditor"}`, 413, "too_large", "larger than 4 MiB"},
		{"query twice", "GET", "/v1/jobs?status=review&status=released", vendor, "", 400, "invalid", `"status" is given 2 times`},
		{"query does not parse", "GET", "/v1/jobs?status=review;grant=x", vendor, "", 400, "invalid", "does not parse"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			code, ae := e.rawRequest(tc.method, tc.path, tc.token, body, http.Header{"Content-Type": {"application/json"}})
			if code != tc.status || ae.Kind != tc.kind || !strings.Contains(ae.Error, tc.want) {
				t.Fatalf("%d %s %q; want %d %s naming %q", code, ae.Kind, ae.Error, tc.status, tc.kind, tc.want)
			}
		})
	}
	after, err := e.op.Principals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("refused requests made principals: %d before, %d after", len(before), len(after))
	}

	for _, path := range []string{"/v1/programs", "/v1/blobs"} {
		t.Run("oversize upload "+path, func(t *testing.T) {
			code, ae := e.rawRequest("PUT", path, vendor, io.LimitReader(zeros{}, 256<<20+1), nil)
			if code != 413 || ae.Kind != "too_large" || !strings.Contains(ae.Error, "256 MiB") {
				t.Fatalf("%d %s %q", code, ae.Kind, ae.Error)
			}
		})
	}
	t.Run("two tokens", func(t *testing.T) {
		code, ae := e.rawRequest("GET", "/v1/whoami", vendor, nil, http.Header{"Authorization": {"Bearer " + op}})
		if code != 401 || ae.Kind != "unauthenticated" || !strings.Contains(ae.Error, "more than one Authorization") {
			t.Fatalf("%d %s %q", code, ae.Kind, ae.Error)
		}
	})
	t.Run("oversize header", func(t *testing.T) {
		code, _ := e.rawRequest("GET", "/v1/jobs?grant="+strings.Repeat("g", 100<<10), vendor, nil, nil)
		if code != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("a 100 KiB request line: %d", code)
		}
	})
}
