package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/sandbox"
	"golang.org/x/sys/unix"
)

// splitQuery is the dp suite's query on one row per person.
const splitQuery = "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM bench_split GROUP BY grp"

// benchDPSplit takes the dp job on one row per person (dp_onerow_e2e_vs_raw_ratio) apart,
// step by step, interleaved round by round: raw DuckDB; the direct plan's SQL on a warm
// database; the runner's code in this process (a fresh DuckDB); the runner in a sandbox
// prepared ahead as the daemon starts it (its preset threads and memory, its limits and
// spill area), once with every pool full and idle ("settled") and once right after the
// previous job, while the pool replaces the sandbox that job used ("back to back", as the
// dp suite's jobs run); and the job end to end through the daemon, settled and back to
// back. CPU time is measured beside the wall time (this process's for the in-process
// steps, the sandbox's cgroup for the sandboxed ones). Then what replacing one sandbox
// costs: the CPU of preparing it (inside its cgroups) and this process's own.
func benchDPSplit(ctx context.Context, e *env) error {
	file, err := e.table(ctx, "bench_persons")
	if err != nil {
		return err
	}
	// The daemon's runner and limits (newDaemon: 4 GiB, 2 threads; launch.limits).
	cfg := daemon.Defaults("")
	cfg.JobThreads, cfg.JobMemoryMB = 2, 4096
	memMB := cfg.DuckDBMemoryMB()
	lim := sandbox.Limits{MemoryBytes: int64(cfg.JobMemoryMB) << 20, Pids: cfg.JobPids, CPUs: float64(cfg.JobThreads), Wall: cfg.JobWall,
		ScratchBytes: int64(cfg.ScratchMB) << 20, ResultBytes: cfg.MaxResultByte, OutputBytes: 64 << 10, SpillBytes: int64(cfg.JobSpillMB) << 20}
	// First what replacing a sandbox costs, before this suite starts anything else in
	// this process.
	if err := splitPrepare(ctx, e, lim, engine.Job{Threads: cfg.JobThreads, MemoryLimitMB: memMB, MaxResultBytes: cfg.MaxResultByte}, file, cfg.JobSpillMB); err != nil {
		return err
	}
	d, err := e.daemon(ctx)
	if err != nil {
		return err
	}
	sb, err := e.sandboxes()
	if err != nil {
		return err
	}
	// A dataset of its own on the same file, with the budget for the many runs.
	sch, err := os.ReadFile(filepath.Join(e.data, "bench_persons.yaml"))
	if err != nil {
		return err
	}
	schema := strings.Replace(string(sch), "name: bench_persons", "name: bench_split", 1)
	schema = strings.Replace(schema, "budget: {epsilon: 10, delta: 1.0e-6}", "budget: {epsilon: 100, delta: 1.0e-4}", 1)
	if !d.registered["bench_split"] {
		if _, err := d.clients.prov.RegisterDataset(ctx, api.RegisterDataset{Schema: schema, Files: []string{file}}); err != nil {
			return fmt.Errorf("register bench_split: %w", err)
		}
		d.registered["bench_split"] = true
	}
	v, err := engine.NewValidator()
	if err != nil {
		return err
	}
	defer v.Close()
	t := engine.Table{Name: "bench_split", Files: []string{file}, MaxRowsPerUnit: 1, UnitComplete: true, Unit: "person", Columns: []engine.Column{
		{Name: "person_id", Type: "BIGINT", PrivacyUnit: true}, {Name: "grp", Type: "VARCHAR"}, {Name: "value", Type: "DOUBLE", Bounds: []float64{0, 1000}}}}
	plan, err := v.ValidateDP(ctx, splitQuery, engine.Scope{Mode: "dp", Tables: []engine.Table{t}}, engine.DPOptions{Epsilon: 1, Delta: 1e-8, MaxGroups: 1, MaxRows: 10})
	if err != nil {
		return err
	}
	raw, err := openRaw("SET VARIABLE veil_secret = 12345::BIGINT", fmt.Sprintf("CREATE VIEW bench_split AS SELECT person_id, grp, value FROM read_parquet('%s')", file))
	if err != nil {
		return err
	}
	defer raw.close()
	job := engine.Job{SQL: plan.DP.DirectSQL, Tables: []engine.Table{t}, Threads: cfg.JobThreads, MemoryLimitMB: memMB, MaxResultBytes: cfg.MaxResultByte, Secret: 12345, DPStateBytes: plan.DP.StateBytes()}
	pool, err := sb.rt.NewPool(sandbox.Template{Args: []string{"/veil", "runner", fmt.Sprintf("--threads=%d", cfg.JobThreads), fmt.Sprintf("--memory-mb=%d", memMB)}, Limits: lim}, poolSize)
	if err != nil {
		return err
	}
	defer pool.Close()
	settle := func() {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if pool.Ready() == poolSize && d.srv.SandboxesReady() >= poolSize {
				break
			}
		}
		time.Sleep(200 * time.Millisecond) // the used sandbox's teardown, in the background
	}
	cpu := samples{}
	self := func() time.Duration {
		var r unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_SELF, &r)
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	inProc := func(name string, f func() (time.Duration, error)) step {
		return step{name, func() (time.Duration, error) {
			c0 := self()
			took, err := f()
			cpu[name] = append(cpu[name], self()-c0)
			return took, err
		}}
	}
	seq := 0
	pooled := func(name string) step {
		return step{name, func() (time.Duration, error) {
			j, mounts := inSandbox(job)
			if lim.SpillBytes > 0 {
				j.TempDir, j.TempMaxMB = sandbox.SpillPath, cfg.JobSpillMB*9/10
			}
			in, err := json.Marshal(j)
			if err != nil {
				return 0, err
			}
			seq++
			var out bytes.Buffer
			start := time.Now()
			res, err := pool.Run(ctx, sandbox.Spec{ID: fmt.Sprintf("split-%d-%d", os.Getpid(), seq), Stdin: in, Mounts: mounts}, &out)
			took := time.Since(start)
			if err == nil && res.Status != sandbox.StatusOK {
				err = fmt.Errorf("runner in a sandbox: %s: %s", res.Status, tail(res.Stderr, 300))
			}
			if err == nil {
				cpu[name] = append(cpu[name], res.Usage.CPU)
			}
			return took, err
		}}
	}
	var gid string
	jobs := 0
	parts := samples{}
	e2e := func(name string) step {
		return step{name, func() (time.Duration, error) {
			if jobs%8 == 0 { // a grant's ε=10 pays for 10 runs of ε=1
				if gid, err = d.grant(ctx, api.ApplyGrant{Scenario: fmt.Sprintf("bench dp split %d", jobs), Purpose: "benchmark", Modes: []string{"dp"}, Epsilon: 10, Delta: 1e-7, MaxQuery: 1, ValidFor: "1d",
					Datasets: []api.DatasetAccess{{Name: "bench_split", Columns: []string{"grp", "value"}}}}); err != nil {
					return 0, err
				}
			}
			jobs++
			took, j, err := d.job(ctx, dpSubmit(gid, splitQuery))
			if err == nil && j.Metering != nil {
				m := time.Duration(j.Metering.WallMS) * time.Millisecond
				cpu[name] = append(cpu[name], time.Duration(j.Metering.CPUMS)*time.Millisecond)
				parts[name+"_metered"] = append(parts[name+"_metered"], m)
				parts[name+"_daemon"] = append(parts[name+"_daemon"], took-m)
			}
			return took, err
		}}
	}
	settled := func(s step) step {
		return step{s.name, func() (time.Duration, error) { settle(); return s.run() }}
	}
	e.logf("dp on one row per person taken apart: raw / plan / runner in process / pooled sandbox / end to end, settled and back to back, interleaved...")
	s, err := interleave(e.o.Reps, nil,
		settled(inProc("raw", func() (time.Duration, error) {
			return raw.time(ctx, "SELECT grp, COUNT(*), SUM(value) FROM read_parquet('"+file+"') GROUP BY grp")
		})),
		settled(inProc("plan", func() (time.Duration, error) { return raw.time(ctx, plan.DP.DirectSQL) })),
		settled(inProc("inproc", func() (time.Duration, error) {
			start := time.Now()
			err := engine.Run(ctx, &job, io.Discard)
			return time.Since(start), err
		})),
		settled(pooled("pool")),
		pooled("pool_b2b"),
		settled(e2e("e2e")),
		e2e("e2e_b2b"),
	)
	if err != nil {
		return err
	}
	for _, m := range []samples{cpu, parts} { // the warm-up round's
		for k, v := range m {
			m[k] = v[1:]
		}
	}
	for _, k := range []string{"raw", "plan", "inproc", "pool", "pool_b2b", "e2e", "e2e_b2b"} {
		w := s.med(k)
		e.logf("  %-8s wall %7.1f ms (%.3f× raw, median of per-round ratios)  CPU %7.1f ms", k, ms(w), s.ratio(k, "raw"), ms(median(cpu[k])))
	}
	for _, k := range []string{"e2e", "e2e_b2b"} {
		e.logf("  %-8s of which in the sandbox (metered) %.1f ms, the daemon's part %.1f ms", k, ms(median(parts[k+"_metered"])), ms(median(parts[k+"_daemon"])))
	}
	note := fmt.Sprintf("bench_persons (%d rows, one per person), the dp suite's direct plan; %d rounds interleaved, settled: every pool full and idle before the step.", e.o.Rows, e.o.Reps)
	base := "raw DuckDB plain GROUP BY (COUNT, SUM) on the same table"
	figs := []Figure{
		e.pairedRatio("dp_split_pool_vs_raw_ratio", s, "pool", "raw", base, "The runner in a sandbox prepared ahead, started as the daemon starts it, settled. "+note),
		e.pairedRatio("dp_split_pool_b2b_vs_raw_ratio", s, "pool_b2b", "raw", base, "The same right after the previous job, while the pool replaces its sandbox. "+note),
		e.pairedRatio("dp_split_e2e_vs_raw_ratio", s, "e2e", "raw", base, "The dp job end to end through the daemon, settled. "+note),
		e.pairedRatio("dp_split_e2e_b2b_vs_raw_ratio", s, "e2e_b2b", "raw", base, "The same right after the previous job (as the dp suite runs). "+note),
		e.st.value("dp_split_e2e_daemon_ms", ms(median(parts["e2e_daemon"])), "ms", "end to end minus the job's metered sandbox time, settled: API, validation, store, gate, audit, long poll. "+note),
	}
	return e.add(figs...)
}

