package platform

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
	"github.com/veil-dp/veil/store/sqlite"
)

// TestRefusalsFlood: refusals from many principals and sources, from many goroutines, grow
// neither the window's memory nor the log beyond the key bound; every refusal is counted.
func TestRefusalsFlood(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "veil.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key, err := audit.NewKey("veil-test", ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	rec := NewRecorder(audit.NewLog("veil-test", key), nil)
	r := NewRefusals(db, rec, slog.New(slog.NewTextHandler(io.Discard, nil)), 0)
	r.max = 50
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if i%2 == 0 {
					r.Forbidden(policy.Principal{ID: fmt.Sprintf("p-%d", i%40), Role: policy.Vendor, Tenant: "acme"}, "principal.manage")
				} else {
					r.Unauthenticated(fmt.Sprintf("tcp 10.0.%d.%d", g, i), "GET /v1/whoami")
				}
			}
		}()
	}
	wg.Wait()
	if len(r.counts) > r.max {
		t.Fatalf("%d keys kept, bound %d", len(r.counts), r.max)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var total, n int64
	err = db.View(ctx, func(tx store.Tx) error {
		size, err := tx.Size(ctx)
		if err != nil {
			return err
		}
		recs, err := tx.ReadRecords(ctx, 0, size)
		for _, b := range recs {
			e, err := audit.DecodeEntry(b)
			if err != nil {
				return err
			}
			var c int64
			fmt.Sscan(e.Details["count"], &c)
			total += c
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n > int64(r.max)+1 || total != 8*500 {
		t.Fatalf("%d entries (bound %d + 1) counting %d refusals, want %d", n, r.max, total, 8*500)
	}
}
