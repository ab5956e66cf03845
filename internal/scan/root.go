package scan

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// Root is an open handle on the directory a scan is confined to. Its methods
// may be called concurrently; Close waits for them.
type Root struct {
	mu        sync.RWMutex
	fd        int
	procFd    int // /proc/self/fd: see worker.openFile
	path      string
	noatime   atomic.Bool // O_NOATIME was refused
	noXattrat atomic.Bool // listxattrat is missing or filtered
	entryPool sync.Pool   // *worker for Entry
}

// OpenRoot opens the directory at path. Following path itself is intended:
// it is the operator's choice, /proc/<pid>/root for a container; nothing
// inside the root is ever followed.
//
// It also opens /proc/self/fd, through which regular files are reopened
// for reading (see worker.openFile): without /proc, no file could be
// opened with the guarantee that it is not a FIFO or a device, so a
// missing /proc is an error, not a silent downgrade.
func OpenRoot(path string) (*Root, error) {
	fd, err := openDirFollow(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open root %q: %w", path, err)
	}
	procFd, err := openDirFollow("/proc/self/fd")
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("failed to open /proc/self/fd (podfim needs /proc to open files safely): %w", err)
	}
	return &Root{fd: fd, procFd: procFd, path: path}, nil
}

// openDirFollow opens a directory the operator named, following symlinks.
func openDirFollow(path string) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// Close closes the root.
func (r *Root) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	unix.Close(r.procFd)
	r.fd, r.procFd = -1, -1
	if err != nil {
		return fmt.Errorf("failed to close root %q: %w", r.path, err)
	}
	return nil
}

// Entry collects attrs for one path (relative to the root, starting with
// "/"), the way Tree would record it: every component is resolved relative to
// the root fd and no symlink is followed, neither in an intermediate
// component nor the last one (whose own attributes are collected).
//
// A path that does not exist as the walk would see it returns an error
// satisfying errors.Is(err, fs.ErrNotExist): that includes a path through a
// symlink or a non-directory. A non-fatal problem (unreadable file, file
// changing while hashed) returns the entry with what could be collected
// together with the Warning(s) as the error. Entry applies no limits (see
// EntryWith).
func (r *Root) Entry(path string, attrs attr.Set) (attr.Entry, error) {
	return r.EntryWith(path, attrs, Options{})
}

