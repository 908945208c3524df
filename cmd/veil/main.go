// Command veil is Veil's command line: the daemon (`veil serve`), the runner it re-executes
// inside each sandbox, and the commands of every role. It holds no business logic: each
// command parses flags, calls the client or a library, and hands the answer to the printer.
// Its exit code says what kind of error ended it (exit.go).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/veil-dp/veil/sandbox"
)

func main() {
	// A container's init is this binary re-executed; it must be handled before anything else.
	sandbox.Init()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
