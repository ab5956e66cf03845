// Package testwait is how podfim's tests wait: until a condition holds,
// with a deadline, never for a fixed time. A test that sleeps and then
// checks fails when a loaded CI machine is slower than the sleep; one that
// polls until a deadline only gets slower.
package testwait

import (
	"testing"
	"time"
)

// Eventually calls cond every poll until it reports true, and returns how
// long that took. If cond does not hold within timeout, it fails the test
// with what it waited for and cond's last description of the state.
func Eventually(t testing.TB, timeout, poll time.Duration, what string, cond func() (ok bool, state string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, state)
		}
		time.Sleep(poll)
	}
}

// True adapts a condition that has no state to describe.
func True(cond func() bool) func() (bool, string) {
	return func() (bool, string) { return cond(), "" }
}