// EntryWith is Entry under the options that apply to one path:
// MaxFileBytes (a bigger file is not hashed, with a Warning), Now (for
// the Racy flag), Growing and GrowingFull (a Growing file that grew is
// hashed up to its baseline size), and the Matcher's Names, if it has one
// (a path on a pseudo file system that no rule names does not exist, as
// for Tree). The others are ignored.
func (r *Root) EntryWith(path string, attrs attr.Set, opts Options) (attr.Entry, error) {
	if err := checkPath(path); err != nil {
		return attr.Entry{}, err
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.fd < 0 {
		return attr.Entry{}, fmt.Errorf("failed to read %q: root is closed", path)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	cfg := &config{
		racyNs:       now().Add(-time.Second).UnixNano(),
		maxFileBytes: opts.MaxFileBytes,
		beforeOpen:   opts.beforeOpen,
		afterRead:    opts.afterRead,
		noNoatime:    &r.noatime,
		noXattrat:    &r.noXattrat,
		procFd:       r.procFd,
		names:        namesFunc(opts.Matcher),
		growing:      opts.Growing,
		growingFull:  opts.GrowingFull,
	}
	w, _ := r.entryPool.Get().(*worker)
	if w == nil {
		w = newWorker(cfg, nil, 64<<10)
	}
	w.cfg = cfg
	defer func() {
		w.warnings, w.cfg = nil, nil
		r.entryPool.Put(w)
	}()
	attrs = normalize(attrs)
	e := attr.Entry{Path: path, Attrs: attrs}
	if path == "/" {
		var st unix.Stat_t
		if err := fstat(r.fd, &st); err != nil {
			return attr.Entry{}, fmt.Errorf("failed to stat root: %w", err)
		}
		fill(&e, &st, cfg.racyNs)
		w.finishOpen(r.fd, &e)
		return e, w.warningsErr()
	}
	i := strings.LastIndexByte(path, '/')
	dir, name := path[:i], path[i+1:]
	dirfd, dirDev, err := r.entryDir(dir, cfg)
	if err != nil {
		return attr.Entry{}, err
	}
	if dirfd != r.fd {
		defer unix.Close(dirfd)
	}
	var st unix.Stat_t
	for attempt := 0; ; attempt++ {
		if err := lstatAt(dirfd, w.cname(name), &st); err != nil {
			return attr.Entry{}, fmt.Errorf("failed to lstat %q: %w", path, err)
		}
		fill(&e, &st, cfg.racyNs)
		if e.Type != attr.TypeRegular || e.HashAlg() == 0 {
			w.finishUnopened(dirfd, name, &e)
			return e, w.warningsErr()
		}
		if lim, read := cfg.maxFileBytes, w.readSize(&e, &st); lim > 0 && read > lim {
			w.warn(path, "limit", fmt.Errorf("size %d is over the limit of %d bytes, not hashed: %w", read, lim, ErrLimit))
			w.finishUnopened(dirfd, name, &e)
			return e, w.warningsErr()
		}
		switch w.hashAt(dirfd, name, &e, dirDev, st.Dev, st.Ino) {
		case vanished:
			return attr.Entry{}, fmt.Errorf("failed to open %q: %w", path, fs.ErrNotExist)
		case pseudoFile:
			return attr.Entry{}, fmt.Errorf("%q is on a pseudo file system no rule names, never read: %w", path, fs.ErrNotExist)
		case swapped:
			if attempt == 0 {
				continue
			}
			w.finishUnopened(dirfd, name, &e)
			w.warn(path, "swap", errSwapped)
		}
		return e, w.warningsErr()
	}
}

// entryDir opens the directory dir ("" for the root, which it returns as
// is) for Entry and returns its device. A directory on a pseudo file system
// (pseudo.go) that no rule names does not exist for Entry, as it does not
// for the walk.
func (r *Root) entryDir(dir string, cfg *config) (int, uint64, error) {
	fd := r.fd
	if dir != "" {
		var err error
		if fd, err = r.openDir(dir); err != nil {
			return -1, 0, err
		}
	}
	var st unix.Stat_t
	err := fstat(fd, &st)
	if err != nil {
		err = fmt.Errorf("failed to stat %q: %w", dir, err)
	} else if dir != "" && !cfg.names(dir) && pseudo(fd) {
		err = fmt.Errorf("%q is on a pseudo file system no rule names, never walked: %w", dir, fs.ErrNotExist)
	}
	if err != nil {
		if fd != r.fd {
			unix.Close(fd)
		}
		return -1, 0, err
	}
	return fd, st.Dev, nil
}

func (w *worker) warningsErr() error {
	switch len(w.warnings) {
	case 0:
		return nil
	case 1:
		return w.warnings[0]
	}
	errs := make([]error, len(w.warnings))
	for i, x := range w.warnings {
		errs[i] = x
	}
	return errors.Join(errs...)
}

// checkPath accepts "/" and "/a/b": no empty, "." or ".." component, no NUL.
func checkPath(path string) error {
	if path == "/" {
		return nil
	}
	if !strings.HasPrefix(path, "/") || strings.IndexByte(path, 0) >= 0 {
		return fmt.Errorf("invalid path %q: must start with / and hold no NUL", path)
	}
	for c := range strings.SplitSeq(path[1:], "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("invalid path %q: empty, . or .. component", path)
		}
	}
	return nil
}

// openDir opens the directory dir ("/a/b") under the root as an O_PATH fd
// without following any symlink: openat2 with RESOLVE_NO_SYMLINKS (and
// RESOLVE_IN_ROOT for good measure), or component by component with
// O_NOFOLLOW where openat2 is missing or filtered.
func (r *Root) openDir(dir string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 16 {
		fd, err := unix.Openat2(r.fd, dir[1:], &how)
		switch err {
		case nil:
			return fd, nil
		case unix.EINTR, unix.EAGAIN: // EAGAIN: a concurrent rename, retry
			continue
		case unix.ENOSYS, unix.EPERM, unix.E2BIG, unix.ENAMETOOLONG:
			// Missing, filtered, or a path longer than PATH_MAX (which
			// the walk itself never needs): one component at a time.
			return r.openDirSteps(dir)
		}
		return -1, resolveErr(dir, err)
	}
	return r.openDirSteps(dir)
}

// openDirSteps is openDir one component at a time.
func (r *Root) openDirSteps(dir string) (int, error) {
	var name []byte
	fd := r.fd
	for c := range strings.SplitSeq(dir[1:], "/") {
		next, err := openAt(fd, cstr(&name, c), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if fd != r.fd {
			unix.Close(fd)
		}
		if err != nil {
			return -1, resolveErr(dir, err)
		}
		fd = next
	}
	return fd, nil
}

// resolveErr explains a failure to resolve a directory. A symlink or a
// non-directory in the way means the path does not exist for the walk.
func resolveErr(dir string, err error) error {
	if err == unix.ELOOP || err == unix.ENOTDIR {
		return fmt.Errorf("failed to open %q: a component is a symlink or not a directory (never followed): %w: %w", dir, err, fs.ErrNotExist)
	}
	return fmt.Errorf("failed to open %q: %w", dir, err)
}
