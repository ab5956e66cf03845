package sidecar

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/target"
)

// killContainer sends SIGKILL to every process of container c, including
// processes started since it was found: it lists and kills again until no
// process of the container is left (a process forked between listing and
// killing would otherwise keep the container alive; in a shared pid
// namespace orphans go to the pause process, not with the container's
// init). Each process is pinned with a pidfd and its start time checked
// after pinning, so a pid reused by another process is never signalled.
func killContainer(f *target.Finder, c *target.Container) error {
	proc := f.Proc
	if proc == "" {
		proc = "/proc"
	}
	var errs []error
	killed := 0
	procs := c.Processes
	for round := 0; round < 10 && len(procs) > 0; round++ {
		for _, p := range procs {
			ok, err := killProcess(proc, p)
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				killed++
			}
		}
		procs = nil
		cs, err := f.Containers()
		if err != nil {
			break
		}
		for i := range cs {
			if cs[i].MountNS == c.MountNS && cs[i].ContainerID == c.ContainerID {
				procs = cs[i].Processes
			}
		}
		if len(procs) > 0 {
			time.Sleep(2 * time.Millisecond) // let SIGKILLed processes be reaped
		}
	}
	if killed == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no process of the target container was alive"))
	}
	return errors.Join(errs...)
}

// killProcess SIGKILLs p unless it has exited (and its pid may be reused).
func killProcess(proc string, p target.Process) (bool, error) {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		if err == unix.ESRCH {
			return false, nil
		}
		return false, fmt.Errorf("pidfd_open %d: %w", p.PID, err)
	}
	defer unix.Close(fd)
	if st, err := startTime(proc, p.PID); err != nil || st != p.StartTime {
		return false, nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && err != unix.ESRCH {
		return false, fmt.Errorf("SIGKILL %d: %w", p.PID, err)
	}
	return true, nil
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
