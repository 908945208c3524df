package bench

import (
	"context"
	"io"
	"os"
	"testing"
)

// TestServe: the benchmarks' one way of starting a daemon (serve, behind newDaemon and the
// load benchmark's daemon) answers on its socket with the operator's token and leaves nothing
// of its state behind once stopped.
func TestServe(t *testing.T) {
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{o: Options{Dir: t.TempDir(), Isolation: "process", Binary: bin, Log: io.Discard}}
	ld, err := startLoadDaemon(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	if me, err := ld.op.Whoami(context.Background()); err != nil || me.Role != "operator" {
		t.Errorf("whoami: %+v %v", me, err)
	}
	if ld.workers < 1 {
		t.Errorf("workers %d", ld.workers)
	}
	if err := ld.stop(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(e.o.Dir); len(left) != 0 {
		t.Errorf("state left behind: %v", left)
	}
}
