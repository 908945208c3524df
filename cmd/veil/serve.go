package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/runner"
)

const defaultDataDir = "/var/lib/veil"

func newInitCmd() *cobra.Command {
	dir := defaultDataDir
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a data directory: store, platform signing key and a first operator token",
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := daemon.Init(cmd.Context(), daemon.Defaults(dir))
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "Initialised %s.\nPlatform public key: %s/platform.pub\nOperator token (shown once, keep it safe):\n%s\n", dir, dir, tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "data-dir", dir, "data directory")
	return cmd
}

func newServeCmd() *cobra.Command {
	dir := defaultDataDir
	cfg := daemon.Defaults(dir)
	var socket string
	var logJSON bool
	var overdue []string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: the HTTP API on a Unix socket (and optionally TCP)",
		RunE: func(cmd *cobra.Command, args []string) error {
			c := daemon.Defaults(dir)
			c.Listen, c.Workers, c.Approvals, c.Isolation = cfg.Listen, cfg.Workers, cfg.Approvals, cfg.Isolation
			c.JobMemoryMB, c.JobThreads, c.JobWall, c.JobPids = cfg.JobMemoryMB, cfg.JobThreads, cfg.JobWall, cfg.JobPids
			c.Review.Deadline = cfg.Review.Deadline
			c.LogRunnerOutput = cfg.LogRunnerOutput
			for _, o := range overdue {
				role, dec, ok := strings.Cut(o, "=")
				if !ok || (dec != string(policy.Approve) && dec != string(policy.Reject)) ||
					(role != string(policy.Operator) && role != string(policy.Authority) && role != string(policy.Provider)) {
					return fmt.Errorf("--overdue %q: want STAGE=approve|reject with STAGE operator, authority or provider", o)
				}
				c.Review.Defaults[policy.Role(role)] = policy.Decision(dec)
			}
			if socket != "" {
				c.Socket = socket
			}
			var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
			if logJSON {
				h = slog.NewJSONHandler(os.Stderr, nil)
			}
			logger := slog.New(h)
			s, err := daemon.New(cmd.Context(), c, logger)
			if err != nil {
				return err
			}
			defer s.Close()
			return s.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "data-dir", dir, "data directory (created by `veil init`)")
	f.StringVar(&socket, "socket", "", "Unix socket path (default DATA-DIR/veil.sock)")
	f.StringVar(&cfg.Listen, "listen", "", "also serve on this TCP address, e.g. 127.0.0.1:8470")
	f.IntVar(&cfg.Workers, "workers", cfg.Workers, "jobs that may run at once")
	f.IntVar(&cfg.Approvals, "approvals", cfg.Approvals, "reviewer approvals a release needs (2 for four-eyes review)")
	f.StringVar(&cfg.Isolation, "isolation", cfg.Isolation, "container (libcontainer sandbox) or process (development only, no sandbox)")
	f.IntVar(&cfg.JobMemoryMB, "job-memory-mb", cfg.JobMemoryMB, "memory limit of one job")
	f.IntVar(&cfg.ScratchMB, "scratch-mb", cfg.ScratchMB, "size of a job's /scratch, and of a custom job's /out")
	f.IntVar(&cfg.JobThreads, "job-threads", cfg.JobThreads, "CPU cores (and DuckDB threads) of one job")
	f.DurationVar(&cfg.JobWall, "job-timeout", cfg.JobWall, "wall-clock limit of one job")
	f.Int64Var(&cfg.JobPids, "job-pids", cfg.JobPids, "process and thread limit of one job")
	f.DurationVar(&cfg.Review.Deadline, "review-deadline", cfg.Review.Deadline, "time each grant review stage has before its default applies")
	f.StringSliceVar(&overdue, "overdue", nil, "what an overdue grant review stage decides, e.g. --overdue authority=reject (default: approve)")
	f.BoolVar(&logJSON, "log-json", false, "write logs as JSON")
	f.BoolVar(&cfg.LogRunnerOutput, "log-runner-output", false, "log the runner's stderr of failed jobs (it can contain data values: debugging on synthetic data only)")
	return cmd
}

// newRunnerCmd is the runner the daemon starts inside each sandbox. It is not for people.
func newRunnerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "runner",
		Short:  "Run one job (started by the daemon inside a sandbox)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			result := os.NewFile(3, "result")
			if result == nil {
				return fmt.Errorf("runner: no result pipe on fd 3")
			}
			defer result.Close()
			return runner.Main(cmd.Context(), os.Stdin, result)
		},
	}
}
