package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/catalog/feedback"
	"github.com/veil-dp/veil/catalog/fusion"
	"github.com/veil-dp/veil/catalog/twin"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/kinds/custom"
	"github.com/veil-dp/veil/kinds/hescore"
	"github.com/veil-dp/veil/kinds/sql"
	"github.com/veil-dp/veil/kinds/train"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/metrics"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/review"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// Server is a running daemon: the HTTP API over the services below it.
type Server struct {
	cfg        Config
	db         store.Store
	key        *audit.Key
	ring       *audit.Keyring // key and retired keys (routes_keyring.go)
	log        *audit.Log
	signer     *auditSigner
	slog       *slog.Logger
	validator  *engine.Validator
	box        *launch.Launcher
	rec        *platform.Recorder
	principals *platform.Principals
	catalog    *catalog.Service
	grants     *grants.Service
	fusion     *fusion.Service
	feedback   *feedback.Service
	twins      *twin.Service
	jobs       *jobs.Service
	review     *review.Service
	hescore    *hescore.Kind
	custom     *custom.Kind
	refusals   *platform.Refusals

	metrics  *metrics.Registry
	certs    *certs // nil without TLS
	readyLog readyLog

	httpSrv   []*http.Server
	listeners []net.Listener
	wg        sync.WaitGroup
}

