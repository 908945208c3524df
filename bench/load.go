package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/testdata"
)

// The load benchmark: loadTenants tenants of loadVendors vendors each, every vendor
// submitting its jobs one after the other (a closed loop), all at once against one daemon.
const (
	loadTenants = 5
	loadVendors = 4 // per tenant
	loadRows    = 200_000
	loadUnits   = 20_000
	loadGroups  = 20
	// loadTimeout bounds the load phase: vendors stop submitting after it.
	loadTimeout = 5 * time.Minute
)

// The mix: a threshold GROUP BY, then a dp GROUP BY (ε=0.4 of the grant's 4), in turn.
const (
	loadThresholdSQL = "SELECT grp, COUNT(*) AS n, AVG(value) AS v FROM load_events GROUP BY grp"
	loadDPSQL        = "SELECT grp, COUNT(*) AS n, SUM(value) AS s FROM load_events GROUP BY grp"
)

// loadDaemon is the load benchmark's own daemon: the platform's default workers and
// admission limits (the run's shared daemon has one worker), on a Unix socket.
type loadDaemon struct {
	socket  string
	op      *client.Client
	workers int
	stop    func() error
}

func startLoadDaemon(ctx context.Context, e *env) (*loadDaemon, error) {
	sv, err := e.serve(ctx, "load-state-", nil)
	if err != nil {
		return nil, err
	}
	return &loadDaemon{socket: sv.socket, op: sv.op, workers: sv.cfg.Workers, stop: sv.stop}, nil
}

func (d *loadDaemon) principal(ctx context.Context, name, role, tenant string) (*client.Client, error) {
	p, err := d.op.CreatePrincipal(ctx, api.CreatePrincipal{Name: name, Role: role, Tenant: tenant})
	if err != nil {
		return nil, fmt.Errorf("principal %s: %w", name, err)
	}
	return client.New(d.socket, p.Token)
}

// loadVendor is one vendor of the load: its client, tenant and two grants.
type loadVendor struct {
	c                 *client.Client
	tenant            string
	threshold, dpGrnt string
}

// submit runs the vendor's i-th job of the mix and returns its submit-to-review time.
func (v *loadVendor) submit(ctx context.Context, i int) (time.Duration, error) {
	req := api.SubmitJob{Grant: v.threshold, SQL: loadThresholdSQL}
	if i%2 == 1 {
		req = dpSubmit(v.dpGrnt, loadDPSQL)
		req.DP.Epsilon = 0.4
	}
	start := time.Now()
	j, err := v.c.SubmitJob(ctx, req)
	if err != nil {
		return 0, err
	}
	if j, err = v.c.Wait(ctx, j.ID, nil); err != nil {
		return 0, err
	}
	if j.Status != "review" {
		return 0, fmt.Errorf("load job ended %s: %s", j.Status, j.Message)
	}
	return time.Since(start), nil
}

