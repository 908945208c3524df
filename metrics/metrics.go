package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Unmatched is the route label of a request no route took (a scan of random paths must not
// make a series per path).
const Unmatched = "unmatched"

// Snapshot is what a scrape reads from the store: the state of the platform now.
type Snapshot struct {
	// Jobs counts the jobs that are not final (queued, running, review) by kind and state;
	// final ones are counted as they end (Ran, Decided).
	Jobs []JobCount
	// Queued is the number of jobs waiting for a worker, per tenant.
	Queued map[string]int
	// Review is the number of outputs waiting for review; Oldest has waited longest.
	Review int
	Oldest time.Duration
	// Budgets is each dataset's epsilon: its total, what grants hold of it, what jobs spent.
	Budgets []Budget
	// AuditEntries is the size of the audit log; Checkpointed the size its newest signed
	// checkpoint covers and CheckpointTime the time of the newest entry it covers.
	AuditEntries   int64
	Checkpointed   int64
	CheckpointTime time.Time
}

// Pool is what the daemon's pool of sandboxes prepared ahead has done since it started (a
// pool starts again with each Cleanup: its counts then start from zero, as a counter after
// a restart does).
type Pool struct {
	Ready                                 int
	StartedAhead, StartedOnDemand, Failed int64
}

// JobCount is the number of jobs of one kind in one state.
type JobCount struct {
	Kind, State string
	N           int
}

// Budget is one dataset's epsilon.
type Budget struct {
	Dataset                 string
	Total, Allocated, Spent float64
}

// Registry holds the daemon's metrics.
type Registry struct {
	reg      *prometheus.Registry
	log      *slog.Logger
	snapshot func(context.Context) (Snapshot, error)

	requests     *prometheus.HistogramVec
	queueWait    *prometheus.HistogramVec
	sandboxStart *prometheus.HistogramVec
	jobDuration  *prometheus.HistogramVec
	decisions    *prometheus.CounterVec
	snapErrors   prometheus.Counter
	handler      http.Handler

	poolMu sync.Mutex
	pool   func() (Pool, bool)
}

// snapshotTimeout bounds the store reads of one scrape.
const snapshotTimeout = 10 * time.Second

// New returns the daemon's metrics; snapshot is read on every scrape.
func New(snapshot func(context.Context) (Snapshot, error), log *slog.Logger) *Registry {
	r := &Registry{reg: prometheus.NewRegistry(), log: log, snapshot: snapshot}
	r.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "veil_http_request_duration_seconds",
		Help: "Time to answer an API request, by route pattern and HTTP status (long polls wait up to their ?wait=).",
		// Up to a minute: GET /v1/jobs/{id}?wait= long-polls.
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route", "code"})
	r.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "veil_job_queue_wait_seconds",
		Help:    "Time a job waited from its submission until a worker started it, by tenant.",
		Buckets: prometheus.ExponentialBuckets(0.01, 4, 10), // 10 ms to 44 min
	}, []string{"tenant"})
	r.sandboxStart = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "veil_sandbox_start_seconds",
		Help:    "Time to set up a sandbox and start its process, by job kind (other: a sandbox for no job, e.g. an upload check).",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 10), // 5 ms to 2.6 s
	}, []string{"kind"})
	r.jobDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "veil_job_duration_seconds",
		Help:    "Time a job ran, from its start to its output in review (or its failure), by kind and outcome (review, dev, failed, canceled).",
		Buckets: prometheus.ExponentialBuckets(0.05, 3, 10), // 50 ms to 16 min
	}, []string{"kind", "outcome"})
	r.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "veil_review_decisions_total",
		Help: "Export review decisions, by job kind and the status they left the job in (review: more approvals needed, released, rejected).",
	}, []string{"kind", "status"})
	r.snapErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "veil_metrics_snapshot_errors_total",
		Help: "Scrapes whose read of the store failed (details in the daemon log); their store-based families are missing.",
	})
	// snapErrors is collected by state, after the snapshot it counts: collectors run
	// concurrently, and registered alone it could be read before the failed read it counts.
	r.reg.MustRegister(r.requests, r.queueWait, r.sandboxStart, r.jobDuration, r.decisions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), state{r}, poolState{r})
	r.handler = promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{r.log}, ErrorHandling: promhttp.ContinueOnError})
	return r
}

// SetPool has each scrape read the sandbox pool's counts from f (false: no pool, and no
// pool families).
func (r *Registry) SetPool(f func() (Pool, bool)) {
	r.poolMu.Lock()
	r.pool = f
	r.poolMu.Unlock()
}

// Handler serves the metrics in the Prometheus exposition format.
func (r *Registry) Handler() http.Handler { return r.handler }

// Request counts an answered request under its route pattern (Unmatched when none).
func (r *Registry) Request(route string, code int, took time.Duration) {
	if route == "" {
		route = Unmatched
	}
	r.requests.WithLabelValues(route, strconv.Itoa(code)).Observe(took.Seconds())
}

// Started counts a job of kind that left tenant's queue after waiting waited.
func (r *Registry) Started(tenant, kind string, waited time.Duration) {
	r.queueWait.WithLabelValues(tenant).Observe(waited.Seconds())
}

// Ran counts a job's run that ended with outcome after took.
func (r *Registry) Ran(kind, outcome string, took time.Duration) {
	r.jobDuration.WithLabelValues(kind, outcome).Observe(took.Seconds())
}

