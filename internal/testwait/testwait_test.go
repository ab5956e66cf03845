package testwait

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fatalTB records Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls Eventually in a goroutine of its own, so that a Fatalf ends
// only that goroutine, and returns what it reported.
func run(timeout time.Duration, cond func() (bool, string)) (took time.Duration, msg string) {
	f := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		took = Eventually(f, timeout, time.Millisecond, "the thing", cond)
	}()
	<-done
	return took, f.msg
}

func TestEventuallyHolds(t *testing.T) {
	n := 0
	_, msg := run(time.Minute, func() (bool, string) { n++; return n == 3, "" })
	if msg != "" || n != 3 {
		t.Errorf("after %d calls: %q", n, msg)
	}
}

func TestEventuallyTimesOut(t *testing.T) {
	n := 0
	_, msg := run(20*time.Millisecond, func() (bool, string) { n++; return false, fmt.Sprintf("n=%d", n) })
	if !strings.HasPrefix(msg, "timed out after 20ms waiting for the thing; last: n=") || n < 2 {
		t.Errorf("after %d calls: %q", n, msg)
	}
}

func TestTrue(t *testing.T) {
	if ok, state := True(func() bool { return true })(); !ok || state != "" {
		t.Errorf("True = %v, %q", ok, state)
	}
}
