package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/sandbox"
	"golang.org/x/sys/unix"
)

// ErrUnavailable is what cannot be done on this daemon as it runs (no sandbox here).
var ErrUnavailable = errors.New("unavailable")

// Launcher starts the runner for a job (or a program on a runtime image) and copies its
// result stream to the caller. With container isolation each run is a libcontainer sandbox
// of its own: taken from a pool of sandboxes prepared ahead (Config.SandboxPool; the runner
// already started in it with DuckDB open, waiting for its job) or made for the run, and in
// either case destroyed after it, never given a second job. With process isolation, a
// development escape hatch, each run is a plain child process.
type Launcher struct {
	rt *sandbox.Runtime // nil with process isolation
	// pool, once Cleanup has run (with container isolation and Config.SandboxPool > 0),
	// holds the runner's sandboxes prepared ahead; nil: each run makes its own.
	pool atomic.Pointer[sandbox.Pool]
	log  *slog.Logger
	bin  string
	cfg  platform.Config
	// OnStart, if set, is told how long each sandbox took to start, and for a job of which
	// kind (ForKind; "" for none), for the operator's metrics.
	OnStart func(kind string, setup time.Duration)
	probe   prober
}

// New prepares the isolation cfg asks for, or says why it cannot.
func New(ctx context.Context, cfg platform.Config, logger *slog.Logger) (*Launcher, error) {
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
			return nil, fmt.Errorf("%w: cannot create sandboxes here (%v); run the daemon as root on Linux with cgroups, or, for development only, --isolation=process", ErrUnavailable, err)
		}
		if cfg.SandboxPool < 0 || cfg.SandboxPool > 64 {
			return nil, fmt.Errorf("%w: sandbox pool size %d: give 0 (no pool) to 64", policy.ErrInvalid, cfg.SandboxPool)
		}
		if cfg.JobSpillMB < 0 {
			return nil, fmt.Errorf("%w: job spill area of %d MB: give 0 (none) or more", policy.ErrInvalid, cfg.JobSpillMB)
		}
		if err := rt.SpillErr(); cfg.JobSpillMB > 0 && err != nil {
			// The host lacks what a spill area is made of: jobs run, but cannot spill.
			logger.Warn("jobs get no spill area: a job that does not fit in its memory fails", "err", err)
			cfg.JobSpillMB = 0
		}
		if cfg.JobSpillMB > 0 {
			var st unix.Statfs_t
			if err := unix.Statfs(cfg.DataDir, &st); err == nil {
				free := int64(st.Bavail) * int64(st.Bsize)
				if mb := fitSpill(free, cfg.JobSpillMB, cfg.Workers+cfg.SandboxPool+1); mb < cfg.JobSpillMB {
					logger.Warn("job spill areas are smaller than configured: the spill areas of every sandbox at once may take at most half the data directory's free disk; free more space or give a smaller --job-spill-mb to silence this",
						"job_spill_mb", cfg.JobSpillMB, "now_mb", mb, "sandboxes", cfg.Workers+cfg.SandboxPool+1, "disk_free_mb", free>>20)
					cfg.JobSpillMB = mb
				}
			}
		}
		return &Launcher{rt: rt, log: logger, bin: bin, cfg: cfg}, nil
	case "process":
		logger.Warn("isolation=process: jobs run as plain child processes without a sandbox; for development only")
		return &Launcher{log: logger, bin: bin, cfg: cfg}, nil
	}
	return nil, fmt.Errorf("%w: unknown isolation %q (container or process)", policy.ErrInvalid, cfg.Isolation)
}

// Name is the isolation: container or process.
func (l *Launcher) Name() string {
	if l.rt == nil {
		return "process"
	}
	return "container"
}

// Close destroys the sandboxes prepared ahead (after the runs still going on) and removes
// the cgroup parent the sandboxes ran under.
func (l *Launcher) Close() {
	l.closePool()
	if l.rt != nil {
		l.rt.RemoveCgroupParent()
	}
}

func (l *Launcher) closePool() {
	if p := l.pool.Swap(nil); p != nil {
		if err := p.Close(); err != nil {
			l.log.Error("destroy the sandboxes of the pool", "err", err)
		}
	}
}

// JobSpillMB is the spill area (MB) a runner job gets: Config.JobSpillMB, less where the
// data directory's disk cannot hold one for every sandbox at once (New fits it), 0 where
// jobs cannot spill (no spill areas on this host, or process isolation).
func (l *Launcher) JobSpillMB() int {
	if l.rt == nil {
		return 0
	}
	return l.cfg.JobSpillMB
}