// Decided counts a review decision that left a job of kind in status.
func (r *Registry) Decided(kind, status string) { r.decisions.WithLabelValues(kind, status).Inc() }

// SandboxStarted counts a sandbox that started in took for a job of kind ("" when for none).
func (r *Registry) SandboxStarted(kind string, took time.Duration) {
	if kind == "" {
		kind = "other"
	}
	r.sandboxStart.WithLabelValues(kind).Observe(took.Seconds())
}

var (
	descJobs     = prometheus.NewDesc("veil_jobs", "Jobs that are not final, by kind and state (queued, running, review).", []string{"kind", "state"}, nil)
	descQueue    = prometheus.NewDesc("veil_job_queue_depth", "Jobs waiting for a worker, by tenant.", []string{"tenant"}, nil)
	descReview   = prometheus.NewDesc("veil_review_queue_outputs", "Outputs waiting for export review.", nil, nil)
	descOldest   = prometheus.NewDesc("veil_review_queue_oldest_seconds", "How long the oldest output waiting for review has waited (0 when none waits).", nil, nil)
	descEpsTotal = prometheus.NewDesc("veil_budget_epsilon_total", "A dataset's total privacy budget (epsilon).", []string{"dataset"}, nil)
	descEpsAlloc = prometheus.NewDesc("veil_budget_epsilon_allocated", "Epsilon of a dataset held by grants' slices.", []string{"dataset"}, nil)
	descEpsSpent = prometheus.NewDesc("veil_budget_epsilon_spent", "Epsilon of a dataset spent (or reserved) by jobs.", []string{"dataset"}, nil)
	descEpsLeft  = prometheus.NewDesc("veil_budget_epsilon_remaining", "Epsilon of a dataset not yet spent: total minus spent.", []string{"dataset"}, nil)
	descAudit    = prometheus.NewDesc("veil_audit_log_entries", "Entries in the audit log.", nil, nil)
	descCPSize   = prometheus.NewDesc("veil_audit_checkpoint_entries", "Entries the newest signed checkpoint of the audit log covers.", nil, nil)
	descCPTime   = prometheus.NewDesc("veil_audit_last_checkpoint_timestamp_seconds", "Time of the newest entry the newest signed checkpoint covers (Unix seconds; absent for an empty log).", nil, nil)
)

var (
	descPoolReady  = prometheus.NewDesc("veil_sandbox_pool_ready", "Sandboxes prepared ahead and waiting for a job.", nil, nil)
	descPoolStarts = prometheus.NewDesc("veil_sandbox_pool_starts_total", "Sandboxes the pool started, ahead of their job or on demand (none was ready when the job came).", []string{"when"}, nil)
	descPoolFails  = prometheus.NewDesc("veil_sandbox_pool_start_failures_total", "Sandbox starts of the pool that failed (details in the daemon log when a job's own start fails).", nil, nil)
)

// poolState collects the sandbox pool's families at each scrape.
type poolState struct{ r *Registry }

func (s poolState) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPoolReady
	ch <- descPoolStarts
	ch <- descPoolFails
}

func (s poolState) Collect(ch chan<- prometheus.Metric) {
	s.r.poolMu.Lock()
	f := s.r.pool
	s.r.poolMu.Unlock()
	if f == nil {
		return
	}
	p, ok := f()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(descPoolReady, prometheus.GaugeValue, float64(p.Ready))
	ch <- prometheus.MustNewConstMetric(descPoolStarts, prometheus.CounterValue, float64(p.StartedAhead), "ahead")
	ch <- prometheus.MustNewConstMetric(descPoolStarts, prometheus.CounterValue, float64(p.StartedOnDemand), "on_demand")
	ch <- prometheus.MustNewConstMetric(descPoolFails, prometheus.CounterValue, float64(p.Failed))
}

// state collects the families read from the store at each scrape.
type state struct{ r *Registry }

func (s state) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.r.snapErrors.Desc()
	for _, d := range []*prometheus.Desc{descJobs, descQueue, descReview, descOldest, descEpsTotal, descEpsAlloc, descEpsSpent, descEpsLeft, descAudit, descCPSize, descCPTime} {
		ch <- d
	}
}

func (s state) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	snap, err := s.r.snapshot(ctx)
	if err != nil {
		s.r.snapErrors.Inc()
		s.r.log.Error("metrics: read the platform's state", "err", err)
	}
	ch <- s.r.snapErrors
	if err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, j := range snap.Jobs {
		gauge(descJobs, float64(j.N), j.Kind, j.State)
	}
	for t, n := range snap.Queued {
		gauge(descQueue, float64(n), t)
	}
	gauge(descReview, float64(snap.Review))
	gauge(descOldest, snap.Oldest.Seconds())
	for _, b := range snap.Budgets {
		gauge(descEpsTotal, b.Total, b.Dataset)
		gauge(descEpsAlloc, b.Allocated, b.Dataset)
		gauge(descEpsSpent, b.Spent, b.Dataset)
		gauge(descEpsLeft, b.Total-b.Spent, b.Dataset)
	}
	gauge(descAudit, float64(snap.AuditEntries))
	gauge(descCPSize, float64(snap.Checkpointed))
	if !snap.CheckpointTime.IsZero() {
		gauge(descCPTime, float64(snap.CheckpointTime.UnixNano())/1e9)
	}
}

// slogPrinter is promhttp's error log on the daemon's logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("metrics: serve a scrape", "err", v) }
