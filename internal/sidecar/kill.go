package sidecar

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/target"
)

// killContainer sends SIGKILL to every process of container c as it is now
// (processes started since it was found included). Each process is pinned
// with a pidfd and its start time checked after pinning, so a pid reused by
// another process is never signalled.
func killContainer(f *target.Finder, c *target.Container) error {
	procs := c.Processes
	if cs, err := f.Containers(); err == nil {
		for i := range cs {
			if cs[i].MountNS == c.MountNS && cs[i].ContainerID == c.ContainerID {
				procs = cs[i].Processes
				break
			}
		}
	}
	proc := f.Proc
	if proc == "" {
		proc = "/proc"
	}
	var errs []error
	killed := 0
	for _, p := range procs {
		fd, err := unix.PidfdOpen(p.PID, 0)
		if err != nil {
			if err != unix.ESRCH {
				errs = append(errs, fmt.Errorf("pidfd_open %d: %w", p.PID, err))
			}
			continue
		}
		st, err := startTime(proc, p.PID)
		if err != nil || st != p.StartTime {
			unix.Close(fd)
			continue // exited, and the pid may be someone else's now
		}
		err = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		unix.Close(fd)
		if err != nil && err != unix.ESRCH {
			errs = append(errs, fmt.Errorf("SIGKILL %d: %w", p.PID, err))
			continue
		}
		killed++
	}
	if killed == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no process of the target container was alive"))
	}
	return errors.Join(errs...)
}

// startTime reads field 22 of /proc/PID/stat. The command name (field 2)
// may hold spaces and parentheses, so fields are counted after the last ')'.
func startTime(proc string, pid int) (uint64, error) {
	b, err := os.ReadFile(proc + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat of pid %d", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed stat of pid %d", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}
