package target

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// errChrooted: a process whose root is not its mount namespace's root.
var errChrooted = errors.New("process is confined to a chroot")

// OpenRoot opens the container's root directory through a live process of
// the container, the main one first. It is the container's root at the time
// of opening, checked against a reused pid, a process that changed mount
// namespace and a process that chroot()ed into a decoy tree. The directory
// stays valid after that process exits, but once the container's last
// process has exited its mount namespace is gone and the mounts on top of
// the root (volumes, tmpfs) with it: a scan then sees the bare root file
// system, and must be checked against Follow's Lost and Restarted.
//
// A path-based API reaches the same directory through
// fmt.Sprintf("/proc/self/fd/%d", f.Fd()) while f is open.
//
// When every process has exited it returns an error satisfying
// errors.Is(err, ErrGone): the container is restarting or gone, and the
// caller asks Find (or waits for Follow) again.
func (c *Container) OpenRoot() (*os.File, error) {
	var chrooted bool
	for _, p := range c.rootCandidates() {
		f, err := openRoot(procOrDefault(c.proc), p)
		switch {
		case err == nil:
			return f, nil
		case errors.Is(err, errChrooted):
			chrooted = true
		case !errors.Is(err, errVanished):
			return nil, err
		}
	}
	if chrooted {
		return nil, fmt.Errorf("container %s: every live process runs in a chroot: %w", c, errChrooted)
	}
	return nil, fmt.Errorf("container %s: %w", c, ErrGone)
}

// Root returns "/proc/<pid>/root" for a live process of the container that
// passes the checks of OpenRoot. The path names whatever process has that pid
// when it is used: prefer OpenRoot, or check the process is still alive after
// opening the path.
func (c *Container) Root() (string, error) {
	f, err := c.OpenRoot()
	if err != nil {
		return "", err
	}
	defer f.Close()
	return f.Name(), nil
}

// openRoot opens the root directory of process p, which must still be the
// process listed (same start time, same mount namespace) and not chrooted.
func openRoot(proc string, p Process) (*os.File, error) {
	d, err := openListed(proc, p)
	if err != nil {
		return nil, err
	}
	defer d.close()
	fd, err := d.openat("root", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.path+"/root")
	// A container's root is the root of a mount (of the mount namespace,
	// or the rootfs moved over it by a runtime that does not pivot_root).
	// A process that chroot()ed into a directory, such as a decoy copy of
	// pristine files, has a root that is not: its root must not be checked.
	ok, err := mountRoot(fd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to stat %s: %w", f.Name(), err)
	}
	if !ok {
		f.Close()
		return nil, fmt.Errorf("%s: %w", f.Name(), errChrooted)
	}
	return f, nil
}

// openListed opens the /proc directory of process p and checks that it is
// still the process listed (same start time, not dead, same mount
// namespace). Through the returned directory, whatever is opened below is
// that process's, or the open fails.
func openListed(proc string, p Process) (*procDir, error) {
	d, err := openProcDir(proc, p.PID)
	if err != nil {
		return nil, err
	}
	st, err := d.stat()
	if err != nil {
		d.close()
		return nil, err
	}
	if st.StartTime != p.StartTime || st.dead() {
		d.close()
		return nil, fmt.Errorf("%s: %w", d.path, errVanished)
	}
	ns, err := d.mountNS()
	if err != nil {
		d.close()
		return nil, err
	}
	if ns != p.MountNS {
		d.close()
		return nil, fmt.Errorf("%s: moved to another mount namespace: %w", d.path, errVanished)
	}
	return d, nil
}

// mountRoot reports whether the directory fd is the root of a mount.
func mountRoot(fd int) (bool, error) {
	var stx unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, 0, &stx)
	if err == nil && stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	// Before Linux 5.8: the root of a mount namespace is its own parent,
	// and the parent of another mount's root is on another device (bind
	// mounts within one file system excepted).
	var self, parent unix.Stat_t
	if err := unix.Fstat(fd, &self); err != nil {
		return false, err
	}
	if err := unix.Fstatat(fd, "..", &parent, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, err
	}
	return self.Dev != parent.Dev || self.Ino == parent.Ino, nil
}
