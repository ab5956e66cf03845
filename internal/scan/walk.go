package scan

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// The walk is ordered (ordered.go): one goroutine, the lister, opens each
// directory, lists it, lstats each child (but regular files to hash, see
// hashListed), records what needs no opening, descends subdirectories, and
// hands regular files to hash to a fixed set of workers in batches (so one
// huge directory or a few big files still use every core). There are no
// per-file goroutines.

// walk is the state of one Tree call shared by its workers.
type walk struct {
	cfg    config
	listed atomic.Int64
	fail   context.CancelCauseFunc
	// Fast path bookkeeping (hashListed): a file system whose d_ino is not
	// st_ino (overlayfs in some set-ups) would make every file take both
	// paths, so the fast one is turned off when it mostly misses.
	fastTries, fastMisses atomic.Int64
	noFast                atomic.Bool
	workers               int
}

// Tree scans the whole tree under the root; the root itself is recorded as
// "/". It fails on cancellation and when more than Options.MaxFiles entries
// are found; every other problem is a Warning in the result.
func (r *Root) Tree(ctx context.Context, opts Options) (*Result, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.fd < 0 {
		return nil, fmt.Errorf("failed to scan %q: root is closed", r.path)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, maxWorkers)
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	wk := &walk{fail: fail, workers: workers}
	wk.cfg = config{
		racyNs:       now().Add(-time.Second).UnixNano(),
		maxFileBytes: opts.MaxFileBytes,
		maxDepth:     opts.MaxDepth,
		maxFiles:     int64(opts.MaxFiles),
		quickHashes:  opts.QuickHashes,
		shared:       opts.Shared,
		match:        matchFunc(opts.Matcher),
		descend:      descendFunc(opts.Matcher),
		names:        namesFunc(opts.Matcher),
		beforeOpen:   opts.beforeOpen,
		afterRead:    opts.afterRead,
		done:         ctx.Done(),
		noNoatime:    &r.noatime,
		noXattrat:    &r.noXattrat,
		procFd:       r.procFd,
		growing:      opts.Growing,
		growingFull:  opts.GrowingFull,
		progress:     opts.Progress,
	}
	return wk.ordered(ctx, r, opts)
}

func (wk *walk) newWorker() *worker {
	w := newWorker(&wk.cfg, wk, readBufSize)
	w.dirent = make([]byte, direntSize)
	return w
}

// root records "/" unless the Matcher skips it, and returns a handle to
// list it, nil when the Matcher neither records nor descends it.
func (w *worker) root(r *Root) (*dirHandle, error) {
	attrs, skip := w.cfg.match("/")
	if skip && !w.cfg.descend("/") {
		return nil, nil
	}
	if !skip {
		if err := w.rootEntry(r.fd, normalize(attrs)); err != nil {
			return nil, err
		}
	}
	// List a fresh descriptor of the root: getdents advances the file
	// offset, so listing r.fd itself would leave the next scan (or a
	// concurrent one) with an empty root.
	fd, err := unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to open root %q: %w", r.path, err)
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("failed to stat root %q: %w", r.path, err)
	}
	w.wk.listed.Add(1)
	return newDirHandle(fd, "/", 0, st.Dev), nil
}

// ordered runs the walk (ordered.go): the lister, the emitter (this
// goroutine) and wk.workers workers that hash. In quick mode its QuickHashes
// is asked in path order, which lets it read a baseline as it goes (the
// CLI's cursor), or it is an index its caller keeps anyway (the sidecar's).
func (wk *walk) ordered(ctx context.Context, r *Root, opts Options) (*Result, error) {
	p := newPipe(wk.workers, wk.cfg.done)
	lister, emitter := wk.newWorker(), wk.newWorker()
	lister.sink = listerSink{lister, p}
	res := &Result{}
	emit := opts.Emit
	if emit == nil {
		emit = func(e *attr.Entry) { res.Entries = append(res.Entries, *e) }
	}
	h, err := lister.root(r)
	if err != nil {
		return nil, err // the root's slot holds no reference
	}
	ws := []*worker{lister, emitter}
	var wg sync.WaitGroup
	for range wk.workers {
		w := wk.newWorker()
		ws = append(ws, w)
		wg.Go(func() { w.runOrdered(p) })
	}
	wg.Go(func() {
		defer close(p.order)
		if h != nil {
			lister.listDir(h)
			h.release()
		}
		p.flush()
	})
	res.Stats.Entries = emitter.emitOrdered(p, emit)
	close(p.stop)
	wg.Wait()
	p.release()
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("scan of %q stopped: %w", r.path, err)
	}
	for _, w := range ws {
		res.add(w)
	}
	slices.SortFunc(res.Warnings, func(a, b Warning) int { return comparePaths(a.Path, b.Path) })
	return res, nil
}

