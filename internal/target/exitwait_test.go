package target

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestWaitExit: waitExit returns when the process exits, when ctx ends and
// when recheck passes, each seen by the runtime's poller (no wake-up a
// second); it returns false for a process that is gone.
func TestWaitExit(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	f := &Finder{}
	p, err := f.Process(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	c := &Container{PID: p.PID, Processes: []Process{p}}
	wait := func(what string, ctx context.Context, recheck time.Duration, want bool, act func()) {
		t.Helper()
		done := make(chan bool, 1)
		go func() { done <- f.waitExit(ctx, c, recheck) }()
		act()
		select {
		case got := <-done:
			if got != want {
				t.Errorf("%s: waitExit = %v, want %v", what, got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: waitExit did not return within 10 s", what)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait("ctx ended", ctx, time.Hour, true, cancel)
	wait("recheck passed", context.Background(), 20*time.Millisecond, true, func() {})
	wait("exited", context.Background(), time.Hour, true, func() { cmd.Process.Kill() })
	cmd.Wait()
	wait("gone", context.Background(), time.Hour, false, func() {})
}
