// Command cluster builds, starts and stops the local single-node Kubernetes
// that podfim's end-to-end tests run against. See docs/cluster.md.
package main

import (
	"os"

	"github.com/podfim/podfim/test/cluster/internal/harness"
)

func main() {
	os.Exit(harness.Main(os.Args[1:], os.Stdout, os.Stderr))
}
