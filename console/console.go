package console

import (
	"bytes"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // the principal's zone must not depend on the host's zoneinfo

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Prefix is where the console is served.
const Prefix = "/ui/"

// Options configure a Console.
type Options struct {
	// API is the daemon's HTTP API handler; every page is a request to it.
	API http.Handler
	// Clock replaces the wall clock (tests of expiry); nil: time.Now.
	Clock func() time.Time
	// SessionTTL is how long a session lasts after sign-in (default 8h).
	SessionTTL time.Duration
	// LinkTTL is how long a one-time sign-in link may wait to be used (default 15m).
	LinkTTL time.Duration
	// Zone is the default time zone of dates, until the principal picks one (default UTC).
	Zone *time.Location
	Log  *slog.Logger
}

// Console serves the web desk.
type Console struct {
	opt   Options
	mux   *http.ServeMux
	pages map[string]map[string]*template.Template // lang → page → template
	mu    sync.Mutex
	sess  map[string]*session
	links map[string]*link
}

// maxAnswer bounds an API answer read in process (an export with its certificate fits).
const maxAnswer = 256 << 20

// maxForm bounds a form the browser posts.
const maxForm = 64 << 10

// New returns the console over the API handler opt.API.
func New(opt Options) (*Console, error) {
	if opt.API == nil {
		return nil, errors.New("console: no API handler")
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 8 * time.Hour
	}
	if opt.LinkTTL <= 0 {
		opt.LinkTTL = 15 * time.Minute
	}
	if opt.Zone == nil {
		opt.Zone = time.UTC
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{opt: opt, sess: map[string]*session{}, links: map[string]*link{}}
	if err := c.parse(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

func (c *Console) now() time.Time { return c.opt.Clock() }

// parse parses every page once per language: the language is bound into the template's
// functions.
func (c *Console) parse() error {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return err
	}
	c.pages = map[string]map[string]*template.Template{}
	for _, lang := range langs {
		c.pages[lang] = map[string]*template.Template{}
		for _, n := range names {
			page := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
			if page == "layout" {
				continue
			}
			t, err := template.New("layout.html").Funcs(funcs(lang)).ParseFS(assets, "templates/layout.html", n)
			if err != nil {
				return fmt.Errorf("console template %s: %w", n, err)
			}
			c.pages[lang][page] = t
		}
	}
	return nil
}

// ServeHTTP serves the console with its security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script runs, nothing is framed, forms post only here, nothing leaves for elsewhere.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	}
	c.mux.ServeHTTP(w, r)
}

// apiError is an error answer of the API, shown to the principal as the API worded it.
type apiError struct {
	Status int
	Kind   string
	Msg    string
}

func (e *apiError) Error() string { return e.Msg }

// recorder keeps an in-process API answer, up to maxAnswer bytes.
type recorder struct {
	h    http.Header
	code int
	buf  bytes.Buffer
	over bool
}

func (w *recorder) Header() http.Header { return w.h }
func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.buf.Len()+len(p) > maxAnswer {
		w.over = true
		return 0, errors.New("answer too large")
	}
	return w.buf.Write(p)
}

// call makes the API request method path (with in as its JSON body) as the session's
// principal, from the browser's request r (its context, peer and TLS state), and decodes the
// answer into out.
func (c *Console) call(r *http.Request, s *session, method, path string, in, out any) error {
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.Context(), method, path, body)
	if err != nil {
		return err
	}
	req.RemoteAddr, req.TLS, req.Host = r.RemoteAddr, r.TLS, r.Host
	if s != nil {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{h: http.Header{}}
	c.opt.API.ServeHTTP(rec, req)
	if rec.over {
		return &apiError{Status: http.StatusInternalServerError, Kind: "internal", Msg: "the answer is too large for the console; use the CLI"}
	}
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	if rec.code >= 300 {
		var e api.Error
		if json.Unmarshal(rec.buf.Bytes(), &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("the daemon answered %d", rec.code)
		}
		return &apiError{Status: rec.code, Kind: e.Kind, Msg: e.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(rec.buf.Bytes(), out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// get is call for a GET of path with query q.
func (c *Console) get(r *http.Request, s *session, path string, q url.Values, out any) error {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return c.call(r, s, http.MethodGet, path, nil, out)
}

// can says whether the session's role may do act: what the navigation offers. The API
// decides again on every request.
func can(s *session, act policy.Action) bool { return policy.Allow(s.p, act) == nil }

// checkCSRF refuses a state-changing request whose form does not carry the session's CSRF
// token, or that comes from another origin.
func checkCSRF(r *http.Request, want string) error {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return errors.New("the form was sent from another site")
		}
	}
	got := r.PostFormValue("csrf")
	if got == "" || want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return errors.New("the form's security token is missing or stale: reload the page and try again")
	}
	return nil
}
