package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/catalog/feedback"
	"github.com/veil-dp/veil/catalog/fusion"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// Server is a running daemon.
type Server struct {
	cfg        Config
	db         store.Store
	key        *audit.Key
	log        *audit.Log
	slog       *slog.Logger
	validator  *engine.Validator
	sched      *scheduler
	box        *launch.Launcher
	rec        *platform.Recorder
	principals *platform.Principals
	ledger     *ledger.Ledger
	catalog    *catalog.Service
	grants     *grants.Service
	fusion     *fusion.Service
	feedback   *feedback.Service
	changed    broadcast // a job ended a run or was canceled: wakes long-polling readers
	devSlots   chan struct{}

	httpSrv   []*http.Server
	listeners []net.Listener
	wg        sync.WaitGroup
}

// New opens the data directory and prepares the daemon; Serve starts it.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	key, err := loadKey(cfg)
	if err != nil {
		return nil, err
	}
	db, err := sqlite.Open(ctx, cfg.StorePath())
	if err != nil {
		return nil, err
	}
	v, err := engine.NewValidator()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("start SQL validator: %w", err)
	}
	s := &Server{cfg: cfg, db: db, key: key, log: audit.NewLog(keyName, key), slog: logger, validator: v}
	s.rec = platform.NewRecorder(s.log, cfg.Clock)
	s.principals = platform.NewPrincipals(db, s.rec)
	s.ledger = ledger.New(s.rec)
	s.catalog = catalog.New(db, cfg, s.rec)
	s.grants = grants.New(db, cfg, s.rec, s.ledger)
	s.feedback = feedback.New(db, s.rec)
	s.devSlots = make(chan struct{}, max(cfg.Workers, 1))
	s.box, err = launch.New(ctx, cfg, logger)
	if err != nil {
		v.Close()
		db.Close()
		return nil, err
	}
	s.fusion = fusion.New(db, cfg, s.rec, s.box, logger)
	s.sched = newScheduler(cfg.Workers, func(ctx context.Context, id string) {
		s.runJob(ctx, id)
		s.changed.notify()
	})
	if err := s.recover(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the scheduler and closes the store.
func (s *Server) Close() error {
	s.sched.stop()
	s.box.Close()
	s.validator.Close()
	return s.db.Close()
}

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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func readJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", policy.ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: request body has trailing data", policy.ErrInvalid)
	}
	return nil
}

// Serve listens on the Unix socket (mode 0600) and, if configured, on TCP, until ctx ends;
// then it shuts down gracefully: it stops accepting requests, lets running requests finish
// and waits for running jobs up to a grace period.
func (s *Server) Serve(ctx context.Context) error {
	if err := os.Remove(s.cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	ul, err := net.Listen("unix", s.cfg.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Socket, err)
	}
	if err := os.Chmod(s.cfg.Socket, 0o600); err != nil {
		ul.Close()
		return err
	}
	s.listeners = append(s.listeners, ul)
	if s.cfg.Listen != "" {
		tl, err := net.Listen("tcp", s.cfg.Listen)
		if err != nil {
			ul.Close()
			return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
		}
		s.listeners = append(s.listeners, tl)
	}
	errc := make(chan error, len(s.listeners))
	for _, l := range s.listeners {
		hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
		s.httpSrv = append(s.httpSrv, hs)
		go func() {
			if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		s.slog.Info("listening", "addr", l.Addr().String(), "isolation", s.box.Name(), "workers", s.cfg.Workers)
	}
	s.record0(ctx, "daemon.start", map[string]string{"isolation": s.box.Name()})
	// Fused uploads go when their grant ends: now, after every grant action, and on a timer
	// for grants that simply expire.
	if err := s.fusion.Sweep(ctx); err != nil {
		s.slog.Error("sweep fused uploads", "err", err)
	}
	go s.fusion.Sweeper(ctx, s.cfg.SweepEvery)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, hs := range s.httpSrv {
		hs.Shutdown(sctx)
	}
	s.sched.drain(sctx)
	s.slog.Info("stopped")
	return err
}

// Addrs returns the addresses the daemon listens on (after Serve has started).
func (s *Server) Addrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.Addr())
	}
	return out
}

func (s *Server) record0(ctx context.Context, action string, details map[string]string) {
	err := s.db.Update(ctx, func(tx store.Tx) error { return s.rec.Record(ctx, tx, platform.System, action, "daemon", details) })
	if err != nil {
		s.slog.Error("audit", "action", action, "err", err)
	}
}
