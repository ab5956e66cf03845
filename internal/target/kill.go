package target

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Kill sends SIGKILL to every process of container c, including
// processes started since it was found: it lists and kills again until no
// process of the container is left (a process forked between listing and
// killing would otherwise keep the container alive; in a shared pid
// namespace orphans go to the pause process, not with the container's
// init). Each process is pinned with a pidfd and its start time checked
// after pinning, so a pid reused by another process is never signalled.
func (f *Finder) Kill(c *Container) error {
	proc := f.proc()
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
func killProcess(proc string, p Process) (bool, error) {
	fd, err := pin(proc, p)
	if err != nil || fd < 0 {
		return false, err
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && err != unix.ESRCH {
		return false, fmt.Errorf("SIGKILL %d: %w", p.PID, err)
	}
	return true, nil
}

// pin returns a pidfd of p, or -1 when p has exited: the pidfd pins
// whatever process has the pid now, so its start time is checked after
// pinning, and a pid reused by another process is never taken for p.
func pin(proc string, p Process) (int, error) {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		if err == unix.ESRCH {
			return -1, nil
		}
		return -1, fmt.Errorf("pidfd_open %d: %w", p.PID, err)
	}
	d, err := openProcDir(proc, p.PID)
	if err != nil {
		unix.Close(fd)
		return -1, nil // exited
	}
	st, err := d.stat()
	d.close()
	if err != nil || st.StartTime != p.StartTime {
		unix.Close(fd)
		return -1, nil
	}
	return fd, nil
}
