package cli

import (
	"bytes"
	"context"
	"os"
	"testing"
)

// TestMain lets a test run podfim as a child process (runChild), so that
// its peak memory is its own: with PODFIM_CLI_TEST_MAIN=1 the test binary
// is podfim, and it writes its VmHWM line to PODFIM_CLI_TEST_HWM. (The
// child's ru_maxrss would not do: exec carries the parent's high-water
// mark over into it.)
func TestMain(m *testing.M) {
	if os.Getenv("PODFIM_CLI_TEST_MAIN") == "1" {
		code := Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
		if out := os.Getenv("PODFIM_CLI_TEST_HWM"); out != "" {
			status, _ := os.ReadFile("/proc/self/status")
			for _, line := range bytes.Split(status, []byte("\n")) {
				if bytes.HasPrefix(line, []byte("VmHWM:")) {
					_ = os.WriteFile(out, line, 0o600)
				}
			}
		}
		os.Exit(code)
	}
	os.Exit(m.Run())
}
