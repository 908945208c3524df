package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/policy"
)

// healthz answers that the daemon is alive: it serves HTTP. Unauthenticated; it says nothing
// else.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

// readyz answers whether the daemon can do its work now: the store takes writes, a sandbox
// can be started, the data directory's disk has room. Unauthenticated, so the answer is only
// ok or not ready (503); which check failed and why goes to the log, which may name paths.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(r.Context()); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, api.Health{Status: "not ready"})
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

// readiness is one check of readyz.
type readiness struct {
	name  string
	check func(context.Context) error
}

// readinessChecks are what readyz asks, in order.
func (s *Server) readinessChecks() []readiness {
	return []readiness{
		{"store", func(context.Context) error { return s.db.Err() }},
		{"audit", func(context.Context) error { return s.signer.Err() }},
		{"sandbox", s.box.Probe},
		{"disk", func(context.Context) error { return diskFree(s.cfg.DataDir, uint64(s.cfg.MinFreeMB)<<20) }},
	}
}

// ready runs the readiness checks; it logs when the answer changes, not at every probe.
func (s *Server) ready(ctx context.Context) error {
	var errs []error
	for _, c := range s.readinessChecks() {
		if err := c.check(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	err := errors.Join(errs...)
	s.readyLog.note(s, err)
	return err
}

// readyLog remembers the last readiness answer, to log its changes.
type readyLog struct {
	mu   sync.Mutex
	last string
}

func (l *readyLog) note(s *Server, err error) {
	msg := ""
	if err != nil {
		msg = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if msg == l.last {
		return
	}
	l.last = msg
	if err != nil {
		s.slog.Warn("not ready", "err", msg)
	} else {
		s.slog.Info("ready")
	}
}

// diskFree fails when the file system of dir has less than floor bytes free for the daemon
// (a full disk fails every write to the store) or almost no inodes.
func diskFree(dir string, floor uint64) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("read the free space of %s: %w", dir, err)
	}
	free := st.Bavail * uint64(st.Bsize)
	if free < floor {
		return fmt.Errorf("%d MiB free on the file system of %s, below the floor of %d MiB (--min-free-mb)", free>>20, dir, floor>>20)
	}
	if st.Files > 0 && st.Ffree < st.Files/100 {
		return fmt.Errorf("%d of %d inodes free on the file system of %s", st.Ffree, st.Files, dir)
	}
	return nil
}

// serveMetrics serves the metrics on the API listener, to the operator.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	s.metrics.Handler().ServeHTTP(w, r)
	return nil
}

// metricsHandler is what the metrics listener (--metrics-listen) serves, without a token:
// the metrics and the probes, nothing of the API.
func (s *Server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc(catchAll, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, api.Error{Error: "this listener serves only /metrics, /healthz and /readyz", Kind: "not_found"})
	})
	return s.instrument(mux)
}

// version answers the daemon's build.
func (s *Server) version(w http.ResponseWriter, r *http.Request, p policy.Principal) error {
	v := s.cfg.Version
	if v == "" {
		v = "devel"
	}
	return reply(w, http.StatusOK, api.Version{Version: v, Commit: s.cfg.Commit}, nil)
}
