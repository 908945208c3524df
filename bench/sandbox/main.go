// Command sandbox measures what a Veil sandbox costs: create → run → destroy
// of a trivial job in a libcontainer sandbox, against the same job as a plain
// child process (sandbox.RunLocal) and against Debian's runc CLI running
// /bin/true from an equivalent bundle. It prints one JSON object:
//
//	sandbox_overhead_p50_ms, sandbox_overhead_p95_ms  sandbox pXX − local pXX
//	runc_cli_p50_ms                                    `runc run` of /bin/true
//	sandbox_concurrent20_ok                            20 concurrent jobs all ok
//
// It must run as root. The binary is its own container init and its own
// trivial job ("true").
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

	"github.com/veil-dp/veil/sandbox"
)

func main() {
	sandbox.Init()
	if len(os.Args) > 1 && os.Args[1] == "true" {
		os.Exit(0) // the trivial job
	}
	n := flag.Int("n", 100, "runs per measurement")
	runcBin := flag.String("runc", "runc", "runc CLI to compare with (empty: skip)")
	flag.Parse()
	if err := run(*n, *runcBin); err != nil {
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
}

func run(n int, runcBin string) error {
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
		job := func(i int) error {
			seq++
			res, err := r.Run(ctx, sandbox.Spec{ID: fmt.Sprintf("bench-%d-%d", os.Getpid(), seq), Args: []string{"/veil", "true"}}, io.Discard)
			return check(res, err)
		}
		sp, err := measure(n, job)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		f.SandboxP50, f.SandboxP95 = sp.pct(50), sp.pct(95)
		f.OverheadP50 = round(f.SandboxP50 - f.LocalP50)
		f.OverheadP95 = round(f.SandboxP95 - f.LocalP95)

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