// add adds a worker's warnings and stats (but Entries) to res.
func (res *Result) add(w *worker) {
	res.Warnings = append(res.Warnings, w.warnings...)
	res.Stats.Dirs += w.stats.Dirs
	res.Stats.Hashed += w.stats.Hashed
	res.Stats.Reused += w.stats.Reused
	res.Stats.Shared += w.stats.Shared
	res.Stats.HashedBytes += w.stats.HashedBytes
	res.Stats.Pseudo += w.stats.Pseudo
}

// matchFunc turns a Matcher (or nil: everything, all attributes) into a func.
func matchFunc(m Matcher) func(string) (attr.Set, bool) {
	if m == nil {
		return func(string) (attr.Set, bool) { return attr.All, false }
	}
	return m.Match
}

// descendFunc returns the Matcher's Descend, or a func that never descends.
func descendFunc(m Matcher) func(string) bool {
	if d, ok := m.(Descender); ok {
		return d.Descend
	}
	return func(string) bool { return false }
}

// rootEntry records "/" from the root fd itself.
func (w *worker) rootEntry(fd int, attrs attr.Set) error {
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		return fmt.Errorf("failed to stat root: %w", err)
	}
	e := attr.Entry{Path: "/", Attrs: attrs}
	fill(&e, &st, w.cfg.racyNs)
	w.finishOpen(fd, &e)
	w.record(&e)
	return nil
}

// openDir opens a listed subdirectory of parent, checks it is the listed
// inode, records it and lists it.
func (w *worker) openDir(parent *dirHandle, p *pending) {
	defer parent.release()
	if w.aborted() {
		return
	}
	name := nameOf(parent.path, p.e.Path)
	if w.cfg.beforeOpen != nil {
		w.cfg.beforeOpen(p.e.Path)
	}
	fd, err := openAt(parent.fd, w.cname(name), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	switch err {
	case nil:
	case unix.ENOENT:
		return
	case unix.ELOOP, unix.ENOTDIR:
		if !p.hidden {
			w.swapped(parent, p)
		}
		return
	default:
		w.warn(p.e.Path, "open", fmt.Errorf("failed to open %q: %w", p.e.Path, err))
		if !p.hidden {
			w.finishUnopened(parent.fd, name, &p.e)
			w.record(&p.e)
		}
		return
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		unix.Close(fd)
		w.warn(p.e.Path, "open", fmt.Errorf("failed to fstat %q: %w", p.e.Path, err))
		if !p.hidden {
			w.finishUnopened(parent.fd, name, &p.e)
			w.record(&p.e)
		}
		return
	}
	if st.Dev != p.dev || st.Ino != p.ino || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(fd)
		if !p.hidden {
			w.swapped(parent, p)
		}
		return
	}
	if w.skipPseudo(fd, p.e.Path, st.Dev, parent.dev) {
		unix.Close(fd)
		return
	}
	if !p.hidden {
		fill(&p.e, &st, w.cfg.racyNs)
		w.finishOpen(fd, &p.e)
		w.record(&p.e)
	}
	h := newDirHandle(fd, p.e.Path, parent.depth+1, st.Dev)
	w.listDir(h)
	h.release()
}

// How child handles a regular file that needs hashing.
const (
	fromListing = iota // hand it to the sink (the lister's puts it in a batch)
	inline             // hash it now (re-examining a file from a batch)
	retry              // hash it now; it was already swapped once
)

// swapped handles an object that was not the listed one when it was opened:
// re-lstat it once and handle whatever is there now; a second swap is
// recorded from the lstat, unopened, with a Warning.
func (w *worker) swapped(parent *dirHandle, p *pending) {
	if !p.retried {
		w.child(parent, p.e.Path, p.e.Attrs, retry)
		return
	}
	w.warn(p.e.Path, "swap", errSwapped)
	w.finishUnopened(parent.fd, nameOf(parent.path, p.e.Path), &p.e)
	w.record(&p.e)
}

// listDir lists an open directory and handles each child, sorted by name.
func (w *worker) listDir(h *dirHandle) {
	defer w.publish()
	// The fast path needs the lstat of no regular file it hashes: see hashListed.
	fast := w.cfg.quickHashes == nil && !w.wk.noFast.Load()
	w.listSorted(h, fast)
}

