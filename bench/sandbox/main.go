// Command sandbox measures what a Veil sandbox costs: create → run → destroy
// of a trivial job in a libcontainer sandbox, against the same job as a plain
// child process (sandbox.RunLocal) and against Debian's runc CLI running
// /bin/true from an equivalent bundle; the same job handed to a sandbox
// prepared ahead (sandbox.Pool); and, with -parquet, the runner in a pooled
// sandbox opening DuckDB before its job arrives (engine.RunnerMain) against
// opening it after (as the daemon's runner does until it calls
// engine.OpenRunner first). It prints one JSON object:
//
//	sandbox_overhead_p50_ms, sandbox_overhead_p95_ms  sandbox pXX − local pXX
//	sandbox_{prepare,start,run,teardown}_p50_ms       where a fresh sandbox's time goes
//	pool_overhead_p50_ms, pool_overhead_p95_ms        pooled sandbox pXX − local pXX
//	runc_cli_p50_ms                                    `runc run` of /bin/true
//	sandbox_concurrent20_ok                            20 concurrent jobs all ok
//	runner_preopen_p50_ms, runner_late_open_p50_ms     pooled runner, DuckDB opened before / after the job
//
// It must run as root. The binary is its own container init and its own
// trivial jobs ("true"; "wait-true" reads its stdin first, as a pooled job
// must) and runner ("runner", "runner-late").
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/sandbox"
)

func main() {
	sandbox.Init()
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "true":
			os.Exit(0) // the trivial job
		case "wait-true":
			io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		case "runner", "runner-late":
			os.Exit(runner(os.Args[1] == "runner"))
		}
	}
	n := flag.Int("n", 100, "runs per measurement")
	runcBin := flag.String("runc", "runc", "runc CLI to compare with (empty: skip)")
	parquet := flag.String("parquet", "", "a Parquet file for the runner figures (empty: skip)")
	query := flag.String("query", "", "the runner figures' query over the view t of -parquet (default: COUNT(*) of t)")
	flag.Parse()
	if err := run(*n, *runcBin, *parquet, *query); err != nil {
		fmt.Fprintln(os.Stderr, "bench/sandbox:", err)
		os.Exit(1)
	}
}

type figures struct {
	Runs                  int     `json:"runs"`
	SandboxP50            float64 `json:"sandbox_p50_ms"`
	SandboxP95            float64 `json:"sandbox_p95_ms"`
	LocalP50              float64 `json:"local_p50_ms"`
	LocalP95              float64 `json:"local_p95_ms"`
	OverheadP50           float64 `json:"sandbox_overhead_p50_ms"`
	OverheadP95           float64 `json:"sandbox_overhead_p95_ms"`
	RuncP50               float64 `json:"runc_cli_p50_ms"`
	RuncP95               float64 `json:"runc_cli_p95_ms"`
	Concurrent20OK        bool    `json:"sandbox_concurrent20_ok"`
	Concurrent20WallMS    float64 `json:"sandbox_concurrent20_wall_ms"`
	UserNamespace         bool    `json:"sandbox_user_namespace"`
	RuncError             string  `json:"runc_cli_error,omitempty"`
	SandboxUnavailableWhy string  `json:"sandbox_unavailable,omitempty"`
	PrepareP50            float64 `json:"sandbox_prepare_p50_ms"`
	StartP50              float64 `json:"sandbox_start_p50_ms"`
	RunP50                float64 `json:"sandbox_run_p50_ms"`
	TeardownP50           float64 `json:"sandbox_teardown_p50_ms"`
	PoolP50               float64 `json:"pool_p50_ms"`
	PoolP95               float64 `json:"pool_p95_ms"`
	PoolOverheadP50       float64 `json:"pool_overhead_p50_ms"`
	PoolOverheadP95       float64 `json:"pool_overhead_p95_ms"`
	PoolHandoffP50        float64 `json:"pool_handoff_p50_ms"`
	RunnerPreopenP50      float64 `json:"runner_preopen_p50_ms,omitempty"`
	RunnerLateOpenP50     float64 `json:"runner_late_open_p50_ms,omitempty"`
	RunnerRuns            int     `json:"runner_runs,omitempty"`
}

