//go:build linux

package daemon_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/veil-dp/veil/internal/fault"
)

// TestStorageFailureStopsWrites injects an I/O error into every fsync (or every pwrite, how
// SQLite writes) of a running daemon, in a child process: the write that hits it and every
// write after it are refused with 503 unavailable and a message that names no path; reads
// still answer; /readyz says not ready; the daemon log says what failed.
func TestStorageFailureStopsWrites(t *testing.T) {
	if fault.InChild(t.Name()) {
		storageFailureChild(t)
		return
	}
	for _, call := range []string{"fsync", "pwrite"} {
		t.Run(call, func(t *testing.T) {
			out := fault.RunChild(t, "VEIL_FAULT_CALL="+call)
			t.Logf("child:\n%s", out)
			if !strings.Contains(out, "CHILD DONE") {
				t.Fatalf("child:\n%s", out)
			}
		})
	}
}

func storageFailureChild(t *testing.T) {
	e, _ := startOutside(t)
	ctx := context.Background()
	e.principal("before", "reviewer", "")
	calls := fault.Fsync
	if os.Getenv("VEIL_FAULT_CALL") == "pwrite" {
		calls = fault.Pwrite
	}
	if err := fault.Fail(syscall.EIO, -1, calls); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		_, err := e.op.CreatePrincipal(ctx, apiPrincipal(fmt.Sprintf("after %d", i)))
		if kindOf(err) != "unavailable" || strings.Contains(err.Error(), e.cfg.DataDir) {
			t.Fatalf("write %d on a failing disk: %v, want unavailable without a path", i, err)
		}
	}
	if _, err := e.op.Whoami(ctx); err != nil {
		t.Errorf("a read after the failure: %v", err)
	}
	if code, _ := e.raw("/readyz", ""); code != 503 {
		t.Errorf("/readyz answers %d after a storage failure", code)
	}
	if !strings.Contains(e.log.String(), "storage failure") {
		t.Errorf("the daemon log does not say what failed:\n%s", e.log.String())
	}
	fmt.Println("CHILD DONE")
}
