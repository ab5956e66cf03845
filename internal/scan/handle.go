package scan

import (
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// dirHandle is an open, verified directory, shared by the walk and the
// files and subdirectories that still need it as a parent, and closed when
// the last of them is done.
type dirHandle struct {
	fd    int
	path  string
	depth int
	dev   uint64 // st_dev: a child on another device is a mount point
	refs  atomic.Int32
}

func newDirHandle(fd int, path string, depth int, dev uint64) *dirHandle {
	h := &dirHandle{fd: fd, path: path, depth: depth, dev: dev}
	h.refs.Store(1)
	return h
}

func (h *dirHandle) acquire() { h.refs.Add(1) }

func (h *dirHandle) release() {
	if h.refs.Add(-1) == 0 {
		unix.Close(h.fd)
	}
}

// pending is an object that was listed and lstat'ed and waits to be opened.
type pending struct {
	e       attr.Entry // filled from the lstat
	dev     uint64     // identity the open must find
	ino     uint64
	retried bool // already re-lstat'ed once after a swap
	// listed: not lstat'ed; ino is the listing's d_ino and e holds only
	// Path and Attrs (see hashListed).
	listed bool
	// hidden: a directory walked only to reach what a rule watches beneath
	// it; not recorded (see Descender).
	hidden bool
}
