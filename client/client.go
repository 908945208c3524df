package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/veil-dp/veil/daemon/api"
)

// Client talks to one daemon.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client for host: a Unix socket path (unix:///path or a path), or an
// http:// or https:// URL. An https host is verified against the system's roots, or only
// against the CA of WithCAFile.
func New(host, token string, opts ...Option) (*Client, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	c := &Client{token: token}
	var tr *http.Transport
	switch {
	case strings.HasPrefix(host, "https://"):
		c.base = strings.TrimRight(host, "/")
		tc, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tc, ForceAttemptHTTP2: true}
	case strings.HasPrefix(host, "http://"):
		if o.caFile != "" {
			return nil, fmt.Errorf("a CA file (--ca-file, VEIL_CA_FILE) is for https:// hosts; %q is plain HTTP", host)
		}
		c.base = strings.TrimRight(host, "/")
		tr = &http.Transport{Proxy: http.ProxyFromEnvironment}
	case strings.HasPrefix(host, "unix://") || strings.HasPrefix(host, "/"):
		path := strings.TrimPrefix(host, "unix://")
		c.base = "http://veil"
		tr = &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}
	default:
		return nil, fmt.Errorf("daemon address %q: use a Unix socket path (unix:///var/lib/veil/veil.sock) or https://host:port", host)
	}
	var rt http.RoundTripper = tr
	if o.wrap != nil {
		rt = o.wrap(rt)
	}
	c.hc = &http.Client{Timeout: 10 * time.Minute, Transport: rt}
	return c, nil
}

