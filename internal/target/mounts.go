package target

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/origin"
)

// Mounts returns the mount table of the container as its processes see it
// (paths relative to the container's root), read from the main process's
// mountinfo after the same checks as OpenRoot: the process is the one
// listed and still in the container's mount namespace. Package origin
// parses it and decides what in it is the runtime's.
//
// The runtime creates the mount points an image lacks (/proc, /dev,
// /etc/hosts, the service-account token's directories) in each
// container's new writable layer, so a fresh container of the same image
// differs from the last one in the directories above its mount points.
func (c *Container) Mounts() (*origin.Mounts, error) {
	for _, p := range c.rootCandidates() {
		m, err := mounts(procOrDefault(c.proc), p)
		if err == nil || !isVanished(err) {
			return m, err
		}
	}
	return nil, fmt.Errorf("container %s: %w", c, ErrGone)
}

func isVanished(err error) bool {
	return errors.Is(err, errVanished) || errors.Is(err, ErrGone)
}

func mounts(proc string, p Process) (*origin.Mounts, error) {
	d, err := openListed(proc, p)
	if err != nil {
		return nil, err
	}
	defer d.close()
	fd, err := d.openat("mountinfo", unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.path+"/mountinfo")
	defer f.Close()
	m, err := origin.ReadMountinfo(f)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", f.Name(), err)
	}
	return m, nil
}
