package platform

import (
	"context"
	"log/slog"
	"time"
)

// Every runs fn every period until ctx ends, and returns then. An error of fn is logged with
// what (say "sweep expired uploads"), unless ctx has ended: the next period tries again.
func Every(ctx context.Context, period time.Duration, log *slog.Logger, what string, fn func(context.Context) error) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := fn(ctx); err != nil && ctx.Err() == nil && log != nil {
				log.Error(what, "err", err)
			}
		}
	}
}
