// Command release makes and pushes the parts of a podfim release that no
// other tool makes reproducibly (scripts/release.sh runs it; docs/install.md).
//
//	release images -bin DIR -out DIR -version V -revision C -epoch N
//	    the multi-platform podfim and hello images, FROM scratch, as OCI
//	    image layouts DIR/podfim and DIR/hello (one index of linux/amd64 and
//	    linux/arm64 each, named V), from DIR/{podfim,hello}-linux-{amd64,arm64}
//	release chart -epoch N FILE.tgz
//	    rewrite `helm package`'s archive with every time set to N (helm
//	    stamps the time of packaging)
//	release sbom -version V FILE.json
//	    set the CycloneDX SBOM's main component version to V
//	release push -layout DIR -tag V -repo REGISTRY/PATH/NAME [-insecure]
//	    push the layout's index named V by digest, then tag it V; print
//	    the digest
//
// Every output is a function of its inputs: no time, no random, no map order.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "release: %v\n", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: release images|chart|sbom|push [flags] (see the package doc)")

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "images":
		return runImages(args[1:], out)
	case "chart":
		return runChart(args[1:])
	case "sbom":
		return runSBOM(args[1:])
	case "push":
		return runPush(ctx, args[1:], out)
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
}