func run(n int, runcBin, parquet, query string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	exe, _ = filepath.EvalSymlinks(exe)
	// The state dir must not lie under the binary's directory: libcontainer
	// then cannot seal the binary with an overlay and copies it per start.
	base := "/var/tmp"
	if strings.HasPrefix(filepath.Dir(exe)+"/", base+"/") {
		base = "/tmp"
	}
	state, err := os.MkdirTemp(base, "veil-bench-sandbox-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	if err := os.Chmod(state, 0o711); err != nil { // container root must traverse it
		return err
	}
	var f figures
	f.Runs = n
	ctx := context.Background()

	local := func(i int) error {
		res, err := sandbox.RunLocal(ctx, sandbox.Spec{Args: []string{exe, "true"}}, io.Discard)
		return check(res, err)
	}
	lp, err := measure(n, local)
	if err != nil {
		return fmt.Errorf("local: %w", err)
	}
	f.LocalP50, f.LocalP95 = lp.pct(50), lp.pct(95)

	r, err := sandbox.New(filepath.Join(state, "sandbox"), sandbox.WithCgroupParent("/veil-bench"))
	if err != nil {
		f.SandboxUnavailableWhy = err.Error()
	} else {
		f.UserNamespace = r.UserNamespace()
		seq := 0
		var prep, startT, runT, tear samples
		job := func(i int) error {
			seq++
			res, err := r.Run(ctx, sandbox.Spec{ID: fmt.Sprintf("bench-%d-%d", os.Getpid(), seq), Args: []string{"/veil", "true"}}, io.Discard)
			if err == nil {
				prep, startT = append(prep, res.Timing.Prepare), append(startT, res.Timing.Start)
				runT, tear = append(runT, res.Timing.Run), append(tear, res.Timing.Teardown)
			}
			return check(res, err)
		}
		sp, err := measure(n, job)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		f.SandboxP50, f.SandboxP95 = sp.pct(50), sp.pct(95)
		f.OverheadP50 = round(f.SandboxP50 - f.LocalP50)
		f.OverheadP95 = round(f.SandboxP95 - f.LocalP95)
		f.PrepareP50, f.StartP50, f.RunP50, f.TeardownP50 = prep.pct(50), startT.pct(50), runT.pct(50), tear.pct(50)

		// The same trivial job handed to a sandbox prepared ahead. The pool refills after
		// each job; the wait for it is not timed (a daemon between two jobs).
		pool, err := r.NewPool(sandbox.Template{Args: []string{"/veil", "wait-true"}}, 2)
		if err != nil {
			return err
		}
		var handoff samples
		pp, err := measureTimed(n, func() (time.Duration, error) {
			waitReady(pool, 2)
			seq++
			t := time.Now()
			res, err := pool.Run(ctx, sandbox.Spec{ID: fmt.Sprintf("bench-%d-%d", os.Getpid(), seq)}, io.Discard)
			d := time.Since(t)
			if err == nil {
				handoff = append(handoff, res.Timing.Handoff)
			}
			return d, check(res, err)
		})
		if cerr := pool.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("pool: %w", err)
		}
		f.PoolP50, f.PoolP95 = pp.pct(50), pp.pct(95)
		f.PoolOverheadP50, f.PoolOverheadP95 = round(f.PoolP50-f.LocalP50), round(f.PoolP95-f.LocalP95)
		f.PoolHandoffP50 = handoff.pct(50)

		if parquet != "" {
			if err := runnerFigures(ctx, r, &f, parquet, query, min(n, 21)); err != nil {
				return fmt.Errorf("runner: %w", err)
			}
		}

		start := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := true
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				res, err := r.Run(ctx, sandbox.Spec{ID: fmt.Sprintf("bench-%d-c%d", os.Getpid(), i), Args: []string{"/veil", "true"}}, io.Discard)
				if check(res, err) != nil {
					mu.Lock()
					ok = false
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		f.Concurrent20OK = ok
		f.Concurrent20WallMS = ms(time.Since(start))
		if _, err := r.Cleanup(ctx); err != nil {
			return err
		}
	}

	if runcBin != "" {
		if rp, err := measureRunc(n, runcBin, filepath.Join(state, "runc")); err != nil {
			f.RuncError = err.Error()
		} else {
			f.RuncP50, f.RuncP95 = rp.pct(50), rp.pct(95)
		}
	}
	out, _ := json.MarshalIndent(f, "", "  ")
	fmt.Println(string(out))
	return nil
}

func check(res *sandbox.Result, err error) error {
	if err != nil {
		return err
	}
	if res.Status != sandbox.StatusOK {
		return fmt.Errorf("status %s: %s", res.Status, res.Stderr)
	}
	return nil
}

type samples []time.Duration

