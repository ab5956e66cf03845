package scan

import (
	"hash"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// config is what the per-object code needs from a scan (or from one
// Root.Entry call).
type config struct {
	racyNs       int64 // mtime or ctime at or after this: racy
	maxFileBytes int64
	maxDepth     int
	maxFiles     int64
	quickHashes  QuickHashes
	shared       SharedHashes // Options.Shared
	match        func(string) (attr.Set, bool)
	descend      func(string) bool // walk a skipped directory without recording it (Descender)
	names        func(string) bool // a rule names this pseudo file system mount (Namer)
	beforeOpen   func(path string)
	afterRead    func(path string)
	done         <-chan struct{} // closed when the scan is aborted; nil never
	noNoatime    *atomic.Bool    // set once O_NOATIME was refused
	noXattrat    *atomic.Bool    // set once listxattrat was missing or filtered
	procFd       int             // /proc/self/fd, to reopen an O_PATH descriptor for reading
	growing      Prior           // Options.Growing
	growingFull  bool
	progress     *Progress // nil: no one is watching
}

const (
	readBufSize  = 256 << 10 // one per worker: big enough that hashing is not syscall-bound
	direntSize   = 32 << 10
	slabSize     = 32 << 10 // hash bytes and paths are carved from slabs of this size
	splitBytes   = 1 << 20  // a file this big is worth sharing the rest of its batch for
	maxInterned  = 4096     // bound on each worker's xattr intern tables
	maxWorkers   = 64       // each has a read buffer: bound the memory whatever Options.Workers says
	maxInternVal = 256      // longest xattr value shared between entries
)

// worker holds one goroutine's reusable state: buffers, hash states, and the
// entries and warnings it produced.
type worker struct {
	cfg *config
	wk  *walk // nil for Root.Entry

	buf    []byte // read buffer for hashing
	dirent []byte // getdents buffer
	name   []byte // NUL-terminated name scratch
	ppath  []byte // "/proc/self/fd/N/name" scratch
	xlist  []byte // listxattr scratch
	xval   []byte // getxattr scratch
	sum    [64]byte
	psum   [64]byte // the digest of a Growing file's prefix (hashFd)
	pn     int      // its length; 0: none taken
	st     unix.Stat_t

	sha256, sha512, blake3 hash.Hash

	slab     []byte
	names    map[string]string // interned xattr names
	values   map[string][]byte // interned short xattr values
	paths    []byte            // slab the path strings are carved from
	warnings []Warning
	stats    Stats

	shownEntries, shownBytes int64 // what publish last added to cfg.progress
	recorded                 int64 // entries recorded

	// sink takes what the worker records or hands over in a walk
	// (ordered.go); nil for Root.Entry, which records nothing.
	sink sink
}

func newWorker(cfg *config, wk *walk, bufSize int) *worker {
	return &worker{
		cfg:    cfg,
		wk:     wk,
		buf:    make([]byte, bufSize),
		name:   make([]byte, 0, 256),
		ppath:  make([]byte, 0, 256),
		xlist:  make([]byte, 1024),
		xval:   make([]byte, 1024),
		names:  map[string]string{},
		values: map[string][]byte{},
	}
}

// aborted reports whether the scan was cancelled or failed.
func (w *worker) aborted() bool {
	select {
	case <-w.cfg.done:
		return true
	default:
		return false
	}
}

func (w *worker) warn(path, op string, err error) {
	w.warnings = append(w.warnings, Warning{Path: path, Op: op, Err: err})
}

// record hands a finished entry, the next in walk order, to the sink.
func (w *worker) record(e *attr.Entry) {
	w.recorded++
	if e.Type == attr.TypeDir {
		w.stats.Dirs++
	}
	w.sink.put(e)
}

// publish adds what the worker recorded and read since its last call to
// the scan's Progress, if any.
func (w *worker) publish() {
	p := w.cfg.progress
	if p == nil {
		return
	}
	n := w.recorded
	if d := n - w.shownEntries; d != 0 {
		p.Entries.Add(d)
		w.shownEntries = n
	}
	if d := w.stats.HashedBytes - w.shownBytes; d != 0 {
		p.Bytes.Add(d)
		w.shownBytes = w.stats.HashedBytes
	}
}

// joinPath returns parent + "/" + name, carved from the worker's path slab:
// no allocation per file, and no size-class rounding.
func (w *worker) joinPath(parent string, name []byte) string {
	if parent == "/" {
		parent = ""
	}
	n := len(parent) + 1 + len(name)
	if n > slabSize/8 {
		return joinPath(parent, name)
	}
	if cap(w.paths)-len(w.paths) < n {
		w.paths = make([]byte, 0, slabSize)
	}
	start := len(w.paths)
	w.paths = append(w.paths, parent...)
	w.paths = append(w.paths, '/')
	w.paths = append(w.paths, name...)
	return unsafeString(w.paths[start:])
}

// cname returns name as a NUL-terminated C string in the worker's scratch.
func (w *worker) cname(name string) *byte { return cstr(&w.name, name) }

// fdName returns the decimal fd NUL-terminated, a name in /proc/self/fd.
func (w *worker) fdName(fd int) *byte {
	b := appendInt(w.ppath[:0], fd)
	b = append(b, 0)
	w.ppath = b
	return &b[0]
}

// procPath returns "/proc/self/fd/<dirfd>/<name>" NUL-terminated.
func (w *worker) procPath(dirfd int, name string) *byte {
	b := append(w.ppath[:0], "/proc/self/fd/"...)
	b = appendInt(b, dirfd)
	b = append(b, '/')
	b = append(b, name...)
	b = append(b, 0)
	w.ppath = b
	return &b[0]
}

func appendInt(b []byte, n int) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}

// finishUnopened completes an entry for an object that is not opened: the
// symlink target and the xattrs, both read through the confined dirfd.
func (w *worker) finishUnopened(dirfd int, name string, e *attr.Entry) {
	if e.Type == attr.TypeSymlink && e.Attrs.Has(attr.Target) {
		t, err := w.readlink(dirfd, name)
		if err != nil {
			w.warn(e.Path, "readlink", err)
		}
		e.Target = t
	}
	if e.Attrs.Has(attr.Xattrs) {
		x, err := w.xattrsAt(dirfd, name)
		if err != nil {
			w.warn(e.Path, "xattr", err)
		}
		e.Xattrs = x
	}
}

// finishOpen reads the xattrs of an open object.
func (w *worker) finishOpen(fd int, e *attr.Entry) {
	if e.Attrs.Has(attr.Xattrs) {
		x, err := w.xattrs(xsrc{fd: fd})
		if err != nil {
			w.warn(e.Path, "xattr", err)
		}
		e.Xattrs = x
	}
}

// readlink returns the target of the symlink name in dirfd, never following it.
func (w *worker) readlink(dirfd int, name string) (string, error) {
	p := w.cname(name)
	for size := 256; ; size *= 4 {
		if len(w.xval) < size {
			w.xval = make([]byte, size)
		}
		n, err := readlinkAt(dirfd, p, w.xval[:size])
		if err != nil {
			return "", err
		}
		if n < size || size >= 1<<20 {
			return string(w.xval[:n]), nil
		}
	}
}