// Error is an error answer of the API, or (Status 0, Kind "unavailable") a daemon that
// could not be reached.
type Error struct {
	Status int
	Kind   string // the API error's kind: not_found, forbidden, invalid, conflict, ...
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if raw, ok := in.([]byte); ok {
		body = bytes.NewReader(raw)
	} else if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if _, ok := in.([]byte); ok {
		req.Header.Set("Content-Type", "application/octet-stream")
	} else if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, ctx.Err())
		}
		return unreachable(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("daemon answered %s", resp.Status)
		}
		return &Error{Status: resp.StatusCode, Kind: e.Kind, Msg: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// SetZone sets the IANA time zone the caller reads times in.
func (c *Client) SetZone(ctx context.Context, zone string) (api.Principal, error) {
	var p api.Principal
	return p, c.do(ctx, "PUT", "/v1/whoami/zone", api.SetZone{Zone: zone}, &p)
}

// Whoami returns the caller.
func (c *Client) Whoami(ctx context.Context) (api.Principal, error) {
	var p api.Principal
	return p, c.do(ctx, "GET", "/v1/whoami", nil, &p)
}

// CreatePrincipal creates a principal; the answer carries its token, shown once.
func (c *Client) CreatePrincipal(ctx context.Context, req api.CreatePrincipal) (api.Principal, error) {
	var p api.Principal
	return p, c.do(ctx, "POST", "/v1/principals", req, &p)
}

// Principals lists principals.
func (c *Client) Principals(ctx context.Context) ([]api.Principal, error) {
	var ps []api.Principal
	return ps, c.do(ctx, "GET", "/v1/principals", nil, &ps)
}

// RevokePrincipal revokes a principal's token.
func (c *Client) RevokePrincipal(ctx context.Context, id string) (api.Principal, error) {
	var p api.Principal
	return p, c.do(ctx, "DELETE", "/v1/principals/"+url.PathEscape(id), nil, &p)
}

// RegisterDataset registers files under a schema.
func (c *Client) RegisterDataset(ctx context.Context, req api.RegisterDataset) (api.Dataset, error) {
	var d api.Dataset
	return d, c.do(ctx, "POST", "/v1/datasets", req, &d)
}

// Datasets lists the catalog.
func (c *Client) Datasets(ctx context.Context) ([]api.Dataset, error) {
	var ds []api.Dataset
	return ds, c.do(ctx, "GET", "/v1/datasets", nil, &ds)
}

// Dataset shows one dataset.
func (c *Client) Dataset(ctx context.Context, name string) (api.Dataset, error) {
	var d api.Dataset
	return d, c.do(ctx, "GET", "/v1/datasets/"+url.PathEscape(name), nil, &d)
}

// Grant is a grant as the API returns it.
type Grant = map[string]any

// ApplyGrant applies for a grant.
func (c *Client) ApplyGrant(ctx context.Context, req api.ApplyGrant) (Grant, error) {
	var g Grant
	return g, c.do(ctx, "POST", "/v1/grants", req, &g)
}

// Grants lists the grants the caller may see.
func (c *Client) Grants(ctx context.Context) ([]Grant, error) {
	var gs []Grant
	return gs, c.do(ctx, "GET", "/v1/grants", nil, &gs)
}

// GetGrant shows one grant.
func (c *Client) GetGrant(ctx context.Context, id string) (Grant, error) {
	var g Grant
	return g, c.do(ctx, "GET", "/v1/grants/"+url.PathEscape(id), nil, &g)
}

// ActOnGrant approves, rejects, suspends, reinstates or revokes a grant.
func (c *Client) ActOnGrant(ctx context.Context, id, action, reason string) (Grant, error) {
	var g Grant
	return g, c.do(ctx, "POST", "/v1/grants/"+url.PathEscape(id)+"/"+action, api.Decide{Reason: reason}, &g)
}

// SubmitJob submits a job.
func (c *Client) SubmitJob(ctx context.Context, req api.SubmitJob) (api.Job, error) {
	var j api.Job
	return j, c.do(ctx, "POST", "/v1/jobs", req, &j)
}

// UploadBlob uploads a public key bundle or an encrypted model (the files `veil he` writes)
// for he-score jobs; the daemon refuses secret keys.
func (c *Client) UploadBlob(ctx context.Context, data []byte) (api.Blob, error) {
	var out api.Blob
	err := c.do(ctx, http.MethodPut, "/v1/blobs", data, &out)
	return out, err
}

// UploadBlobFrom is UploadBlob of a completed upload (UploadFile) instead of a body.
func (c *Client) UploadBlobFrom(ctx context.Context, upload string) (api.Blob, error) {
	var out api.Blob
	return out, c.do(ctx, http.MethodPut, "/v1/blobs?upload="+url.QueryEscape(upload), []byte{}, &out)
}

// Jobs lists jobs; status may be a comma-separated list.
func (c *Client) Jobs(ctx context.Context, grant, status string) ([]api.Job, error) {
	var js []api.Job
	q := url.Values{}
	if grant != "" {
		q.Set("grant", grant)
	}
	if status != "" {
		q.Set("status", status)
	}
	return js, c.do(ctx, "GET", "/v1/jobs?"+q.Encode(), nil, &js)
}

// Job shows a job.
func (c *Client) Job(ctx context.Context, id string) (api.Job, error) {
	var j api.Job
	return j, c.do(ctx, "GET", "/v1/jobs/"+url.PathEscape(id), nil, &j)
}

// CancelJob cancels a job.
func (c *Client) CancelJob(ctx context.Context, id string) (api.Job, error) {
	var j api.Job
	return j, c.do(ctx, "POST", "/v1/jobs/"+url.PathEscape(id)+"/cancel", struct{}{}, &j)
}

// Terminal reports whether a job status is final or waiting for people.
func Terminal(status string) bool {
	switch status {
	case "queued", "running":
		return false
	}
	return true
}

// Final reports whether a job status can never change again: released, rejected, failed,
// canceled, or dev (a dev run's output is shown at once).
func Final(status string) bool {
	switch status {
	case "released", "rejected", "failed", "canceled", "dev":
		return true
	}
	return false
}

// Wait follows a job until it leaves queued and running, calling progress on each change.
// It long-polls (the daemon answers as soon as the job's status changes), so the end is
// seen at once.
func (c *Client) Wait(ctx context.Context, id string, progress func(api.Job)) (api.Job, error) {
	return c.WaitUntil(ctx, id, func(j api.Job) bool { return Terminal(j.Status) }, progress)
}

// longPoll is how long one request of WaitUntil waits for a change; waitPoll bounds the
// pause between requests that a daemon answered at once without a change (one older than
// GET /v1/jobs/{id}?seen=, whose long poll ends at review).
const (
	longPoll = 20 * time.Second
	waitPoll = 2 * time.Second
)

// WaitUntil follows a job until done says so or its status is final, calling progress on
// each change of status. Each request long-polls through review: the daemon answers when
// the status is no longer the one last seen, so a reviewer's decision is seen at once.
func (c *Client) WaitUntil(ctx context.Context, id string, done func(api.Job) bool, progress func(api.Job)) (api.Job, error) {
	seen := ""
	pause := 100 * time.Millisecond
	for {
		asked := time.Now()
		path := "/v1/jobs/" + url.PathEscape(id)
		if seen != "" { // the first request answers at once: the job may be done already
			path += "?wait=" + longPoll.String() + "&seen=" + url.QueryEscape(seen)
		}
		var j api.Job
		if err := c.do(ctx, "GET", path, nil, &j); err != nil {
			return j, err
		}
		changed := j.Status != seen
		if progress != nil && changed {
			progress(j)
		}
		first := seen == ""
		seen = j.Status
		if done(j) || Final(j.Status) {
			return j, nil
		}
		if first || changed || time.Since(asked) >= waitPoll {
			pause = 100 * time.Millisecond
			continue
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return j, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, waitPoll)
	}
}

// Budgets shows the privacy budgets the caller may see.
func (c *Client) Budgets(ctx context.Context) (api.Budgets, error) {
	var b api.Budgets
	return b, c.do(ctx, "GET", "/v1/budget", nil, &b)
}

// BudgetSpends is a page of a dataset's spend history (narrowed to grant when not empty).
func (c *Client) BudgetSpends(ctx context.Context, dataset, grant string, offset, limit int) (api.BudgetSpends, error) {
	q := url.Values{"dataset": {dataset}, "offset": {strconv.Itoa(offset)}, "limit": {strconv.Itoa(limit)}}
	if grant != "" {
		q.Set("grant", grant)
	}
	var b api.BudgetSpends
	return b, c.do(ctx, "GET", "/v1/budget/spends?"+q.Encode(), nil, &b)
}

// Reviews lists outputs waiting for review.
func (c *Client) Reviews(ctx context.Context) ([]api.Job, error) {
	var js []api.Job
	return js, c.do(ctx, "GET", "/v1/reviews", nil, &js)
}

// Review shows an output for review.
func (c *Client) Review(ctx context.Context, id string) (api.Review, error) {
	var r api.Review
	return r, c.do(ctx, "GET", "/v1/reviews/"+url.PathEscape(id), nil, &r)
}

// Decide approves or rejects an output; digest names the output the reviewer saw
// (Review.Digest), which an approval must give.
func (c *Client) Decide(ctx context.Context, id, decision, digest, reason string) (api.Job, error) {
	var j api.Job
	return j, c.do(ctx, "POST", "/v1/reviews/"+url.PathEscape(id), api.DecideOutput{Decision: decision, Digest: digest, Reason: reason}, &j)
}

// Override approves the output named by digest despite its disclosure findings; the reason
// is recorded.
func (c *Client) Override(ctx context.Context, id, digest, reason string) (api.Job, error) {
	var j api.Job
	return j, c.do(ctx, "POST", "/v1/reviews/"+url.PathEscape(id), api.DecideOutput{Decision: "approve", Digest: digest, Reason: reason, Override: true}, &j)
}

// UploadFusion uploads the vendor's own table (CSV or Parquet) for one of its grants; key is
// its column that identifies a person, match the public DATASET.COLUMN it corresponds to.
func (c *Client) UploadFusion(ctx context.Context, grant, name, key, match string, data []byte) (api.Dataset, error) {
	var out api.Dataset
	q := url.Values{"key": {key}, "match": {match}}
	return out, c.do(ctx, http.MethodPut, "/v1/grants/"+url.PathEscape(grant)+"/fusion/"+url.PathEscape(name)+"?"+q.Encode(), data, &out)
}

// UploadFusionFrom is UploadFusion of a completed upload (UploadFile) instead of a body.
func (c *Client) UploadFusionFrom(ctx context.Context, grant, name, key, match, upload string) (api.Dataset, error) {
	var out api.Dataset
	q := url.Values{"key": {key}, "match": {match}, "upload": {upload}}
	return out, c.do(ctx, http.MethodPut, "/v1/grants/"+url.PathEscape(grant)+"/fusion/"+url.PathEscape(name)+"?"+q.Encode(), []byte{}, &out)
}

// ApproveFusion adds a fused upload to its grant (authority).
func (c *Client) ApproveFusion(ctx context.Context, dataset string) (api.Dataset, error) {
	var out api.Dataset
	return out, c.do(ctx, "POST", "/v1/datasets/"+url.PathEscape(dataset)+"/fusion/approve", struct{}{}, &out)
}

// DevRun runs a job on the dev twins and returns its output at once.
func (c *Client) DevRun(ctx context.Context, req api.SubmitJob) (api.DevOutput, error) {
	var out api.DevOutput
	return out, c.do(ctx, "POST", "/v1/dev/jobs", req, &out)
}

// DevShow returns a dev run and its output.
func (c *Client) DevShow(ctx context.Context, id string) (api.DevOutput, error) {
	var out api.DevOutput
	return out, c.do(ctx, "GET", "/v1/dev/jobs/"+url.PathEscape(id), nil, &out)
}

// DevPromote submits a dev run's job unchanged to production.
func (c *Client) DevPromote(ctx context.Context, id string) (api.Job, error) {
	var j api.Job
	return j, c.do(ctx, "POST", "/v1/dev/jobs/"+url.PathEscape(id)+"/promote", struct{}{}, &j)
}

// BuildTwin asks for a dataset's dev twin (its provider); it waits for review.
func (c *Client) BuildTwin(ctx context.Context, dataset string, req api.BuildTwin) (api.Job, error) {
	var j api.Job
	return j, c.do(ctx, "POST", "/v1/datasets/"+url.PathEscape(dataset)+"/twin", req, &j)
}

// UploadProgram uploads a program for custom jobs and returns its digest.
func (c *Client) UploadProgram(ctx context.Context, data []byte) (api.Program, error) {
	var out api.Program
	return out, c.do(ctx, http.MethodPut, "/v1/programs", data, &out)
}

// RegisterRuntime registers a runtime image for custom jobs (operator).
func (c *Client) RegisterRuntime(ctx context.Context, req api.RegisterRuntime) (api.Runtime, error) {
	var out api.Runtime
	return out, c.do(ctx, "POST", "/v1/runtimes", req, &out)
}

// Runtimes lists the registered runtime images.
func (c *Client) Runtimes(ctx context.Context) ([]api.Runtime, error) {
	var out []api.Runtime
	return out, c.do(ctx, "GET", "/v1/runtimes", nil, &out)
}

// Export fetches a released output in a format with its certificate.
func (c *Client) Export(ctx context.Context, id, format string) (api.Export, error) {
	var e api.Export
	return e, c.do(ctx, "GET", "/v1/exports/"+url.PathEscape(id)+"?format="+url.QueryEscape(format), nil, &e)
}

// PlatformKey fetches the platform's public key. Verification should use a key obtained out
// of band (the data directory's platform.pub), not one fetched from the daemon under test.
func (c *Client) PlatformKey(ctx context.Context) (api.PlatformKey, error) {
	var k api.PlatformKey
	return k, c.do(ctx, "GET", "/v1/platform/key", nil, &k)
}
