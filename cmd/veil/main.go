// Command veil is Veil's command line: the daemon (`veil serve`), the runner it re-executes
// inside each sandbox, and the commands of every role. It holds no business logic: each
// command parses flags, calls the client or a library, and hands the answer to the printer.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/sandbox"
)

func main() {
	// A container's init is this binary re-executed; it must be handled before anything else.
	sandbox.Init()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ae *client.Error
		if errors.As(err, &ae) {
			fmt.Fprintf(os.Stderr, "veil: %s\n", ae.Msg)
		} else {
			fmt.Fprintf(os.Stderr, "veil: %v\n", err)
		}
		os.Exit(1)
	}
}
