package bench

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/runner"
	"github.com/veil-dp/veil/sandbox"
)

// TestMain lets the test binary be the runner and a container's init, as the veil binary
// is in production (the daemon package's tests do the same).
func TestMain(m *testing.M) {
	sandbox.Init()
	if len(os.Args) > 1 && os.Args[1] == "runner" {
		result := os.NewFile(3, "result")
		if err := runner.Main(context.Background(), os.Stdin, result, engine.Preset{}); err != nil {
			fmt.Fprintln(os.Stderr, "runner:", err)
			os.Exit(runner.ExitCode(err))
		}
		result.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHEBench runs the encrypted scoring figures alone through a real daemon and sandbox
// (RunHE) and prints them; the figures of record come from `make bench`. As root:
//
//	VEIL_BENCH_HE=1 go test -tags duckdb_arrow,seccomp -run TestHEBench -v -timeout 30m ./bench/
//
// VEIL_BENCH_DIR keeps the generated data between runs.
func TestHEBench(t *testing.T) {
	if os.Getenv("VEIL_BENCH_HE") != "1" {
		t.Skip("set VEIL_BENCH_HE=1 to run the encrypted scoring benchmark")
	}
	if os.Geteuid() != 0 {
		t.Skip("the benchmark measures the sandboxed path and needs root")
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("VEIL_BENCH_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	figs, err := RunHE(context.Background(), Options{Dir: dir, Groups: 100, Reps: 3, Binary: bin, Isolation: "container",
		Command: "VEIL_BENCH_HE=1 go test -run TestHEBench ./bench/", Log: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range figs {
		t.Logf("%-32s %10.4g %-14s %s", f.Name, f.Value, f.Unit, f.Note)
	}
}