// benchLoad: one daemon, loadTenants×loadVendors vendors submitting a mix of threshold and dp
// jobs at once, each vendor one job at a time, a bounded number each (and for at most
// loadTimeout). Throughput, submit-to-review latency overall and per tenant, and the
// daemon's peak memory; the baseline is the same mix by one vendor alone on the same daemon.
func benchLoad(ctx context.Context, e *env) error {
	file := filepath.Join(e.data, "load_events.parquet")
	if _, err := os.Stat(file); err != nil {
		e.logf("generating load_events: %d rows, %d persons, %d groups...", loadRows, loadUnits, loadGroups)
		if err := testdata.GenerateBenchTable(ctx, e.data, "load_events", loadRows, loadUnits, loadGroups); err != nil {
			return fmt.Errorf("generate load_events: %w", err)
		}
	}
	sch, err := os.ReadFile(filepath.Join(e.data, "load_events.yaml"))
	if err != nil {
		return err
	}
	// 21 vendors each hold a dp grant of ε=4: the dataset gives that much to grants.
	const budget = "budget: {epsilon: 10, delta: 1.0e-6}"
	if !strings.Contains(string(sch), budget) {
		return fmt.Errorf("load_events.yaml: no %q line to raise", budget)
	}
	sch = []byte(strings.Replace(string(sch), budget, "budget: {epsilon: 100, delta: 1.0e-5}", 1))
	d, err := startLoadDaemon(ctx, e)
	if err != nil {
		return err
	}
	defer func() {
		if err := d.stop(); err != nil {
			e.logf("load daemon: %v", err)
		}
	}()
	prov, err := d.principal(ctx, "load-provider", "provider", benchProvider)
	if err != nil {
		return err
	}
	auth, err := d.principal(ctx, "load-authority", "authority", "")
	if err != nil {
		return err
	}
	if _, err := prov.RegisterDataset(ctx, api.RegisterDataset{Schema: string(sch), Files: []string{file}}); err != nil {
		return fmt.Errorf("register load_events: %w", err)
	}
	grant := func(c *client.Client, req api.ApplyGrant) (string, error) {
		return approvedGrant(ctx, c, req, d.op, auth, prov)
	}
	access := []api.DatasetAccess{{Name: "load_events", Columns: []string{"grp", "value"}}}
	vendor := func(name, tenant string) (*loadVendor, error) {
		c, err := d.principal(ctx, name, "vendor", tenant)
		if err != nil {
			return nil, err
		}
		v := &loadVendor{c: c, tenant: tenant}
		if v.threshold, err = grant(c, api.ApplyGrant{Scenario: "load " + name, Purpose: "benchmark", Modes: []string{"threshold"}, K: 10, RoundTo: 1, ValidFor: "1d", Datasets: access}); err != nil {
			return nil, err
		}
		if v.dpGrnt, err = grant(c, api.ApplyGrant{Scenario: "load dp " + name, Purpose: "benchmark", Modes: []string{"dp"}, Epsilon: 4, Delta: 1e-7, MaxQuery: 1, ValidFor: "1d", Datasets: access}); err != nil {
			return nil, err
		}
		return v, nil
	}
	// Each dp job spends ε=0.4 of its grant's 4: at most 10 dp jobs a vendor, so 20 jobs.
	perVendor := min(max(2*e.o.Reps, 4), 20)
	e.logf("load: %d vendors of %d tenants, %d jobs each (threshold and dp in turn), daemon workers=%d, isolation=%s...",
		loadTenants*loadVendors, loadTenants, perVendor, d.workers, e.o.Isolation)

	// The baseline: one vendor of a tenant of its own, alone, the same mix (after one job of each).
	solo, err := vendor("load-solo", "solo")
	if err != nil {
		return err
	}
	var idle []time.Duration
	for i := 0; i < 2+min(perVendor, 8); i++ {
		t, err := solo.submit(ctx, i)
		if err != nil {
			return fmt.Errorf("solo vendor: %w", err)
		}
		if i >= 2 {
			idle = append(idle, t)
		}
	}

	var vendors []*loadVendor
	for t := 0; t < loadTenants; t++ {
		for v := 0; v < loadVendors; v++ {
			lv, err := vendor(fmt.Sprintf("load-t%d-v%d", t, v), fmt.Sprintf("load-tenant-%d", t))
			if err != nil {
				return err
			}
			vendors = append(vendors, lv)
		}
	}
	rssBefore := procStatusKB("VmRSS")
	// Reset the process's peak resident set (VmHWM) so that it covers the load only.
	peakReset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil

	type sample struct {
		tenant string
		took   time.Duration
	}
	var (
		mu      sync.Mutex
		samples []sample
		errs    []error
		wg      sync.WaitGroup
	)
	lctx, cancel := context.WithTimeout(ctx, loadTimeout+time.Minute)
	defer cancel()
	start := time.Now()
	for vi, v := range vendors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perVendor && time.Since(start) < loadTimeout; i++ {
				t, err := v.submit(lctx, i+vi) // vendors start at different points of the mix
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				samples = append(samples, sample{v.tenant, t})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	peak := procStatusKB("VmHWM")
	if len(errs) > 0 {
		return fmt.Errorf("%d of the load's vendors stopped on an error, the first: %w", len(errs), errs[0])
	}

	var all []time.Duration
	byTenant := map[string][]time.Duration{}
	for _, s := range samples {
		all = append(all, s.took)
		byTenant[s.tenant] = append(byTenant[s.tenant], s.took)
	}
	var p99s []float64
	var tenantNotes []string
	for t := 0; t < loadTenants; t++ {
		name := fmt.Sprintf("load-tenant-%d", t)
		p := ms(percentile(byTenant[name], 0.99))
		p99s = append(p99s, p)
		tenantNotes = append(tenantNotes, fmt.Sprintf("%.0f", p))
	}
	fair := slices.Max(p99s) / slices.Min(p99s)
	note := fmt.Sprintf("%d vendors of %d tenants (%d each), %d jobs each, threshold and dp GROUP BYs in turn on %d rows (%d persons, %d groups), one daemon on a Unix socket, workers=%d, isolation=%s, default admission limits; each vendor submits its next job when the last reached the review queue",
		len(vendors), loadTenants, loadVendors, perVendor, loadRows, loadUnits, loadGroups, d.workers, e.o.Isolation)
	figs := []Figure{
		e.st.value("load_jobs_per_second", float64(len(samples))/wall.Seconds(), "jobs/s", fmt.Sprintf("%d jobs in %.1f s. %s", len(samples), wall.Seconds(), note)),
		e.st.value("load_p50_submit_to_review_ms", ms(percentile(all, 0.5)), "ms", note),
		e.st.value("load_p99_submit_to_review_ms", ms(percentile(all, 0.99)), "ms", note),
		e.st.ratio("load_p50_vs_idle_ratio", ms(percentile(all, 0.5)), "the same mix by one vendor alone on the same daemon (median)", ms(median(idle)), note),
		e.st.value("load_tenant_fairness_ratio", fair, "ratio", fmt.Sprintf("the largest tenant's p99 submit-to-review time over the smallest's, equal load (tenant p99s %s ms). %s", strings.Join(tenantNotes, ", "), note)),
	}
	if peak > 0 && peakReset {
		figs = append(figs, e.st.value("load_daemon_peak_rss_mb", float64(peak)/1024, "MB",
			fmt.Sprintf("peak resident set of the process that runs the daemon during the load (VmHWM, reset before it; %.0f MB before the load); the bench's clients share the process, the runners are sandboxes of their own. %s", float64(rssBefore)/1024, note)))
	}
	return e.add(figs...)
}

// percentile is the nearest-rank p-quantile of d (0 when d is empty).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// procStatusKB reads a field of /proc/self/status in kB (0 if there is none).
func procStatusKB(field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
