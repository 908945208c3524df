package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/runner"
)

const defaultDataDir = "/var/lib/veil"

func newInitCmd() *cobra.Command {
	dir := defaultDataDir
	var initKey daemon.Config
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a data directory: store, platform signing key and a first operator token",
		RunE: func(cmd *cobra.Command, args []string) error {
			c := daemon.Defaults(dir)
			c.AuditKey, c.AuditState = initKey.AuditKey, initKey.AuditState
			tok, err := daemon.Init(cmd.Context(), c)
			if err != nil {
				return err
			}
			rep := struct {
				DataDir   string `json:"data_dir"`
				PublicKey string `json:"public_key_file"`
				Token     string `json:"operator_token"`
			}{dir, dir + "/platform.pub", tok}
			return say(rep, "Initialised %s.\nPlatform public key: %s/platform.pub\nOperator token (shown once, keep it safe):\n%s\n", dir, dir, tok)
		},
	}
	cmd.Flags().StringVar(&dir, "data-dir", dir, "data directory")
	initKeyFlags(cmd.Flags(), &initKey)
	return cmd
}

// serveFlags are veil serve's flags; config turns them into the daemon's Config.
type serveFlags struct {
	dir     string
	socket  string
	cfg     daemon.Config // the flags write into it directly, so that none is forgotten
	overdue []string
	logJSON bool
}

// config is the flags' Config with the paths that depend on the data directory. (Copying
// flag by flag into a fresh Defaults once forgot --scratch-mb.)
func (f *serveFlags) config() (daemon.Config, error) {
	d := daemon.Defaults(f.dir)
	c := f.cfg
	c.DataDir, c.Socket = d.DataDir, d.Socket
	c.Review.Defaults = maps.Clone(f.cfg.Review.Defaults)
	for _, o := range f.overdue {
		role, dec, ok := strings.Cut(o, "=")
		if !ok || (dec != string(policy.Approve) && dec != string(policy.Reject)) ||
			(role != string(policy.Operator) && role != string(policy.Authority) && role != string(policy.Provider)) {
			return c, usageErr("--overdue %q: want STAGE=approve|reject with STAGE operator, authority or provider", o)
		}
		c.Review.Defaults[policy.Role(role)] = policy.Decision(dec)
	}
	if f.socket != "" {
		c.Socket = f.socket
	}
	if c.ReleaseQuantum < time.Second || c.ReleaseQuantum > time.Hour {
		return c, usageErr("--release-quantum %s: give a duration from 1s to 1h (default %s); a vendor sees a job end only at its multiples, so that when it ends does not tell the data", c.ReleaseQuantum, daemon.Defaults("").ReleaseQuantum)
	}
	return c, nil
}

func newServeCmd() *cobra.Command {
	cmd, _ := serveCommand()
	return cmd
}