// New opens the data directory and prepares the daemon; Serve starts it.
func New(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	cs, err := checkListen(cfg)
	if err != nil {
		return nil, err
	}
	key, err := LoadSigningKey(cfg)
	if err != nil {
		return nil, err
	}
	ring, err := platform.LoadKeyring(cfg, key)
	if err != nil {
		return nil, err
	}
	opts, err := storeOptions(cfg, false)
	if err != nil {
		return nil, err
	}
	db, err := sqlite.OpenWith(ctx, opts)
	if err != nil {
		return nil, nameOptions(err)
	}
	as, err := openSigner(ctx, cfg, key, ring, db, logger)
	if err != nil {
		db.Close()
		return nil, nameOptions(err)
	}
	v, err := engine.NewValidator()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("start SQL validator: %w", err)
	}
	s := &Server{cfg: cfg, db: db, key: key, ring: ring, log: as.signer.Log(), signer: as, slog: logger, validator: v, certs: cs}
	s.metrics = metrics.New(s.snapshot, logger)
	s.box, err = launch.New(ctx, cfg, logger)
	if err != nil {
		v.Close()
		db.Close()
		return nil, err
	}
	s.box.OnStart = s.metrics.SandboxStarted
	s.metrics.SetPool(func() (metrics.Pool, bool) {
		st, ok := s.box.PoolStats()
		return metrics.Pool{Ready: st.Ready, StartedAhead: st.StartedAhead, StartedOnDemand: st.StartedOnDemand, Failed: st.Failed}, ok
	})
	s.rec = platform.NewRecorder(s.log, cfg.Clock)
	s.principals = platform.NewPrincipals(db, s.rec)
	s.refusals = platform.NewRefusals(db, s.rec, logger, cfg.RefusalWindow)
	env := platform.Env{DB: db, Config: cfg, Rec: s.rec, Log: logger}
	books := ledger.New(s.rec)
	s.catalog = catalog.New(env)
	s.grants = grants.New(env, books)
	s.feedback = feedback.New(env)
	s.fusion = fusion.New(env, s.box)
	s.jobs = jobs.New(env, s.grants, books, s.box)
	s.jobs.Observe = s.metrics
	s.twins = twin.New(env, s.box, books, s.jobs)
	s.jobs.Twins = s.twins
	s.review = review.New(env, key, s.jobs)

	// The job kinds. A request goes to the first kind that accepts it; SQL takes the rest.
	s.hescore = hescore.New(env, s.box)
	s.custom = custom.New(env, s.box)
	s.jobs.Register(s.hescore)
	s.jobs.Register(train.New(s.box, cfg))
	s.jobs.Register(s.custom)
	s.jobs.Register(sql.New(v, s.box, cfg))

	if err := s.catalog.Totals(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.grants.ReleaseStranded(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("release the budget slices of grants that never became active: %w", err)
	}
	if err := s.jobs.Start(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// SandboxesReady is how many sandboxes are prepared ahead and waiting for a job
// (Config.SandboxPool), for the operator's metrics and the benchmarks.
func (s *Server) SandboxesReady() int { return s.box.PoolReady() }

// JobSpillMB is the spill area (MB) each job gets (Config.JobSpillMB as the disk allows;
// launch.Launcher.JobSpillMB), for the benchmarks' notes.
func (s *Server) JobSpillMB() int { return s.box.JobSpillMB() }

// Close stops the jobs and closes the store.
func (s *Server) Close() error {
	s.jobs.Stop()
	s.box.Close()
	s.validator.Close()
	return s.db.Close()
}

// Serve listens on the Unix socket (mode 0600) and, if configured, on TCP (with TLS when
// given a certificate) and on a metrics address, until ctx ends; then it shuts down
// gracefully: it stops accepting requests, lets running requests finish and waits for
// running jobs up to a grace period. Config.OnListening is called once every listener is up.
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
	api := s.instrument(s.withConsole(s.Handler()))
	type listener struct {
		l       net.Listener
		handler http.Handler
		tls     bool
	}
	ls := []listener{{ul, api, false}}
	for _, t := range []struct {
		addr string
		h    http.Handler
	}{{s.cfg.Listen, api}, {s.cfg.MetricsListen, nil}} {
		if t.addr == "" {
			continue
		}
		tl, err := net.Listen("tcp", t.addr)
		if err != nil {
			for _, l := range ls {
				l.l.Close()
			}
			return fmt.Errorf("listen on %s: %w", t.addr, err)
		}
		h := t.h
		if h == nil {
			h = s.metricsHandler()
		}
		ls = append(ls, listener{tl, h, s.certs != nil})
	}
	errc := make(chan error, len(ls))
	for _, l := range ls {
		s.listeners = append(s.listeners, l.l)
		// Headers are bounded (64 KiB, the request line and its query included) like
		// bodies are; net/http answers 431 beyond.
		hs := &http.Server{Handler: l.handler, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10, ConnContext: peerContext,
			ErrorLog: slog.NewLogLogger(s.slog.Handler(), slog.LevelWarn)}
		if l.tls {
			hs.TLSConfig = s.certs.config()
		}
		s.httpSrv = append(s.httpSrv, hs)
		go func() {
			var err error
			if l.tls {
				err = hs.ServeTLS(l.l, "", "") // the certificate comes from TLSConfig, reloadable
			} else {
				err = hs.Serve(l.l)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		s.slog.Info("listening", "addr", l.l.Addr().String(), "tls", l.tls, "isolation", s.box.Name(), "workers", s.cfg.Workers)
	}
	s.record0(ctx, "daemon.start", map[string]string{"isolation": s.box.Name()})
	// Fused uploads go when their grant ends: now, after every grant action, and on a timer
	// for grants that simply expire.
	if err := s.fusion.Sweep(ctx); err != nil {
		s.slog.Error("sweep fused uploads", "err", err)
	}
	go s.fusion.Sweeper(ctx, s.cfg.SweepEvery)
	// Data-file uploads abandoned longer than their TTL go the same way.
	if err := s.catalog.SweepUploads(ctx); err != nil {
		s.slog.Error("sweep expired uploads", "err", err)
	}
	go s.catalog.UploadSweeper(ctx, s.cfg.SweepEvery)
	if s.cfg.OnListening != nil {
		s.cfg.OnListening(s.Addrs())
	}
	go s.refusals.Run(ctx)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, hs := range s.httpSrv {
		hs.Shutdown(sctx)
	}
	// The last window of refused requests is written once no request can add to it.
	if err := s.refusals.Flush(sctx); err != nil {
		s.slog.Error("audit refused requests", "err", err)
	}
	s.jobs.Drain(sctx)
	reason := "shutdown"
	if err != nil {
		reason = "listener failed"
	}
	s.record0(sctx, "daemon.stop", map[string]string{"reason": reason})
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
