package scan

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// OpenDir opens the directory dir ("/" or "/a/b") under the root as an
// O_PATH descriptor, resolving every component relative to the root without
// following any symlink. The sidecar places inotify watches through it
// (/proc/self/fd/N), so a watch is always on the directory the walk sees.
func (r *Root) OpenDir(dir string) (*os.File, error) {
	if err := checkPath(dir); err != nil {
		return nil, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.fd < 0 {
		return nil, fmt.Errorf("failed to open %q: root is closed", dir)
	}
	if dir == "/" {
		fd, err := unix.Openat(r.fd, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("failed to open root: %w", err)
		}
		return os.NewFile(uintptr(fd), dir), nil
	}
	fd, err := r.openDir(dir)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), dir), nil
}