// serveCommand is veil serve and the flags it parses into.
func serveCommand() (*cobra.Command, *serveFlags) {
	sf := &serveFlags{dir: defaultDataDir, cfg: daemon.Defaults(defaultDataDir)}
	cfg := &sf.cfg
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: the HTTP API on a Unix socket (and optionally TCP)",
		Long: `Run the daemon: the HTTP API on a Unix socket (and optionally TCP).

Under systemd (Type=notify, see deploy/veil.service) it reports READY=1 once every
listener is up, STOPPING=1 when it begins a graceful shutdown, and, with WatchdogSec=,
WATCHDOG=1 only while the API keeps answering on its socket. With --tls-cert, SIGHUP reads
the certificate and key again: new connections get the new certificate, open ones keep
theirs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := sf.config()
			if err != nil {
				return err
			}
			var h slog.Handler = slog.NewTextHandler(g.errOut, nil)
			if sf.logJSON {
				h = slog.NewJSONHandler(g.errOut, nil)
			}
			logger := slog.New(h)
			// Taken before anything starts, so that no child process inherits the socket.
			sd := newNotifier()
			ctx := cmd.Context()
			bi, _ := debug.ReadBuildInfo()
			v := buildVersion(version, commit, bi)
			c.Version, c.Commit = v.Version, v.Commit
			listening := make(chan []net.Addr, 1)
			c.OnListening = func(addrs []net.Addr) { listening <- addrs }
			s, err := daemon.New(ctx, c, logger)
			if err != nil {
				return err
			}
			defer s.Close()
			served := make(chan struct{})
			go sd.follow(ctx, listening, served, c.Socket, logger)
			go reloadOnHangup(ctx, s, logger)
			err = s.Serve(ctx)
			close(served)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&sf.dir, "data-dir", sf.dir, "data directory (created by `veil init`)")
	f.StringVar(&sf.socket, "socket", "", "Unix socket path (default DATA-DIR/veil.sock)")
	f.StringVar(&cfg.Listen, "listen", "", "also serve on this TCP address, e.g. 127.0.0.1:8470")
	f.IntVar(&cfg.Workers, "workers", cfg.Workers, "jobs that may run at once")
	f.IntVar(&cfg.Approvals, "approvals", cfg.Approvals, "reviewer approvals a release needs (2 for four-eyes review)")
	f.StringVar(&cfg.Isolation, "isolation", cfg.Isolation, "container (libcontainer sandbox) or process (development only, no sandbox)")
	f.IntVar(&cfg.SandboxPool, "sandbox-pool", cfg.SandboxPool, "sandboxes kept prepared ahead for jobs, each used for one job (0: each job's sandbox is made when it starts; container isolation only)")
	f.IntVar(&cfg.JobMemoryMB, "job-memory-mb", cfg.JobMemoryMB, "memory limit of one job")
	f.IntVar(&cfg.JobSpillMB, "job-spill-mb", cfg.JobSpillMB, "size of a job's spill area on the data directory's disk, for DuckDB's temporary files when a job does not fit in its memory (0: jobs cannot spill)")
	f.IntVar(&cfg.ScratchMB, "scratch-mb", cfg.ScratchMB, "size of a job's /scratch, and of a custom job's /out")
	f.IntVar(&cfg.JobThreads, "job-threads", cfg.JobThreads, "CPU cores (and DuckDB threads) of one job")
	f.DurationVar(&cfg.JobWall, "job-timeout", cfg.JobWall, "wall-clock limit of one job")
	f.DurationVar(&cfg.ReleaseQuantum, "release-quantum", cfg.ReleaseQuantum, "a vendor sees a job on real data start and end only at whole multiples of this after its submission (1s to 1h)")
	f.Int64Var(&cfg.JobPids, "job-pids", cfg.JobPids, "process and thread limit of one job")
	f.DurationVar(&cfg.Review.Deadline, "review-deadline", cfg.Review.Deadline, "time each grant review stage has before its default applies")
	f.StringSliceVar(&sf.overdue, "overdue", nil, "what an overdue grant review stage decides, e.g. --overdue authority=reject (default: approve)")
	f.BoolVar(&sf.logJSON, "log-json", false, "write logs as JSON")
	f.BoolVar(&cfg.LogRunnerOutput, "log-runner-output", false, "log the runner's stderr of failed jobs (it can contain data values: debugging on synthetic data only)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serve TLS on --listen and --metrics-listen with this PEM certificate (chain); read again on SIGHUP")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "the PEM private key of --tls-cert")
	f.BoolVar(&cfg.InsecureListen, "insecure-listen", false, "allow --listen or --metrics-listen on an address other than loopback without TLS (behind a TLS-terminating proxy only)")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "also serve /metrics, /healthz and /readyz without a token on this TCP address, e.g. 127.0.0.1:9470")
	f.DurationVar(&cfg.UploadTTL, "upload-ttl", cfg.UploadTTL, "how long a data-file upload is kept after its last part unless registered; then its bytes are deleted and the provider starts over")
	f.IntVar(&cfg.MinFreeMB, "min-free-mb", cfg.MinFreeMB, "free space (MiB) of the data directory's file system below which /readyz answers not ready")
	auditFlags(f, cfg)

	f.IntVar(&cfg.TenantJobs, "tenant-jobs", cfg.TenantJobs, "jobs one tenant may have queued or running; more are answered 429 (0: no limit)")
	f.Float64Var(&cfg.SubmitRate, "submit-rate", cfg.SubmitRate, "job submissions a second one tenant may make; faster ones are answered 429 (0: no limit)")
	f.IntVar(&cfg.SubmitBurst, "submit-burst", cfg.SubmitBurst, "submissions one tenant may make at once before --submit-rate applies")
	f.IntVar(&cfg.TenantValidations, "tenant-validations", cfg.TenantValidations, "queries of one tenant validated at once; more wait their turn (0: no limit)")
	return cmd, sf
}

// reloadOnHangup reads the TLS certificate again on each SIGHUP until ctx ends; a failed
// reload keeps the certificate the daemon had. (Without TLS a SIGHUP is logged and ignored,
// rather than ending the daemon as it would by default.)
func reloadOnHangup(ctx context.Context, s *daemon.Server, logger *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := s.ReloadTLS(); err != nil {
				logger.Warn("SIGHUP: no TLS certificate was reloaded", "err", err)
			}
		}
	}
}

// follow tells systemd how the daemon is doing: READY=1 once Serve says its listeners are up
// (after crash recovery), WATCHDOG=1 while the API keeps answering on its socket, STOPPING=1
// when ctx ends and the graceful shutdown begins. It returns when served is closed (Serve
// returned).
func (n *notifier) follow(ctx context.Context, listening <-chan []net.Addr, served <-chan struct{}, socket string, logger *slog.Logger) {
	if !n.enabled() {
		return
	}
	select {
	case <-ctx.Done():
		n.send("STOPPING=1", logger)
		return
	case <-served:
		return
	case <-listening:
	}
	n.send("READY=1\nSTATUS=serving on "+socket, logger)
	c, err := client.New("unix://"+socket, "")
	if err != nil {
		logger.Error("systemd watchdog: cannot ask the socket", "err", err)
		return
	}
	answers := func(timeout time.Duration) bool {
		actx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := c.PlatformKey(actx)
		return err == nil
	}
	var watchdog <-chan time.Time
	if n.watchdog > 0 {
		// Half the interval, as sd_watchdog_enabled(3) advises; a ping only when the API
		// answers within a quarter of it, so that a wedged daemon is restarted.
		t := time.NewTicker(n.watchdog / 2)
		defer t.Stop()
		watchdog = t.C
	}
	for {
		select {
		case <-ctx.Done():
			n.send("STOPPING=1\nSTATUS=shutting down: finishing requests and running jobs", logger)
			return
		case <-served:
			// Serve may return before this select sees ctx end (both ready: Go picks
			// either); a shutdown is still announced.
			if ctx.Err() != nil {
				n.send("STOPPING=1\nSTATUS=shut down", logger)
			}
			return
		case <-watchdog:
			if answers(n.watchdog / 4) {
				n.send("WATCHDOG=1", logger)
			} else {
				logger.Warn("systemd watchdog: the API did not answer on its socket; no keep-alive sent", "socket", socket)
			}
		}
	}
}

// newRunnerCmd is the runner the daemon starts inside each sandbox. It is not for people.
func newRunnerCmd() *cobra.Command {
	var preset engine.Preset
	cmd := &cobra.Command{
		Use:    "runner",
		Short:  "Run one job (started by the daemon inside a sandbox)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			result := os.NewFile(3, "result")
			if result == nil {
				return fmt.Errorf("runner: no result pipe on fd 3")
			}
			defer result.Close()
			err := runner.Main(cmd.Context(), os.Stdin, result, preset)
			if err != nil {
				return &exitError{runner.ExitCode(err), err}
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&preset.Threads, "threads", 0, "DuckDB threads to set before the job arrives (the daemon's SQL jobs' setting)")
	cmd.Flags().IntVar(&preset.MemoryLimitMB, "memory-mb", 0, "DuckDB memory limit in MB to set before the job arrives (the daemon's SQL jobs' setting)")
	cmd.Flags().StringVar(&preset.TempDir, "temp-dir", "", "spill area in which to make DuckDB's temporary directory before the job arrives (the daemon's jobs' setting)")
	cmd.Flags().IntVar(&preset.TempMaxMB, "temp-max-mb", 0, "DuckDB's limit in MB on its temporary files there (the daemon's jobs' setting)")
	return cmd
}
