package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/veil-dp/veil/metrics"
	"github.com/veil-dp/veil/policy"
)

// routeMux is the API's ServeMux; it keeps the patterns registered on it, so that the
// routes can be listed (and checked against the API's description, openapi.json).
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// catchAll is the pattern of the mux's answer to every request no route takes.
const catchAll = "/"

// Routes returns the patterns of the API's routes ("METHOD /path/{param}"), in the order
// they are registered, without the catch-all answer to unknown paths.
func (s *Server) Routes() []string {
	var out []string
	for _, p := range s.Handler().(*routeMux).patterns {
		if p != catchAll {
			out = append(out, p)
		}
	}
	return out
}

// caller is where authenticate leaves the principal of a request, for its log line.
type caller struct{ id string }

type callerKey struct{}

// noteCaller returns what records who made r, if anyone could be authenticated.
func noteCaller(r *http.Request) func(policy.Principal, error) (policy.Principal, error) {
	return func(p policy.Principal, err error) (policy.Principal, error) {
		if c, ok := r.Context().Value(callerKey{}).(*caller); ok && err == nil {
			c.id = p.ID
		}
		return p, err
	}
}

// quiet are the routes polled by machines every few seconds; their log lines are at debug
// level so that probes do not drown the requests of people.
var quiet = map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}

// instrument logs and counts every request under its route pattern. A log line holds the
// method, the route pattern, the status, the duration and the principal's id: never the raw
// path (it can hold a dataset's name or a search), a query string or a body.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &caller{}
		r = r.WithContext(context.WithValue(r.Context(), callerKey{}, c))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		took := time.Since(start)
		// The mux sets the pattern on the request it routes, which is r.
		route := r.Pattern
		if route == "" || route == catchAll {
			route = metrics.Unmatched
		}
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		if s.metrics != nil {
			s.metrics.Request(route, code, took)
		}
		level := slog.LevelInfo
		if quiet[route] {
			level = slog.LevelDebug
		}
		s.slog.LogAttrs(r.Context(), level, "request", slog.String("method", r.Method), slog.String("route", route),
			slog.Int("status", code), slog.Duration("duration", took), slog.String("principal", c.id))
	})
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer (flushes, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