// readDir passes each name listed in h to fn (not "." and ".."), until fn
// returns false.
func (w *worker) readDir(h *dirHandle, fn func(ino uint64, dtype byte, name []byte) bool) {
	for {
		n, err := getdents(h.fd, w.dirent)
		if err != nil {
			w.warn(h.path, "readdir", fmt.Errorf("failed to list %q: %w", h.path, err))
			return
		}
		if n <= 0 {
			return
		}
		buf := w.dirent[:n]
		for len(buf) >= 19 {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			ino := binary.NativeEndian.Uint64(buf)
			reclen := int(binary.NativeEndian.Uint16(buf[16:]))
			if reclen < 19 || reclen > len(buf) {
				w.warn(h.path, "readdir", fmt.Errorf("failed to list %q: malformed directory entry", h.path))
				return
			}
			dtype := buf[18]
			name := buf[19:reclen]
			buf = buf[reclen:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if ino == 0 || len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			if !fn(ino, dtype, name) {
				return
			}
		}
	}
}

// listed handles one name listed in h; false stops the listing.
func (w *worker) listed(h *dirHandle, ino uint64, dtype byte, name []byte, fast bool) bool {
	if w.aborted() {
		return false
	}
	path := w.joinPath(h.path, name)
	attrs, skip := w.cfg.match(path)
	if skip {
		if (dtype == unix.DT_DIR || dtype == unix.DT_UNKNOWN) && w.cfg.descend(path) {
			w.passDir(h, path)
		}
		return true
	}
	// Counted when listed (one that then vanishes counts too): the
	// limit must stop a huge directory before it is all in memory.
	if n := w.wk.listed.Add(1); w.cfg.maxFiles > 0 && n > w.cfg.maxFiles {
		w.wk.fail(fmt.Errorf("more than %d entries: %w", w.cfg.maxFiles, ErrLimit))
		return false
	}
	if w.tooLong(path) {
		return true
	}
	attrs = normalize(attrs)
	if fast && dtype == unix.DT_REG && attrs&attr.Hashes != 0 {
		w.sink.job(h, &pending{e: attr.Entry{Path: path, Attrs: attrs}, ino: ino, listed: true})
		return true
	}
	w.child(h, path, attrs, fromListing)
	return true
}

// child lstats one name in the open directory h and records it or does or
// hands over the opening it needs.
func (w *worker) child(h *dirHandle, path string, attrs attr.Set, mode int) {
	name := nameOf(h.path, path)
	st := &w.st
	if err := lstatAt(h.fd, w.cname(name), st); err != nil {
		if err != unix.ENOENT { // ENOENT: gone since listed, not recorded
			w.warn(path, "lstat", fmt.Errorf("failed to lstat %q: %w", path, err))
		}
		return
	}
	p := pending{e: attr.Entry{Path: path, Attrs: attrs}, dev: st.Dev, ino: st.Ino, retried: mode == retry}
	fill(&p.e, st, w.cfg.racyNs)
	switch p.e.Type {
	case attr.TypeDir:
		if depth := h.depth + 1; w.cfg.maxDepth > 0 && depth > w.cfg.maxDepth {
			w.warn(path, "limit", fmt.Errorf("depth %d is over the limit of %d, not descended: %w", depth, w.cfg.maxDepth, ErrLimit))
			break
		}
		d := new(pending) // one allocation per directory; p itself stays on the stack
		*d = p
		h.acquire()
		w.sink.dir(h, d)
		return
	case attr.TypeRegular:
		if attrs&attr.Hashes == 0 {
			break
		}
		if lim, read := w.cfg.maxFileBytes, w.readSize(&p.e, st); lim > 0 && read > lim {
			w.warn(path, "limit", fmt.Errorf("size %d is over the limit of %d bytes, not hashed: %w", read, lim, ErrLimit))
			break
		}
		if w.reuse(&p.e, st) {
			break
		}
		if mode == fromListing {
			w.sink.job(h, &p)
		} else {
			w.hashOne(h, &p)
		}
		return
	}
	w.finishUnopened(h.fd, name, &p.e)
	w.record(&p.e)
}

// tooLong warns about a path longer than MaxPathBytes, which is neither
// recorded nor descended (everything beneath it is longer still).
func (w *worker) tooLong(path string) bool {
	if len(path) <= MaxPathBytes {
		return false
	}
	w.warn(path, "limit", fmt.Errorf("path of %d bytes is over the limit of %d, not recorded: %w", len(path), MaxPathBytes, ErrLimit))
	return true
}

// passDir hands over a directory that is walked but not recorded (Descender).
func (w *worker) passDir(h *dirHandle, path string) {
	st := &w.st
	if err := lstatAt(h.fd, w.cname(nameOf(h.path, path)), st); err != nil {
		if err != unix.ENOENT {
			w.warn(path, "lstat", fmt.Errorf("failed to lstat %q: %w", path, err))
		}
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || w.tooLong(path) {
		return // a symlink or anything else is never followed
	}
	if depth := h.depth + 1; w.cfg.maxDepth > 0 && depth > w.cfg.maxDepth {
		w.warn(path, "limit", fmt.Errorf("depth %d is over the limit of %d, not descended: %w", depth, w.cfg.maxDepth, ErrLimit))
		return
	}
	d := &pending{e: attr.Entry{Path: path}, dev: st.Dev, ino: st.Ino, hidden: true}
	h.acquire()
	w.sink.dir(h, d)
}

// reuse implements quick mode: see Options.QuickHashes for why it is sound.
func (w *worker) reuse(e *attr.Entry, st *unix.Stat_t) bool {
	q := w.cfg.quickHashes
	if e.Racy || q == nil {
		return w.fromShared(e, st)
	}
	h := q.Unchanged(e.Path, e.HashAlg(), st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano())
	if len(h) == 0 {
		return w.fromShared(e, st)
	}
	// Not copied: the index's bytes are read only, and keeping them
	// keeps its hash slab alone alive, not the rest of it.
	e.Hash = h
	w.stats.Reused++
	return true
}

// fromShared takes e's hash from Options.Shared when it knows this version
// of the file (st), e having been filled from st.
func (w *worker) fromShared(e *attr.Entry, st *unix.Stat_t) bool {
	sh := w.cfg.shared
	if sh == nil || e.Racy || e.Attrs.Has(attr.Growing) {
		return false
	}
	h := sh.Get(e.HashAlg(), st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano())
	if len(h) == 0 {
		return false
	}
	e.Hash = w.keep(h)
	w.stats.Shared++
	return true
}

// toShared gives Options.Shared the hash of e, just computed from the
// version st of the file.
func (w *worker) toShared(e *attr.Entry, st *unix.Stat_t) {
	if sh := w.cfg.shared; sh != nil && !e.Racy && !e.Attrs.Has(attr.Growing) && e.Prefix == nil && len(e.Hash) > 0 {
		sh.Put(e.HashAlg(), st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano(), e.Hash)
	}
}

func (w *worker) hashOne(parent *dirHandle, p *pending) {
	if p.listed {
		w.hashListed(parent, p)
		return
	}
	switch w.hashAt(parent.fd, nameOf(parent.path, p.e.Path), &p.e, parent.dev, p.dev, p.ino) {
	case opened, failed:
		w.record(&p.e)
	case swapped:
		w.swapped(parent, p)
	}
}

// hashListed is the fast path for a regular file to hash: the listing said
// it is a regular file (d_type) with inode d_ino, so it is opened right away
// (openFile: O_PATH, fstat, reopened for reading only if regular) and that
// fstat, which has lstat semantics since nothing was followed, gives its
// attributes and checks that it is the regular file and inode that was
// listed. That saves
// the fstatat, a tenth of the cost of a small file. Anything unexpected
// (not there, not a regular file, another inode as for a bind-mounted file,
// no permission) goes the careful way: lstat, open, compare.
func (w *worker) hashListed(parent *dirHandle, p *pending) {
	name := nameOf(parent.path, p.e.Path)
	if w.cfg.beforeOpen != nil {
		w.cfg.beforeOpen(p.e.Path)
	}
	var st unix.Stat_t
	fd, err := w.openFile(parent.fd, name, p.e.Path, parent.dev, &st)
	if err == unix.ENOENT || err == errPseudo {
		return
	}
	tries := w.wk.fastTries.Add(1)
	if err != nil || st.Ino != p.ino {
		if err == nil {
			unix.Close(fd)
		}
		if err == ErrNotRegular || err == nil {
			if misses := w.wk.fastMisses.Add(1); misses >= 256 && misses*2 > tries {
				w.wk.noFast.Store(true)
			}
		}
		w.child(parent, p.e.Path, p.e.Attrs, inline)
		return
	}
	out := w.hashOpen(fd, &p.e, &st)
	unix.Close(fd)
	if out == opened {
		w.record(&p.e)
	}
}