// PoolReady is how many sandboxes are prepared and waiting for a job (0 without a pool).
func (l *Launcher) PoolReady() int {
	if p := l.pool.Load(); p != nil {
		return p.Ready()
	}
	return 0
}

// PoolStats is what the current pool of sandboxes prepared ahead has done (false without
// a pool: Config.SandboxPool 0, process isolation, or before Cleanup).
func (l *Launcher) PoolStats() (sandbox.PoolStats, bool) {
	if p := l.pool.Load(); p != nil {
		return p.Stats(), true
	}
	return sandbox.PoolStats{}, false
}

// runnerArgs is the runner's command line: bin is the veil binary (mounted at /veil inside
// a sandbox). The runner sets the SQL kinds' DuckDB threads and memory limit (kinds/sql:
// JobThreads, DuckDBMemoryMB) while it waits for its job, and, in a sandbox with a spill
// area (lim), the temporary directory there that spillFor gives its job; a job with others
// sets its own.
func (l *Launcher) runnerArgs(bin string, lim sandbox.Limits) []string {
	args := []string{bin, "runner", fmt.Sprintf("--threads=%d", max(l.cfg.JobThreads, 1)), fmt.Sprintf("--memory-mb=%d", l.cfg.DuckDBMemoryMB())}
	var j engine.Job
	if lim.SpillBytes > 0 {
		spillFor(&j, l.cfg)
	}
	if j.TempDir != "" {
		args = append(args, "--temp-dir="+j.TempDir, fmt.Sprintf("--temp-max-mb=%d", j.TempMaxMB))
	}
	return args
}

// Cleanup destroys the sandboxes a previous run of the daemon left behind and returns the
// ids of their jobs. Then, with Config.SandboxPool > 0, it starts preparing sandboxes for
// the runner ahead (a pool needs a clean state directory, so it starts here).
func (l *Launcher) Cleanup(ctx context.Context) ([]string, error) {
	if l.rt == nil {
		return nil, nil
	}
	// Cleanup would destroy the pool's sandboxes under it: a second call starts a new one.
	l.closePool()
	ids, err := l.rt.Cleanup(ctx)
	if err != nil || l.cfg.SandboxPool == 0 {
		return ids, err
	}
	p, err := l.rt.NewPool(sandbox.Template{Args: l.runnerArgs("/veil", limits(l.cfg)), Limits: limits(l.cfg)}, l.cfg.SandboxPool)
	if err != nil {
		return ids, fmt.Errorf("start the sandbox pool: %w", err)
	}
	l.pool.Store(p)
	return ids, nil
}

// Admit refuses real data to a daemon that runs jobs without a sandbox: the development
// escape hatch (isolation=process) serves only datasets their provider declared synthetic.
func (l *Launcher) Admit(schemas map[string]*policy.Schema) error {
	if l.rt != nil {
		return nil
	}
	for name, sch := range schemas {
		if !sch.Synthetic {
			return fmt.Errorf("%w: this daemon runs jobs without a sandbox (isolation=%s, for development only) and dataset %s holds real data; ask the operator to run the daemon with --isolation=container as root on Linux", ErrUnavailable, l.Name(), name)
		}
	}
	return nil
}

func limits(c platform.Config) sandbox.Limits {
	return sandbox.Limits{
		MemoryBytes:  int64(c.JobMemoryMB) << 20,
		Pids:         c.JobPids,
		CPUs:         float64(c.JobThreads),
		Wall:         c.JobWall,
		ScratchBytes: int64(c.ScratchMB) << 20,
		ResultBytes:  c.MaxResultByte,
		OutputBytes:  64 << 10,
		SpillBytes:   int64(c.JobSpillMB) << 20,
	}
}

