package daemon_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/internal/testcert"
)

// raw asks the daemon's socket for path with token (none when empty), as curl would, and
// returns the status and the body.
func (e *env) raw(path, token string) (int, []byte) {
	e.t.Helper()
	code, body, err := e.rawErr(path, token)
	if err != nil {
		e.t.Fatal(err)
	}
	return code, body
}

// rawErr is raw for another goroutine than the test's.
func (e *env) rawErr(path, token string) (int, []byte, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", e.cfg.Socket)
	}}}
	return fetch(hc, "http://veil"+path, token)
}

func get(t *testing.T, hc *http.Client, url, token string) (int, []byte) {
	t.Helper()
	code, body, err := fetch(hc, url, token)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

func fetch(hc *http.Client, url, token string) (int, []byte, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestHealthAndReadiness: /healthz and /readyz answer without a token and say nothing but
// ok or not ready; why the daemon is not ready goes to its log.
func TestHealthAndReadiness(t *testing.T) {
	e := start(t, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		code, body := e.raw(path, "")
		if code != 200 || strings.TrimSpace(string(body)) != `{
  "status": "ok"
}` {
			t.Errorf("GET %s: %d %s, want 200 and only {\"status\": \"ok\"}", path, code, body)
		}
	}

	// A disk floor above what any disk here has free: not ready.
	full := start(t, func(c *daemon.Config) { c.MinFreeMB = 1 << 40 })
	code, body := full.raw("/readyz", "")
	if code != http.StatusServiceUnavailable || strings.TrimSpace(string(body)) != `{
  "status": "not ready"
}` {
		t.Errorf("GET /readyz below the disk floor: %d %s, want 503 and only {\"status\": \"not ready\"}", code, body)
	}
	if strings.Contains(string(body), full.cfg.DataDir) {
		t.Errorf("/readyz names a host path: %s", body)
	}
	if code, _ := full.raw("/healthz", ""); code != 200 {
		t.Errorf("GET /healthz while not ready: %d, want 200 (alive)", code)
	}
	// The reason, with the path, is the operator's; logged once for repeated probes.
	full.raw("/readyz", "")
	log := full.log.String()
	if n := strings.Count(log, "msg=\"not ready\""); n != 1 || !strings.Contains(log, "disk:") || !strings.Contains(log, full.cfg.DataDir) {
		t.Errorf("the daemon's log says %d times why it is not ready, want once with the check and the path:\n%s", n, log)
	}
}

// scrape parses an exposition as Prometheus does.
func scrape(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// sample returns the value of the sample of family name with labels, and whether there is
// one.
func sample(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// TestMetricsAndRequestLogs runs a job through review and release and reads /metrics as the
// operator: every family is there with the values the job left, no label carries a raw path,
// a query text or a data value, and the request log lines name route patterns only.
func TestMetricsAndRequestLogs(t *testing.T) {
	e := start(t, func(c *daemon.Config) { c.MetricsListen = "127.0.0.1:0" })
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	reviewer := e.principal("reviewer", "reviewer", "")
	g := e.grantFor(acme)
	const query = "SELECT district, COUNT(*) AS residents_here FROM residents WHERE age > 33 GROUP BY district"
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: g, SQL: query})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		t.Fatalf("job: %+v %v", j, err)
	}

	opToken := e.opToken(t)
	code, body := e.raw("/metrics", opToken)
	if code != 200 {
		t.Fatalf("GET /metrics as the operator: %d %s", code, body)
	}
	fams := scrape(t, body)
	want := []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"veil_http_request_duration_seconds", map[string]string{"route": "GET /v1/jobs/{id}", "code": "200"}, 1},
		{"veil_http_request_duration_seconds", map[string]string{"route": "POST /v1/jobs", "code": "202"}, 1},
		{"veil_jobs", map[string]string{"kind": "plan", "state": "review"}, 1},
		{"veil_job_queue_wait_seconds", map[string]string{"tenant": "acme"}, 1},
		{"veil_sandbox_start_seconds", map[string]string{"kind": "plan"}, 1},
		{"veil_job_duration_seconds", map[string]string{"kind": "plan", "outcome": "review"}, 1},
		{"veil_review_queue_outputs", nil, 1},
		{"veil_review_queue_oldest_seconds", nil, 0},
		{"veil_budget_epsilon_total", map[string]string{"dataset": "residents"}, 10},
		{"veil_budget_epsilon_remaining", map[string]string{"dataset": "residents"}, 10},
		{"veil_budget_epsilon_spent", map[string]string{"dataset": "residents"}, 0},
		{"veil_budget_epsilon_allocated", map[string]string{"dataset": "residents"}, 0},
		{"veil_audit_log_entries", nil, 5},
		{"veil_audit_checkpoint_entries", nil, 5},
		{"veil_audit_last_checkpoint_timestamp_seconds", nil, float64(time.Now().Add(-time.Hour).Unix())},
	}
	for _, w := range want {
		if v, ok := sample(fams, w.name, w.labels); !ok || v < w.min {
			t.Errorf("%s%v = %v (present %v), want at least %v", w.name, w.labels, v, ok, w.min)
		}
	}
	// The pool of sandboxes prepared ahead (with containers): what it started, none failed.
	if e.cfg.Isolation == "container" {
		ahead, _ := sample(fams, "veil_sandbox_pool_starts_total", map[string]string{"when": "ahead"})
		demand, _ := sample(fams, "veil_sandbox_pool_starts_total", map[string]string{"when": "on_demand"})
		if ahead+demand < 1 {
			t.Errorf("veil_sandbox_pool_starts_total: %v ahead, %v on demand, want the job's sandbox counted", ahead, demand)
		}
		if v, ok := sample(fams, "veil_sandbox_pool_start_failures_total", nil); !ok || v != 0 {
			t.Errorf("veil_sandbox_pool_start_failures_total = %v (present %v), want 0", v, ok)
		}
		if _, ok := sample(fams, "veil_sandbox_pool_ready", nil); !ok {
			t.Error("no veil_sandbox_pool_ready")
		}
	}
	if _, ok := fams["veil_job_queue_depth"]; ok {
		if v, _ := sample(fams, "veil_job_queue_depth", map[string]string{"tenant": "acme"}); v != 0 {
			t.Errorf("queue depth of acme %v with no job queued", v)
		}
	}

	// Labels are names the platform gives, never a path with an id, the query or a value.
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				v := l.GetValue()
				if strings.Contains(v, j.ID) || strings.Contains(v, "SELECT") || strings.Contains(v, "north") || strings.Contains(v, "?") {
					t.Errorf("%s has label %s=%q", name, l.GetName(), v)
				}
			}
		}
	}

	if _, err := reviewer.Decide(ctx, j.ID, "approve", reviewedDigest(t, reviewer, j.ID), ""); err != nil {
		t.Fatal(err)
	}
	_, body = e.raw("/metrics", opToken)
	fams = scrape(t, body)
	if v, _ := sample(fams, "veil_review_decisions_total", map[string]string{"kind": "plan", "status": "released"}); v != 1 {
		t.Errorf("released decisions %v, want 1", v)
	}
	if v, _ := sample(fams, "veil_review_queue_outputs", nil); v != 0 {
		t.Errorf("review queue %v after the release, want 0", v)
	}

	// Only the operator reads metrics on the API; the metrics listener needs no token and
	// serves nothing of the API.
	if code, _ := e.raw("/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token: %d, want 401", code)
	}
	if code, _ := e.raw("/metrics", acmeToken(t, e, acme)); code != http.StatusForbidden {
		t.Errorf("GET /metrics as a vendor: %d, want 403", code)
	}
	addrs := e.addrs
	if len(addrs) != 2 {
		t.Fatalf("listening on %v, want the socket and the metrics address", addrs)
	}
	m := "http://" + addrs[1].String()
	if code, body := get(t, http.DefaultClient, m+"/metrics", ""); code != 200 || !strings.Contains(string(body), "veil_audit_log_entries") {
		t.Errorf("GET /metrics on the metrics listener: %d", code)
	}
	if code, _ := get(t, http.DefaultClient, m+"/v1/whoami", opToken); code != 404 {
		t.Errorf("GET /v1/whoami on the metrics listener: %d, want 404", code)
	}

	// The long poll's query string and the job's id stay out of the request log.
	if _, err := acme.Job(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.WaitUntil(ctx, j.ID, func(api.Job) bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(e.log.String(), "\n") {
		if strings.Contains(l, "msg=request ") {
			lines = append(lines, l)
		}
	}
	shape := regexp.MustCompile(`^time=\S+ level=(INFO|DEBUG) msg=request method=[A-Z]+ route=("[A-Z]+ /[^"?]*"|unmatched) status=\d{3} duration=\S+ principal=(p-[a-z0-9]+|"")$`)
	sawJob := false
	for _, l := range lines {
		if !shape.MatchString(l) {
			t.Errorf("request log line of an unexpected shape: %s", l)
		}
		if strings.Contains(l, j.ID) || strings.Contains(l, "wait") || strings.Contains(l, "seen") || strings.Contains(l, "SELECT") {
			t.Errorf("request log line carries a raw path or a query string: %s", l)
		}
		sawJob = sawJob || strings.Contains(l, `route="GET /v1/jobs/{id}" status=200`)
	}
	if !sawJob {
		t.Errorf("no request line for GET /v1/jobs/{id} among %d", len(lines))
	}
}

// opToken creates a second operator and returns its token (the first one's is the env's).
func (e *env) opToken(t *testing.T) string {
	p, err := e.op.CreatePrincipal(context.Background(), api.CreatePrincipal{Name: "metrics reader", Role: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	return p.Token
}

func acmeToken(t *testing.T, e *env, _ *client.Client) string {
	p, err := e.op.CreatePrincipal(context.Background(), api.CreatePrincipal{Name: "another analyst", Role: "vendor", Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	return p.Token
}

// TestLongPollThroughReview: a long poll on a job waiting for review answers at the
// reviewer's decision, with the decision, rather than at once with "review" or at the end
// of its wait.
func TestLongPollThroughReview(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	acme := e.principal("acme analyst", "vendor", "acme")
	reviewer := e.principal("reviewer", "reviewer", "")
	g := e.grantFor(acme)
	j, err := acme.SubmitJob(ctx, api.SubmitJob{Grant: g, SQL: "SELECT district, COUNT(*) FROM residents GROUP BY district"})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = acme.Wait(ctx, j.ID, nil); err != nil || j.Status != "review" {
		t.Fatalf("job: %+v %v", j, err)
	}
	tok := acmeToken(t, e, acme)
	// A client that last saw another status is answered at once.
	code, body, err := e.rawErr("/v1/jobs/"+j.ID+"?wait=1m&seen=queued", tok)
	if err != nil || code != 200 || !strings.Contains(string(body), `"status": "review"`) {
		t.Fatalf("seen=queued on a job in review: %d %s %v", code, body, err)
	}
	type answer struct {
		code int
		body []byte
		err  error
	}
	polled := make(chan answer, 1)
	go func() {
		// The long poll's wait (a minute) is longer than the test's, so its answer is the
		// decision's. Before this change the daemon answered "review" at once.
		asked := time.Now()
		code, body, err := e.rawErr("/v1/jobs/"+j.ID+"?wait=1m&seen=review", tok)
		if err == nil && time.Since(asked) >= time.Minute {
			// Not a bound on speed: an answer at the end of the wait is one the decision
			// did not wake (nothing told the waiters).
			err = errors.New("answered when its wait was up, not at the decision")
		}
		polled <- answer{code, body, err}
	}()
	var seen []string
	followed := make(chan api.Job, 1)
	go func() {
		got, err := acme.WaitUntil(ctx, j.ID, func(j api.Job) bool { return j.Status == "released" }, func(j api.Job) { seen = append(seen, j.Status) })
		if err != nil {
			t.Error(err)
		}
		followed <- got
	}()
	time.Sleep(50 * time.Millisecond) // most likely, both wait now; the answers are the same if not
	if _, err := reviewer.Decide(ctx, j.ID, "approve", reviewedDigest(t, reviewer, j.ID), ""); err != nil {
		t.Fatal(err)
	}
	if a := <-polled; a.err != nil || a.code != 200 || !strings.Contains(string(a.body), `"status": "released"`) {
		t.Fatalf("the long poll from review: %d %s %v, want the release", a.code, a.body, a.err)
	}
	if got := <-followed; got.Status != "released" || seen[len(seen)-1] != "released" {
		t.Fatalf("WaitUntil: %s, progress %v; want it to end at the release", got.Status, seen)
	}
	if code, _ := e.raw("/v1/jobs/"+j.ID+"?wait=1s&seen=finished", tok); code != 400 {
		t.Errorf("seen=finished: %d, want 400", code)
	}
}

// TestVersionRoute: the daemon's version is for authenticated callers.
func TestVersionRoute(t *testing.T) {
	e := start(t, func(c *daemon.Config) { c.Version, c.Commit = "v9.8.7", "0123abcd" })
	v, err := e.op.Version(context.Background())
	if err != nil || v.Version != "v9.8.7" || v.Commit != "0123abcd" {
		t.Fatalf("version %+v %v", v, err)
	}
	if code, body := e.raw("/v1/version", ""); code != http.StatusUnauthorized || strings.Contains(string(body), "v9.8.7") {
		t.Errorf("GET /v1/version without a token: %d %s", code, body)
	}
	if code, body := e.raw("/v1/openapi.json", ""); code != 200 || !json.Valid(body) || !strings.Contains(string(body), `"openapi": "3.1.0"`) {
		t.Errorf("GET /v1/openapi.json: %d", code)
	}
}

// TestTLSListener serves the API over TLS with a certificate of a test CA: a client given
// the CA verifies it, one without refuses it, and ReloadTLS serves a new certificate to new
// connections while an open one goes on.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcert.NewCA(dir, "veil test CA")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first, err := ca.Server("veil one", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, func(c *daemon.Config) { c.Listen, c.TLSCert, c.TLSKey = "127.0.0.1:0", certFile, keyFile })
	addr := e.addrs[1].String()
	tok := e.opToken(t)

	c, err := client.New("https://"+addr, tok, client.WithCAFile(ca.File), client.WithTransport(checkAPI(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Whoami(ctx); err != nil {
		t.Fatalf("whoami over TLS with the CA: %v", err)
	}
	plain, _ := client.New("https://"+addr, tok)
	if _, err := plain.Whoami(ctx); err == nil || !strings.Contains(err.Error(), "not trusted") || !strings.Contains(err.Error(), "--ca-file") {
		t.Errorf("a client without the CA: %v, want an untrusted certificate and what to do", err)
	}
	if _, err := client.New("http://"+addr, tok, client.WithCAFile(ca.File)); err == nil {
		t.Error("a CA file for an http:// host was accepted")
	}

	// An open connection, made before the reload.
	open, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if got := open.ConnectionState().PeerCertificates[0]; !got.Equal(first) {
		t.Fatalf("presented %s, want %s", got.Subject, first.Subject)
	}

	second, err := ca.Server("veil two", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if got, err := ca.Presented(addr); err != nil || !got.Equal(second) {
		t.Fatalf("after ReloadTLS a new connection got %v (%v), want %s", got.Subject, err, second.Subject)
	}
	// The open connection still serves requests.
	io.WriteString(open, "GET /healthz HTTP/1.1\r\nHost: veil\r\n\r\n")
	buf := make([]byte, 64)
	if n, err := open.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200") {
		t.Fatalf("the connection opened before the reload: %q %v", buf[:n], err)
	}

	// A damaged certificate is not loaded: the last good one stays.
	os.WriteFile(certFile, []byte("not a certificate"), 0o644)
	if err := e.srv.ReloadTLS(); err == nil {
		t.Error("a damaged certificate was reloaded")
	}
	if got, err := ca.Presented(addr); err != nil || !got.Equal(second) {
		t.Errorf("after a failed reload: %v %v, want the last good certificate", got, err)
	}
}

// TestListenRefusals: a TCP listener off loopback without TLS, or half a TLS configuration,
// keeps the daemon from starting, saying what to do; forced, it starts.
func TestListenRefusals(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcert.NewCA(dir, "veil test CA")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := ca.Server("veil", certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(*daemon.Config)
		want string // "" starts
	}{
		{"all interfaces", func(c *daemon.Config) { c.Listen = ":0" }, "--insecure-listen"},
		{"0.0.0.0", func(c *daemon.Config) { c.Listen = "0.0.0.0:0" }, "not a loopback address"},
		{"metrics on all interfaces", func(c *daemon.Config) { c.MetricsListen = "[::]:0" }, "--metrics-listen"},
		{"half TLS", func(c *daemon.Config) { c.Listen, c.TLSCert = "127.0.0.1:0", certFile }, "both --tls-cert and --tls-key"},
		{"TLS without TCP", func(c *daemon.Config) { c.TLSCert, c.TLSKey = certFile, keyFile }, "--listen"},
		{"a missing certificate", func(c *daemon.Config) { c.Listen, c.TLSCert, c.TLSKey = "127.0.0.1:0", certFile+".gone", keyFile }, "load the TLS certificate"},
		{"forced", func(c *daemon.Config) { c.Listen, c.InsecureListen = "0.0.0.0:0", true }, ""},
		{"with TLS", func(c *daemon.Config) { c.Listen, c.TLSCert, c.TLSKey = "0.0.0.0:0", certFile, keyFile }, ""},
		{"loopback", func(c *daemon.Config) { c.Listen = "localhost:0" }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := os.MkdirTemp("", "veil-listen-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(d)
			cfg := daemon.Defaults(d)
			cfg.Isolation = "process"
			c.edit(&cfg)
			if _, err := daemon.Init(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			srv, err := daemon.New(context.Background(), cfg, discard())
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				srv.Close()
				return
			}
			if err == nil {
				srv.Close()
				t.Fatalf("started; want a refusal naming %s", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("refusal %q does not name %s", err, c.want)
			}
		})
	}
}

// reviewedDigest is the digest of the output a reviewer is shown, which an approval names.
func reviewedDigest(t *testing.T, reviewer *client.Client, id string) string {
	t.Helper()
	rv, err := reviewer.Review(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rv.Digest
}
