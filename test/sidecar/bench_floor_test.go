//go:build sidecarbench

package sidecar_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pollFloorEnv makes this test binary, started again by idleFloor, the
// floor of execution drift's idle cost: the least any Go program pays to
// look at /proc 20 times a second as the sidecar does (a thread locked in
// nanosleep(2), one pread of /proc/loadavg per wake-up), and nothing else.
// The ratio of the two, measured in the same run, says how much of the
// idle sidecar's CPU is the machine's price of a wake-up (about 130 us on
// the project's VM, context switches of the thread and the runtime's
// sysmon) rather than podfim's work.
const pollFloorEnv = "SIDECARBENCH_POLL_FLOOR"

func init() {
	if os.Getenv(pollFloorEnv) != "" {
		pollFloor()
	}
}

// pollFloor polls until it is killed.
func pollFloor() {
	fd, err := unix.Open("/proc/loadavg", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "poll floor:", err)
		os.Exit(2)
	}
	runtime.LockOSThread()
	var buf [128]byte
	ts := unix.NsecToTimespec((50 * time.Millisecond).Nanoseconds())
	for {
		_, _ = unix.Pread(fd, buf[:], 0)
		_ = unix.Nanosleep(&ts, nil)
	}
}

// idleFloor measures pollFloor for window and returns its CPU in
// millicores (schedstat).
func idleFloor(t *testing.T, window time.Duration) float64 {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), pollFloorEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the poll floor: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	time.Sleep(2 * time.Second) // start-up, as for the sidecar
	u0 := readUsage(t, cmd.Process.Pid)
	time.Sleep(window)
	u1 := readUsage(t, cmd.Process.Pid)
	_, sched := cpuBetween(u0, u1)
	return millicores(sched, u1.at.Sub(u0.at))
}
