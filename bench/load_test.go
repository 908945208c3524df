package bench

import (
	"testing"
	"time"
)

// The load's percentiles are nearest-rank: p99 of 24 samples is the largest, p50 the 12th.
func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 24; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 12 * time.Millisecond}, {0.99, 24 * time.Millisecond}, {0, time.Millisecond}, {1, 24 * time.Millisecond}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
	if d[0] != 24*time.Millisecond {
		t.Error("percentile sorted its argument")
	}
}
