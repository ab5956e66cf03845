package target

import (
	"context"
	"time"

	"golang.org/x/sys/unix"
)

// Recheck is how often Follow lists /proc while the followed container's
// main process is alive: its exit is noticed at once through a pidfd, so
// the listing is only a safety net (and keeps the process list fresh).
// Listing /proc costs about a millisecond of CPU in a small pod; polling it
// every DefaultInterval would keep an idle sidecar above a millicore.
const Recheck = 10 * time.Second

// pollSlice bounds one poll(2) on the pidfd so a cancelled context is seen
// within it: one wake-up per slice costs microseconds.
const pollSlice = time.Second

// waitExit waits until the main process of c exits, ctx ends, or recheck
// passed, whichever comes first. It returns false when it cannot watch the
// process (no pidfd support, or the pid no longer names that process), so
// the caller falls back to polling.
func (f *Finder) waitExit(ctx context.Context, c *Container, recheck time.Duration) bool {
	fd, err := pin(f.proc(), c.Main())
	if err != nil || fd < 0 {
		return false
	}
	defer unix.Close(fd)
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
