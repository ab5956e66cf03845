package target

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Recheck is how often Follow lists /proc while the followed container's
// main process is alive: its exit is noticed at once through a pidfd, so
// the listing is only a safety net (and keeps the process list fresh).
// Listing /proc costs about a millisecond of CPU in a small pod; polling it
// every DefaultInterval would keep an idle sidecar above a millicore.
const Recheck = 10 * time.Second

// pollSlice bounds one poll(2) on the pidfd, where the runtime cannot
// wait for it (waitExitPolling), so a cancelled context is seen within it.
const pollSlice = time.Second

// waitExit waits until the main process of c exits, ctx ends, or recheck
// passed, whichever comes first. It returns false when it cannot watch the
// process (no pidfd support, or the pid no longer names that process), so
// the caller falls back to polling.
//
// The pidfd is waited for by the runtime's poller (it becomes readable
// when the process exits), with recheck as its deadline and ctx's end
// moving that deadline to now: an idle sidecar wakes for nothing. Before,
// a poll(2) of one second at a time woke it every second, and each
// wake-up also let the runtime's sysmon re-read the CPU limit.
func (f *Finder) waitExit(ctx context.Context, c *Container, recheck time.Duration) bool {
	fd, err := pin(f.proc(), c.Main())
	if err != nil || fd < 0 {
		return false
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return false
	}
	pf := os.NewFile(uintptr(fd), "pidfd")
	defer pf.Close()
	rc, err := pf.SyscallConn()
	if err != nil || pf.SetReadDeadline(time.Now().Add(recheck)) != nil {
		// Not pollable by the runtime (os.ErrNoDeadline).
		return waitExitPolling(ctx, int(pf.Fd()), recheck)
	}
	stop := context.AfterFunc(ctx, func() { pf.SetReadDeadline(time.Now()) })
	defer stop()
	// Read calls exited until it reports true, waiting for readability in
	// between; a deadline (recheck passed, ctx ended) ends it too. Either
	// way the caller lists /proc again or sees ctx's end.
	rc.Read(func(fd uintptr) bool { return exited(int(fd)) })
	return true
}

// exited reports whether the process of a pidfd has exited (or the pidfd
// cannot be polled, which the caller handles as an exit: list /proc).
func exited(fd int) bool {
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
	return n > 0 || (err != nil && err != unix.EINTR)
}

// waitExitPolling is waitExit where the runtime cannot wait for a pidfd:
// poll(2) in slices of pollSlice.
func waitExitPolling(ctx context.Context, fd int, recheck time.Duration) bool {
	deadline := time.Now().Add(recheck)
	for ctx.Err() == nil {
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		ms := int(min(left, pollSlice) / time.Millisecond)
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, max(ms, 1))
		if err != nil && err != unix.EINTR {
			return false
		}
		if n > 0 {
			return true // exited: list /proc now
		}
	}
	return true
}