// inputBytes is the size of the files mounted for a job.
func inputBytes(mounts []sandbox.Mount) int64 {
	var n int64
	for _, m := range mounts {
		if fi, err := os.Stat(m.Source); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// spillFor points a runner job's DuckDB at the sandbox's spill area, when it has one, and
// bounds its temporary files to 90% of the area (the file system's own overhead is the
// rest; the area's size is the hard limit).
func spillFor(job *engine.Job, c platform.Config) {
	if c.JobSpillMB > 0 {
		job.TempDir, job.TempMaxMB = sandbox.SpillPath, c.JobSpillMB*9/10
	}
}

// Failure is a job's failure: a message safe for the vendor and details for the operator
// log only.
type Failure struct {
	Msg    string // for the vendor
	Detail error  // for the operator log only
	// Class is set when how the job failed depends on the data it ran on (which limit it
	// hit, how far, what the runner or gate said of the result): a vendor of a job on real
	// data then reads only the class (ClassMessage), never Msg.
	Class Class
}

func (e *Failure) Error() string { return e.Msg }

// Class is a class of failures on data: all a vendor learns of how a job on real data
// failed, besides that it did. Which class a failure is in can depend on the data; what the
// vendor reads of it is one fixed sentence per class.
type Class string

// The classes of failures on data.
const (
	// ClassLimit: the job hit a resource limit of the platform (memory, time, processes,
	// the size of its result or output); which one, and how far, is the operator's.
	ClassLimit Class = "resource limit"
	// ClassData: the job failed while it ran on the data, or its result could not be
	// gated.
	ClassData Class = "failed on the data"
)

// Fail is a failure the vendor may read about as msg: one that the request, the grant and
// the platform's state alone decide, never the data.
func Fail(msg string, detail error) error { return &Failure{Msg: msg, Detail: detail} }

// FailOnData is a failure that depends on the data the job ran on: a vendor of a job on
// real data reads only its class; msg is for the dev runs on twins and the operator.
func FailOnData(class Class, msg string, detail error) error {
	return &Failure{Msg: msg, Detail: detail, Class: class}
}

// ClassMessage is what a vendor of a job on real data reads of a failure in class c: the
// same sentence for every job in the class, whatever the data.
func ClassMessage(c Class) string {
	switch c {
	case ClassLimit:
		return "the job failed: resource limit (memory, time, processes or output size; which one is not shown for jobs on real data); simplify the job, try it on the dev twins (veil dev run), or ask the operator"
	default:
		return "the job failed: it failed on the data (the reason is not shown for jobs on real data); try it on the dev twins (veil dev run), or ask the operator"
	}
}

// ForVendor is the message a vendor reads of a job's failure: a failure on data (a Failure
// with a class) shows only its class when the job ran on real data (exact false); dev runs
// on twins (exact true) read the exact message. Other errors read as Explain says.
func ForVendor(err error, exact bool) string {
	msg, _ := Explain(err)
	if exact {
		return msg
	}
	var f *Failure
	if errors.As(err, &f) && f.Class != "" {
		return ClassMessage(f.Class)
	}
	return msg
}

// Explain splits a job's error into what the vendor is told and what the operator log gets.
func Explain(err error) (vendor, operator string) {
	var f *Failure
	if errors.As(err, &f) {
		d := ""
		if f.Detail != nil {
			d = f.Detail.Error()
		}
		return f.Msg, f.Msg + ": " + d
	}
	if errors.Is(err, context.Canceled) {
		return "the job was canceled", err.Error()
	}
	return "the job failed inside the platform; the operator has the details", err.Error()
}

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
	class := StatusClass(res.Status)
	if res.Status == sandbox.StatusFailed && res.ExitCode == engine.ExitResourceLimit {
		// The runner says DuckDB stopped at the job's memory or spill limit.
		class, msg = ClassLimit, "the job hit its memory or spill limit"
	}
	return &Failure{Msg: msg, Detail: fmt.Errorf("status %s exit %d stderr: %s", res.Status, res.ExitCode, stderr), Class: class}
}

// StatusClass is the class of failures on data a sandbox status is in ("" for ok, and for a
// run the caller cancelled: that is the caller's doing, not the data's).
func StatusClass(st sandbox.Status) Class {
	switch st {
	case sandbox.StatusOK, sandbox.StatusKilled:
		return ""
	case sandbox.StatusOOM, sandbox.StatusPids, sandbox.StatusTimeout, sandbox.StatusResultTooLarge:
		return ClassLimit
	}
	return ClassData
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Run runs the runner on job and copies its result stream into result. In a container only
// the job's dataset files are mounted, read-only, at /data/<dataset>/<file>, and its other
// inputs (an he job's encrypted model and public key) at /in/<name>.
func (l *Launcher) Run(ctx context.Context, id string, job engine.Job, result io.Writer) (sandbox.Usage, error) {
	if l.rt == nil {
		in, err := json.Marshal(job)
		if err != nil {
			return sandbox.Usage{}, err
		}
		spec := sandbox.Spec{ID: id, Args: l.runnerArgs(l.bin, sandbox.Limits{}), Stdin: in, Limits: limits(l.cfg)}
		if err := stored(ctx); err != nil {
			return sandbox.Usage{}, err
		}
		res, err := sandbox.RunLocal(ctx, spec, result)
		if err != nil {
			return sandbox.Usage{}, err
		}
		l.started(ctx, res)
		return res.Usage, statusError(res, l.cfg.LogRunnerOutput)
	}
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
	lim := limits(l.cfg)
	p := l.pool.Load()
	if p == nil && inputBytes(mounts) < int64(l.cfg.DuckDBMemoryMB())<<20/16 {
		// A sandbox made for the job would make its spill area now, a file system of its
		// own (tens of milliseconds, more on a loaded disk): a job whose files are less
		// than a sixteenth of its DuckDB's memory does without. (A pool's sandboxes have
		// theirs prepared ahead.)
		lim.SpillBytes = 0
	}
	if lim.SpillBytes > 0 {
		spillFor(&job, l.cfg)
	}
	in, err := json.Marshal(job)
	if err != nil {
		return sandbox.Usage{}, err
	}
	spec := sandbox.Spec{ID: id, Args: l.runnerArgs("/veil", lim), Stdin: in, Mounts: mounts, Limits: lim}
	if err := stored(ctx); err != nil {
		return sandbox.Usage{}, err
	}
	var res *sandbox.Result
	if p != nil {
		// A sandbox prepared ahead gets the job's mounts and stdin now; it is destroyed
		// after the job, like a fresh one.
		res, err = p.Run(ctx, spec, result)
	} else {
		res, err = l.rt.Run(ctx, spec, result)
	}
	if err != nil {
		return sandbox.Usage{}, err
	}
	l.started(ctx, res)
	return res.Usage, statusError(res, l.cfg.LogRunnerOutput)
}

// RunImage runs args on a runtime image (custom jobs) with the given mounts; the result is
// the sandbox's, for the caller to reduce to a status class.
func (l *Launcher) RunImage(ctx context.Context, id, image string, args []string, mounts []sandbox.Mount, env []string) (*sandbox.Result, error) {
	if l.rt == nil {
		return nil, fmt.Errorf("%w: custom jobs need container isolation", ErrUnavailable)
	}
	// The spill area is DuckDB's, for the runner's jobs: a program on an image has /scratch.
	lim := limits(l.cfg)
	lim.SpillBytes = 0
	spec := sandbox.Spec{ID: id, Image: image, Args: args, Env: env, Mounts: mounts, Limits: lim}
	if err := stored(ctx); err != nil {
		return nil, err
	}
	res, err := l.rt.Run(ctx, spec, io.Discard)
	l.started(ctx, res)
	return res, err
}

// RunSpec runs a job of one of the runner's own kinds (he-score, model) with spec as its
// Spec, and decodes the runner's JSON answer into res; a refusal the runner wrote into
// *refusal (safe for the vendor) becomes the job's Failure.
func (l *Launcher) RunSpec(ctx context.Context, id string, ejob engine.Job, spec, res any, refusal *string) (sandbox.Usage, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return sandbox.Usage{}, err
	}
	ejob.Spec = raw
	var out strings.Builder
	u, err := l.Run(ctx, id, ejob, &out)
	if err != nil {
		return u, err
	}
	if err := json.Unmarshal([]byte(out.String()), res); err != nil {
		return u, FailOnData(ClassData, "the runner returned no readable result", err)
	}
	if *refusal != "" {
		// The runner refused what it found in the data (or the inputs on it).
		return u, FailOnData(ClassData, *refusal, nil)
	}
	return u, nil
}

// fitSpill is the spill area (MB) each of n sandboxes at once can have on a disk with free
// bytes free, at most want: a spill area reserves its whole size (sandbox.Runtime refuses a
// sandbox whose area the disk could not hold), so areas larger than the disk allows would
// make every job that needs a sandbox fail. Half the free space is left to the store, the
// uploads and the logs; under 64 MB an area is not worth making (0: jobs cannot spill).
func fitSpill(free int64, want, n int) int {
	if n < 1 {
		n = 1
	}
	mb := int(free / 2 / int64(n) >> 20)
	if mb >= want {
		return want
	}
	if mb < 64 {
		return 0
	}
	return mb
}
