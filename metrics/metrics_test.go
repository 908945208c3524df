package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape serves one scrape of r and parses it as Prometheus does.
func scrape(t *testing.T, r *Registry) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return fams
}

// value finds the sample of family name whose labels include want, or fails.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	t.Fatalf("family %s has no sample with labels %v", name, want)
	return nil
}

func TestExposition(t *testing.T) {
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	snap := Snapshot{
		Jobs:         []JobCount{{Kind: "sql", State: "review", N: 2}, {Kind: "hescore", State: "queued", N: 1}},
		Queued:       map[string]int{"acme": 3},
		Review:       2,
		Oldest:       90 * time.Second,
		Budgets:      []Budget{{Dataset: "residents", Total: 10, Allocated: 4, Spent: 1.5}},
		AuditEntries: 41, Checkpointed: 40, CheckpointTime: at,
	}
	r := New(func(context.Context) (Snapshot, error) { return snap, nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Request("GET /v1/jobs/{id}", 200, 30*time.Millisecond)
	r.Request("", 404, time.Millisecond)
	r.Started("acme", "sql", 2*time.Second)
	r.Ran("sql", "review", 3*time.Second)
	r.SandboxStarted("sql", 20*time.Millisecond)
	r.SandboxStarted("", 20*time.Millisecond)
	r.Decided("sql", "released")
	if _, ok := scrape(t, r)["veil_sandbox_pool_ready"]; ok {
		t.Error("pool families without a pool")
	}
	r.SetPool(func() (Pool, bool) { return Pool{Ready: 2, StartedAhead: 7, StartedOnDemand: 1, Failed: 1}, true })
	fams := scrape(t, r)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"veil_sandbox_pool_starts_total", map[string]string{"when": "ahead"}, 7},
		{"veil_sandbox_pool_starts_total", map[string]string{"when": "on_demand"}, 1},
		{"veil_sandbox_pool_start_failures_total", nil, 1},
	} {
		if got := value(t, fams, c.name, c.labels).Counter.GetValue(); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value(t, fams, "veil_sandbox_pool_ready", nil).Gauge.GetValue(); got != 2 {
		t.Errorf("veil_sandbox_pool_ready = %v, want 2", got)
	}

	if m := value(t, fams, "veil_http_request_duration_seconds", map[string]string{"route": "GET /v1/jobs/{id}", "code": "200"}); m.Histogram.GetSampleCount() != 1 {
		t.Errorf("requests: %v", m)
	}
	value(t, fams, "veil_http_request_duration_seconds", map[string]string{"route": Unmatched, "code": "404"})
	value(t, fams, "veil_job_queue_wait_seconds", map[string]string{"tenant": "acme"})
	value(t, fams, "veil_job_duration_seconds", map[string]string{"kind": "sql", "outcome": "review"})
	value(t, fams, "veil_sandbox_start_seconds", map[string]string{"kind": "sql"})
	value(t, fams, "veil_sandbox_start_seconds", map[string]string{"kind": "other"})
	if m := value(t, fams, "veil_review_decisions_total", map[string]string{"kind": "sql", "status": "released"}); m.Counter.GetValue() != 1 {
		t.Errorf("decisions: %v", m)
	}
	gauges := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"veil_jobs", map[string]string{"kind": "sql", "state": "review"}, 2},
		{"veil_jobs", map[string]string{"kind": "hescore", "state": "queued"}, 1},
		{"veil_job_queue_depth", map[string]string{"tenant": "acme"}, 3},
		{"veil_review_queue_outputs", nil, 2},
		{"veil_review_queue_oldest_seconds", nil, 90},
		{"veil_budget_epsilon_total", map[string]string{"dataset": "residents"}, 10},
		{"veil_budget_epsilon_allocated", map[string]string{"dataset": "residents"}, 4},
		{"veil_budget_epsilon_spent", map[string]string{"dataset": "residents"}, 1.5},
		{"veil_budget_epsilon_remaining", map[string]string{"dataset": "residents"}, 8.5},
		{"veil_audit_log_entries", nil, 41},
		{"veil_audit_checkpoint_entries", nil, 40},
		{"veil_audit_last_checkpoint_timestamp_seconds", nil, float64(at.Unix())},
	}
	for _, g := range gauges {
		if got := value(t, fams, g.name, g.labels).Gauge.GetValue(); got != g.want {
			t.Errorf("%s%v = %v, want %v", g.name, g.labels, got, g.want)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
}

// TestSnapshotFailure: a store that cannot be read costs its families, not the scrape.
func TestSnapshotFailure(t *testing.T) {
	var log strings.Builder
	r := New(func(context.Context) (Snapshot, error) { return Snapshot{}, errors.New("disk on fire") }, slog.New(slog.NewTextHandler(&log, nil)))
	fams := scrape(t, r)
	if _, ok := fams["veil_jobs"]; ok {
		t.Error("veil_jobs exposed without a snapshot")
	}
	if v := value(t, fams, "veil_metrics_snapshot_errors_total", nil).Counter.GetValue(); v != 1 {
		t.Errorf("snapshot errors %v, want 1", v)
	}
	if !strings.Contains(log.String(), "disk on fire") {
		t.Errorf("the failure is not in the log: %s", log.String())
	}
}