// splitPrepare measures what replacing one sandbox of a pool costs, with nothing else of
// the run going on: the CPU inside the runtime's cgroups (the container's init and the
// runner's start with DuckDB opened, at the preparing share) besides the job's own, and
// this process's (libcontainer's side, the root skeleton, the spill area, the teardown),
// before the suite starts anything else in it (a daemon started by an earlier suite of the
// run still counts).
func splitPrepare(ctx context.Context, e *env, lim sandbox.Limits, job engine.Job, file string, spillMB int) error {
	state, err := os.MkdirTemp(e.o.Dir, "split-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	if err := os.Chmod(state, 0o711); err != nil {
		return err
	}
	parent := fmt.Sprintf("/veil-bench-split-%d", os.Getpid())
	rt, err := sandbox.New(filepath.Join(state, "sandbox"), sandbox.WithBinary(e.o.Binary), sandbox.WithCgroupParent(parent))
	if err != nil {
		return err
	}
	defer rt.RemoveCgroupParent()
	p, err := rt.NewPool(sandbox.Template{Args: []string{"/veil", "runner", fmt.Sprintf("--threads=%d", job.Threads), fmt.Sprintf("--memory-mb=%d", job.MemoryLimitMB)}, Limits: lim}, poolSize)
	if err != nil {
		return err
	}
	defer p.Close()
	inCgroups := func() time.Duration {
		if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuacct", parent, "cpuacct.usage")); err == nil {
			n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return time.Duration(n)
		}
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", parent, "cpu.stat"))
		if err != nil {
			return 0
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "usage_usec" {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return time.Duration(n) * time.Microsecond
			}
		}
		return 0
	}
	self := func() time.Duration {
		var r unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_SELF, &r)
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	settle := func() {
		for deadline := time.Now().Add(30 * time.Second); p.Ready() < poolSize && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// An empty job: its own CPU is small and measured apart.
	empty := job
	empty.SQL = "SELECT 1 AS x WHERE false"
	empty.Tables = []engine.Table{{Name: "bench_split", Files: []string{file}, Columns: []engine.Column{{Name: "grp"}}}}
	j, mounts := inSandbox(empty)
	if lim.SpillBytes > 0 {
		j.TempDir, j.TempMaxMB = sandbox.SpillPath, spillMB*9/10
	}
	in, err := json.Marshal(j)
	if err != nil {
		return err
	}
	var prep, daemon []time.Duration
	e.logf("what replacing one sandbox of the pool costs...")
	for i := 0; i <= e.o.Reps*2; i++ {
		settle()
		a0, s0 := inCgroups(), self()
		res, err := p.Run(ctx, sandbox.Spec{ID: fmt.Sprintf("split-prep-%d-%d", os.Getpid(), i), Stdin: in, Mounts: mounts}, io.Discard)
		if err != nil {
			return err
		}
		if res.Status != sandbox.StatusOK {
			return fmt.Errorf("runner in a sandbox: %s: %s", res.Status, tail(res.Stderr, 300))
		}
		settle()
		a1, s1 := inCgroups(), self()
		if i > 0 {
			prep, daemon = append(prep, a1-a0-res.Usage.CPU), append(daemon, s1-s0)
		}
	}
	note := "one sandbox of a pool replaced after an empty job (its own CPU subtracted), with nothing else of the run going on; median of " + strconv.Itoa(len(prep))
	return e.add(
		e.st.value("sandbox_replace_cgroup_cpu_ms", ms(median(prep)), "ms", "CPU inside the new sandbox's cgroups while it is prepared: the container's init, the runner's start and its DuckDB opened, all at the preparing CPU share. "+note),
		e.st.value("sandbox_replace_daemon_cpu_ms", ms(median(daemon)), "ms", "CPU of the daemon's own process for it (at its normal priority): libcontainer's side of the start, the root skeleton, the spill area, the old sandbox's teardown, the hand-over and supervision. "+note),
	)
}
