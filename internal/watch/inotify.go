package watch

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dirMask is what a watched directory reports: every change to an entry's
// content, metadata or presence, and the directory's own removal or move.
// Watches are added through /proc/self/fd/N of a directory opened without
// following any symlink, so the only link followed is that magic link to the
// very directory opened (IN_DONT_FOLLOW would refuse it: it is a symlink).
// IN_ONLYDIR makes sure it is a directory.
const dirMask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_CREATE |
	unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// ErrWatchLimit is returned when the kernel refuses another watch
// (fs.inotify.max_user_watches).
var ErrWatchLimit = errors.New("inotify watch limit reached (fs.inotify.max_user_watches)")

// Event is what the inotify reader reports.
type Event struct {
	// Path is the path (relative to the root) of the entry that changed, or
	// of the watched directory itself for IN_DELETE_SELF / IN_MOVE_SELF.
	Path string
	// Dir is set when the entry is (or was) a directory.
	Dir bool
	// Overflow is set when the kernel's queue overflowed: events were lost
	// and only a full rescan can tell what changed.
	Overflow bool
	// Lost is set when a watch went away unexpectedly (the directory was
	// removed or moved, or its file system unmounted).
	Lost bool
	// Write is set when the entry's content was modified (IN_MODIFY): a
	// file written and put back within the coalescing window matches again
	// when it is checked (see AttrTransient).
	Write bool
	// CloseWrite is set when a descriptor opened for writing was closed
	// (IN_CLOSE_WRITE): after a write (whose IN_MODIFY came earlier, maybe
	// in a batch already checked), or after no write at all, as when a file
	// is opened only to be mapped shared and writable (see AttrMapped).
	// It is not a write: the tail of a tamper already reported and
	// restored must not be reported again as transient.
	CloseWrite bool
}

// inotify wraps one inotify instance. The file descriptor is read through
// the Go runtime's poller, so Close unblocks a pending read.
type inotify struct {
	f     *os.File
	mu    sync.Mutex
	paths map[int]string // watch descriptor -> directory path relative to the root
	wds   map[string]int
}

func newInotify() (*inotify, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("failed to create an inotify instance: %w", err)
	}
	return &inotify{f: os.NewFile(uintptr(fd), "inotify"), paths: map[int]string{}, wds: map[string]int{}}, nil
}

// add watches the directory open as dirfd (an O_PATH descriptor obtained
// without following symlinks) under the name path. Going through
// /proc/self/fd/N places the watch on exactly that directory.
func (in *inotify) add(dirfd int, path string) error {
	raw, err := in.f.SyscallConn()
	if err != nil {
		return err
	}
	var wd int
	var aerr error
	if err := raw.Control(func(fd uintptr) {
		wd, aerr = unix.InotifyAddWatch(int(fd), "/proc/self/fd/"+strconv.Itoa(dirfd), dirMask)
	}); err != nil {
		return err
	}
	if aerr != nil {
		if aerr == unix.ENOSPC {
			return fmt.Errorf("failed to watch %q: %w", path, ErrWatchLimit)
		}
		return fmt.Errorf("failed to watch %q: %w", path, aerr)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if old, ok := in.paths[wd]; ok && old != path {
		// The same directory under another name (it was moved): keep the new name.
		delete(in.wds, old)
	}
	in.paths[wd] = path
	in.wds[path] = wd
	return nil
}

func (in *inotify) close() error { return in.f.Close() }

// read blocks until events arrive and decodes them into evs (reused).
func (in *inotify) read(buf []byte, evs []Event) ([]Event, error) {
	n, err := in.f.Read(buf)
	if err != nil {
		return evs, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameLen := int(raw.Len)
		end := off + unix.SizeofInotifyEvent + nameLen
		if end > n {
			break
		}
		name := buf[off+unix.SizeofInotifyEvent : end]
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		off = end
		mask := raw.Mask
		if mask&unix.IN_Q_OVERFLOW != 0 {
			evs = append(evs, Event{Overflow: true})
			continue
		}
		dir, ok := in.paths[int(raw.Wd)]
		if !ok {
			continue
		}
		switch {
		case mask&unix.IN_IGNORED != 0:
			// The watch is gone: the directory was deleted, or its file
			// system went away. Its parent reports a deletion; anything
			// else is a lost watch.
			delete(in.paths, int(raw.Wd))
			delete(in.wds, dir)
			evs = append(evs, Event{Path: dir, Dir: true, Lost: true})
		case mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0:
			evs = append(evs, Event{Path: dir, Dir: true})
		case len(name) > 0:
			evs = append(evs, Event{Path: join(dir, string(name)), Dir: mask&unix.IN_ISDIR != 0,
				Write: mask&unix.IN_MODIFY != 0, CloseWrite: mask&unix.IN_CLOSE_WRITE != 0})
		default:
			evs = append(evs, Event{Path: dir, Dir: true})
		}
	}
	return evs, nil
}

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}
