package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/sandbox"
)

// usage is what a job consumed.
type usage = sandbox.Usage

// launcher starts the runner for a job and copies its result stream into result.
type launcher interface {
	name() string
	run(ctx context.Context, id string, job engine.Job, result io.Writer) (usage, error)
	cleanup(ctx context.Context) ([]string, error)
	// runImage runs args on a runtime image (custom jobs) with the given mounts; the result
	// is the sandbox's, for the caller to reduce to a status class.
	runImage(ctx context.Context, id, image string, args []string, mounts []sandbox.Mount, env []string) (*sandbox.Result, error)
}

func newLauncher(ctx context.Context, cfg Config, logger *slog.Logger) (launcher, error) {
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	switch cfg.Isolation {
	case "container":
		rt, err := sandbox.New(filepath.Join(cfg.DataDir, "sandbox"), sandbox.WithBinary(bin))
		if err != nil {
			// Refuse to run rather than run unsandboxed: say why, and how to proceed.
			return nil, fmt.Errorf("%w: cannot create sandboxes here (%v); run the daemon as root on Linux with cgroups, or, for development only, --isolation=process", errUnavailable, err)
		}
		return &containerLauncher{rt: rt, bin: bin, cfg: cfg}, nil
	case "process":
		logger.Warn("isolation=process: jobs run as plain child processes without a sandbox; for development only")
		return &processLauncher{bin: bin, cfg: cfg}, nil
	}
	return nil, fmt.Errorf("%w: unknown isolation %q (container or process)", errInvalid, cfg.Isolation)
}

func (c Config) limits() sandbox.Limits {
	return sandbox.Limits{
		MemoryBytes:  int64(c.JobMemoryMB) << 20,
		Pids:         c.JobPids,
		CPUs:         float64(c.JobThreads),
		Wall:         c.JobWall,
		ScratchBytes: int64(c.ScratchMB) << 20,
		ResultBytes:  c.MaxResultByte,
		OutputBytes:  64 << 10,
	}
}

// statusError turns a sandbox result that is not ok into a job error with the sandbox's
// sanitized message for the vendor and the captured output for the operator log.
// statusError turns a sandbox result into the job's error. The runner's stderr can hold data
// values (a DuckDB error quotes the value it failed on), so it reaches the operator's log
// only when the operator asked for it (Config.LogRunnerOutput); otherwise only its size does.
func statusError(res *sandbox.Result, logOutput bool) error {
	if res.Status == sandbox.StatusOK {
		return nil
	}
	msg := res.Message
	if msg == "" {
		msg = fmt.Sprintf("the job ended with status %s", res.Status)
	}
	stderr := fmt.Sprintf("%d bytes withheld (may contain data; --log-runner-output shows them)", len(res.Stderr))
	if logOutput {
		stderr = tail(res.Stderr, 2000)
	}
	return &jobError{msg: msg, detail: fmt.Errorf("status %s exit %d stderr: %s", res.Status, res.ExitCode, stderr)}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// processLauncher runs the runner as a plain child process: no sandbox. Development only.
type processLauncher struct {
	bin string
	cfg Config
}

func (l *processLauncher) name() string { return "process" }

func (l *processLauncher) cleanup(context.Context) ([]string, error) { return nil, nil }

func (l *processLauncher) run(ctx context.Context, id string, job engine.Job, result io.Writer) (usage, error) {
	in, err := json.Marshal(job)
	if err != nil {
		return usage{}, err
	}
	spec := sandbox.Spec{ID: id, Args: []string{l.bin, "runner"}, Stdin: in, Limits: l.cfg.limits()}
	res, err := sandbox.RunLocal(ctx, spec, result)
	if err != nil {
		return usage{}, err
	}
	return res.Usage, statusError(res, l.cfg.LogRunnerOutput)
}

// containerLauncher runs the runner in a fresh libcontainer sandbox with only the job's
// dataset files mounted, read-only, at /data/<dataset>/<file>, and its other inputs (an he
// job's encrypted model and public key) at /in/<name>.
type containerLauncher struct {
	rt  *sandbox.Runtime
	bin string
	cfg Config
}

func (l *containerLauncher) name() string { return "container" }

func (l *containerLauncher) cleanup(ctx context.Context) ([]string, error) { return l.rt.Cleanup(ctx) }

func (l *containerLauncher) run(ctx context.Context, id string, job engine.Job, result io.Writer) (usage, error) {
	var mounts []sandbox.Mount
	for i, t := range job.Tables {
		var inside []string
		for _, f := range t.Files {
			dst := "/data/" + t.Name + "/" + filepath.Base(f)
			mounts = append(mounts, sandbox.Mount{Source: f, Destination: dst})
			inside = append(inside, dst)
		}
		job.Tables[i].Files = inside
	}
	if len(job.Inputs) > 0 {
		inputs := map[string]string{}
		for name, f := range job.Inputs {
			dst := "/in/" + name
			mounts = append(mounts, sandbox.Mount{Source: f, Destination: dst})
			inputs[name] = dst
		}
		job.Inputs = inputs
	}
	in, err := json.Marshal(job)
	if err != nil {
		return usage{}, err
	}
	spec := sandbox.Spec{ID: id, Args: []string{"/veil", "runner"}, Stdin: in, Mounts: mounts, Limits: l.cfg.limits()}
	res, err := l.rt.Run(ctx, spec, result)
	if err != nil {
		return usage{}, err
	}
	return res.Usage, statusError(res, l.cfg.LogRunnerOutput)
}

func (l *processLauncher) runImage(context.Context, string, string, []string, []sandbox.Mount, []string) (*sandbox.Result, error) {
	return nil, fmt.Errorf("%w: custom jobs need container isolation", errUnavailable)
}

func (l *containerLauncher) runImage(ctx context.Context, id, image string, args []string, mounts []sandbox.Mount, env []string) (*sandbox.Result, error) {
	spec := sandbox.Spec{ID: id, Image: image, Args: args, Env: env, Mounts: mounts, Limits: l.cfg.limits()}
	return l.rt.Run(ctx, spec, io.Discard)
}