func (s samples) pct(p int) float64 {
	if len(s) == 0 {
		return 0
	}
	c := append(samples(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	i := (len(c)*p + 99) / 100
	if i > 0 {
		i--
	}
	return ms(c[i])
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }

func round(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

// measure runs f n times after a short warm-up and returns the wall times.
func measure(n int, f func(int) error) (samples, error) {
	for i := 0; i < 5; i++ {
		if err := f(i); err != nil {
			return nil, err
		}
	}
	out := make(samples, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := f(i); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}

// measureRunc times `runc run` (create, start, wait, delete) of /bin/true in
// a bundle like the sandbox's: read-only root holding only the binary and
// its libraries, fresh mount, pid, ipc, uts, net and cgroup namespaces.
func measureRunc(n int, runcBin, dir string) (samples, error) {
	if _, err := exec.LookPath(runcBin); err != nil {
		return nil, err
	}
	bundle := filepath.Join(dir, "bundle")
	root := filepath.Join(bundle, "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	files, err := withLibraries("/bin/true")
	if err != nil {
		return nil, err
	}
	for _, src := range files {
		dst := filepath.Join(root, src)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := exec.Command("cp", "-L", src, dst).Run(); err != nil {
			return nil, fmt.Errorf("copy %s: %w", src, err)
		}
	}
	for _, d := range []string{"proc", "dev", "sys", "tmp"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	spec := exec.Command(runcBin, "spec")
	spec.Dir = bundle
	if out, err := spec.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("runc spec: %v: %s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	var cfg map[string]any
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, err
	}
	proc := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/true"}
	cfg["root"] = map[string]any{"path": "rootfs", "readonly": true}
	linux := cfg["linux"].(map[string]any)
	linux["namespaces"] = []map[string]string{
		{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
		{"type": "mount"}, {"type": "cgroup"},
	}
	if b, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "state")
	seq := 0
	one := func(int) error {
		seq++
		cmd := exec.Command(runcBin, "--root", state, "run", "--bundle", bundle, fmt.Sprintf("veil-bench-runc-%d-%d", os.Getpid(), seq))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("runc run: %v: %s", err, stderr.String())
		}
		return nil
	}
	return measure(n, one)
}

// withLibraries returns path and the shared libraries ldd says it needs.
func withLibraries(path string) ([]string, error) {
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", path, err)
	}
	files := []string{path}
	for _, line := range strings.Split(string(out), "\n") {
		for _, field := range strings.Fields(line) {
			if strings.HasPrefix(field, "/") {
				files = append(files, field)
			}
		}
	}
	return files, nil
}

// measureTimed is measure for functions that time themselves (leaving out what they wait
// for before the part that counts).
func measureTimed(n int, f func() (time.Duration, error)) (samples, error) {
	for i := 0; i < 5; i++ {
		if _, err := f(); err != nil {
			return nil, err
		}
	}
	out := make(samples, 0, n)
	for i := 0; i < n; i++ {
		d, err := f()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// waitReady waits (up to 30 s) until the pool has n sandboxes ready.
func waitReady(p *sandbox.Pool, n int) {
	for deadline := time.Now().Add(30 * time.Second); p.Ready() < n && time.Now().Before(deadline); {
		time.Sleep(2 * time.Millisecond)
	}
}

// runner is the job side of the runner figures: engine.RunnerMain, which opens DuckDB
// before it reads its job, or (late) reading the job first and then opening DuckDB, as the
// daemon's runner does today.
func runner(preopen bool) int {
	result := os.NewFile(3, "result")
	ctx := context.Background()
	var err error
	if preopen {
		err = engine.RunnerMain(ctx, os.Stdin, result)
	} else {
		var j *engine.Job
		if j, err = engine.ReadJob(os.Stdin); err == nil {
			err = engine.Run(ctx, j, result)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// runnerFigures times the runner in a pooled sandbox on parquet, with DuckDB opened before
// and after the job arrives, interleaved.
func runnerFigures(ctx context.Context, r *sandbox.Runtime, f *figures, parquet, query string, n int) error {
	abs, err := filepath.Abs(parquet)
	if err != nil {
		return err
	}
	if query == "" {
		query = "SELECT COUNT(*) FROM t"
	}
	cols, err := parquetColumns(ctx, abs)
	if err != nil {
		return err
	}
	job := engine.Job{SQL: query, Threads: 2, MemoryLimitMB: 1536, MaxResultBytes: 64 << 20,
		Tables: []engine.Table{{Name: "t", Files: []string{"/data/t/" + filepath.Base(abs)}, Columns: cols}}}
	in, err := json.Marshal(job)
	if err != nil {
		return err
	}
	l := sandbox.Limits{MemoryBytes: 2 << 30, CPUs: 2}
	pools := map[bool]*sandbox.Pool{}
	for _, pre := range []bool{true, false} {
		name := "runner-late"
		if pre {
			name = "runner"
		}
		p, err := r.NewPool(sandbox.Template{Args: []string{"/veil", name}, Limits: l}, 1)
		if err != nil {
			return err
		}
		defer p.Close()
		pools[pre] = p
	}
	times := map[bool]samples{}
	seq := 0
	for i := 0; i <= n; i++ {
		for _, pre := range []bool{true, false} {
			for _, p := range pools {
				waitReady(p, 1)
			}
			seq++
			t := time.Now()
			res, err := pools[pre].Run(ctx, sandbox.Spec{ID: fmt.Sprintf("bench-%d-r%d", os.Getpid(), seq), Stdin: in,
				Mounts: []sandbox.Mount{{Source: abs, Destination: job.Tables[0].Files[0]}}}, io.Discard)
			d := time.Since(t)
			if err := check(res, err); err != nil {
				return err
			}
			if i > 0 {
				times[pre] = append(times[pre], d)
			}
		}
	}
	f.RunnerPreopenP50, f.RunnerLateOpenP50, f.RunnerRuns = times[true].pct(50), times[false].pct(50), n
	return nil
}

// parquetColumns lists the columns of a Parquet file.
func parquetColumns(ctx context.Context, file string) ([]engine.Column, error) {
	info, err := engine.Inspect(ctx, []string{file})
	if err != nil {
		return nil, err
	}
	var cols []engine.Column
	for _, c := range info.Columns {
		cols = append(cols, engine.Column{Name: c.Name, Type: c.Type})
	}
	return cols, nil
}
