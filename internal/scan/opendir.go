package scan

import (
	"fmt"
	"os"
	"strconv"
	"strings"

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

// OpenRegular opens the regular file at path under the root for reading,
// and nothing else, as a scan does (worker.openFile): the name is opened
// O_PATH|O_NOFOLLOW in its directory (no object is opened: no FIFO's
// writer notices, no driver runs, a symlink is itself), fstat'ed, and only
// a regular file is reopened for reading through /proc/self/fd, which
// reopens that inode whatever a rename put at the name since. Anything
// else wraps ErrNotRegular. It returns the file and its size.
func (r *Root) OpenRegular(path string) (*os.File, int64, error) {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return nil, 0, fmt.Errorf("%q is not a path", path)
	}
	dir, name := path[:i], path[i+1:]
	if dir == "" {
		dir = "/"
	}
	d, err := r.OpenDir(dir)
	if err != nil {
		return nil, 0, err
	}
	defer d.Close()
	pfd, err := unix.Openat(int(d.Fd()), name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("failed to open %q: %w", path, err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, 0, fmt.Errorf("failed to stat %q: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, 0, fmt.Errorf("%q: %w", path, ErrNotRegular)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.procFd < 0 {
		return nil, 0, fmt.Errorf("failed to open %q: root is closed", path)
	}
	fd, err := unix.Openat(r.procFd, strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("failed to open %q: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), st.Size, nil
}
