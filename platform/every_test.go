package platform

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestEvery: fn runs again and again, its errors are logged with what, and Every returns
// once its context ends.
func TestEvery(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&syncWriter{mu: &mu, w: &buf}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	calls := make(chan struct{}, 100)
	done := make(chan struct{})
	go func() {
		Every(ctx, time.Millisecond, log, "sweep things", func(context.Context) error {
			calls <- struct{}{}
			return errors.New("disk on fire")
		})
		close(done)
	}()
	for range 3 {
		<-calls
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(buf.String(), "sweep things") || !strings.Contains(buf.String(), "disk on fire") {
		t.Errorf("log %q, want what failed and why", buf.String())
	}
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
