// Command podfim is the file integrity monitor. All of its behaviour lives in
// internal/cli; main only wires the process to it: signals, standard streams
// and the exit status.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/podfim/podfim/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
