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

// The walk is a work queue of directories and file batches shared by a fixed
// set of workers: a worker opens a directory, lists it, lstats each child,
// records what needs no opening, queues subdirectories, and hands regular
// files to hash to the queue in batches (so one huge directory or a few big
// files still use every core). There are no per-file goroutines.

// dirHandle is an open, verified directory, shared by the tasks that still
// need it as a parent and closed when the last one is done.
type dirHandle struct {
	fd    int
	path  string
	depth int
	refs  atomic.Int32
	owned bool // the Root's own fd: never closed here
}

func newDirHandle(fd int, path string, depth int) *dirHandle {
	h := &dirHandle{fd: fd, path: path, depth: depth}
	h.refs.Store(1)
	return h
}

func (h *dirHandle) acquire() { h.refs.Add(1) }

func (h *dirHandle) release() {
	if h.refs.Add(-1) == 0 && !h.owned {
		unix.Close(h.fd)
	}
}

// pending is an object that was listed and lstat'ed and waits to be opened.
type pending struct {
	e       attr.Entry // filled from the lstat
	dev     uint64     // identity the open must find
	ino     uint64
	retried bool // already re-lstat'ed once after a swap
}

// task is a unit of work: list an open directory (list), open a
// subdirectory of parent and list it (dir), or hash files of parent (files).
type task struct {
	parent *dirHandle
	list   *dirHandle
	dir    *pending
	files  []pending
}

// queue is a LIFO of tasks: last in, first out keeps the walk close to
// depth-first, which bounds the number of open directories.
type queue struct {
	mu     sync.Mutex
	cond   sync.Cond
	tasks  []task
	n      atomic.Int32 // len(tasks), read without the lock
	busy   int          // workers running a task
	closed bool         // finished or aborted
	free   [][]pending  // recycled batches
}

func (q *queue) push(t task) {
	q.mu.Lock()
	q.tasks = append(q.tasks, t)
	q.n.Store(int32(len(q.tasks)))
	q.cond.Signal()
	q.mu.Unlock()
}

// pop waits for a task; false means the walk is over (done or aborted).
func (q *queue) pop() (task, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.tasks) == 0 && !q.closed {
		if q.busy == 0 {
			q.closed = true // nothing queued and nobody can queue more
			q.cond.Broadcast()
			break
		}
		q.cond.Wait()
	}
	if q.closed {
		return task{}, false
	}
	t := q.tasks[len(q.tasks)-1]
	q.tasks[len(q.tasks)-1] = task{}
	q.tasks = q.tasks[:len(q.tasks)-1]
	q.n.Store(int32(len(q.tasks)))
	q.busy++
	return t, true
}

func (q *queue) finish() {
	q.mu.Lock()
	q.busy--
	if q.busy == 0 && len(q.tasks) == 0 {
		q.closed = true
		q.cond.Broadcast()
	}
	q.mu.Unlock()
}

func (q *queue) abort() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *queue) getBatch() []pending {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := len(q.free); n > 0 {
		b := q.free[n-1]
		q.free = q.free[:n-1]
		return b
	}
	return make([]pending, 0, batchFiles)
}

func (q *queue) putBatch(b []pending) {
	clear(b)
	q.mu.Lock()
	q.free = append(q.free, b[:0])
	q.mu.Unlock()
}

// walk is the state of one Tree call shared by its workers.
type walk struct {
	cfg     config
	q       queue
	listed  atomic.Int64
	fail    context.CancelCauseFunc
	workers int
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
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	wk := &walk{fail: fail, workers: workers}
	wk.q.cond.L = &wk.q.mu
	wk.cfg = config{
		racyNs:       now().Add(-time.Second).UnixNano(),
		maxFileBytes: opts.MaxFileBytes,
		maxDepth:     opts.MaxDepth,
		maxFiles:     int64(opts.MaxFiles),
		quick:        opts.Quick,
		match:        matchFunc(opts.Matcher),
		beforeOpen:   opts.beforeOpen,
		afterRead:    opts.afterRead,
		done:         ctx.Done(),
		noNoatime:    &r.noatime,
		noXattrat:    &r.noXattrat,
	}
	stop := context.AfterFunc(ctx, wk.q.abort)
	defer stop()

	ws := make([]*worker, workers)
	for i := range ws {
		ws[i] = newWorker(&wk.cfg, wk, readBufSize)
		ws[i].dirent = make([]byte, direntSize)
	}
	if attrs, skip := wk.cfg.match("/"); !skip {
		if err := ws[0].rootEntry(r.fd, normalize(attrs)); err != nil {
			return nil, err
		}
		// List a fresh descriptor of the root: getdents advances the file
		// offset, so listing r.fd itself would leave the next scan (or a
		// concurrent one) with an empty root.
		fd, err := unix.Openat(r.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("failed to open root %q: %w", r.path, err)
		}
		wk.listed.Add(1)
		wk.q.push(task{list: newDirHandle(fd, "/", 0)})
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(w.run)
	}
	wg.Wait()
	// After an abort, tasks may be left: drop their references so every
	// directory fd is closed.
	for _, t := range wk.q.tasks {
		t.release()
	}
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("scan of %q stopped: %w", r.path, err)
	}
	return merge(ws), nil
}

// matchFunc turns a Matcher (or nil: everything, all attributes) into a func.
func matchFunc(m Matcher) func(string) (attr.Set, bool) {
	if m == nil {
		return func(string) (attr.Set, bool) { return attr.All, false }
	}
	return m.Match
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

func (t task) release() {
	if t.parent != nil {
		t.parent.release()
	}
	if t.list != nil {
		t.list.release()
	}
}

func (w *worker) run() {
	q := &w.wk.q
	for {
		t, ok := q.pop()
		if !ok {
			return
		}
		switch {
		case t.list != nil:
			w.listDir(t.list)
			t.list.release()
		case t.dir != nil:
			w.openDir(t.parent, t.dir)
		default:
			w.hashFiles(t.parent, t.files)
		}
		q.finish()
	}
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
		w.swapped(parent, p)
		return
	default:
		w.warn(p.e.Path, "open", fmt.Errorf("failed to open %q: %w", p.e.Path, err))
		w.finishUnopened(parent.fd, name, &p.e)
		w.record(&p.e)
		return
	}
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		unix.Close(fd)
		w.warn(p.e.Path, "open", fmt.Errorf("failed to fstat %q: %w", p.e.Path, err))
		w.finishUnopened(parent.fd, name, &p.e)
		w.record(&p.e)
		return
	}
	if st.Dev != p.dev || st.Ino != p.ino || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(fd)
		w.swapped(parent, p)
		return
	}
	fill(&p.e, &st, w.cfg.racyNs)
	w.finishOpen(fd, &p.e)
	w.record(&p.e)
	h := newDirHandle(fd, p.e.Path, parent.depth+1)
	w.listDir(h)
	h.release()
}

// swapped handles an object that was not the listed one when it was opened:
// re-lstat it once and handle whatever is there now; a second swap is
// recorded from the lstat, unopened, with a Warning.
func (w *worker) swapped(parent *dirHandle, p *pending) {
	if !p.retried {
		w.child(parent, p.e.Path, p.e.Attrs, true)
		return
	}
	w.warn(p.e.Path, "swap", errSwapped)
	w.finishUnopened(parent.fd, nameOf(parent.path, p.e.Path), &p.e)
	w.record(&p.e)
}

// listDir lists an open directory and handles each child.
func (w *worker) listDir(h *dirHandle) {
	defer w.flush()
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
			name := buf[19:reclen]
			buf = buf[reclen:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if ino == 0 || len(name) == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			if w.aborted() {
				return
			}
			path := joinPath(h.path, name)
			attrs, skip := w.cfg.match(path)
			if skip {
				continue
			}
			w.child(h, path, normalize(attrs), false)
		}
	}
}

// child lstats one name in the open directory h and records it or queues the
// opening it needs.
func (w *worker) child(h *dirHandle, path string, attrs attr.Set, retried bool) {
	name := nameOf(h.path, path)
	st := &w.st
	if err := lstatAt(h.fd, w.cname(name), st); err != nil {
		if err != unix.ENOENT { // ENOENT: gone since listed, not recorded
			w.warn(path, "lstat", fmt.Errorf("failed to lstat %q: %w", path, err))
		}
		return
	}
	if !retried {
		if n := w.wk.listed.Add(1); w.cfg.maxFiles > 0 && n > w.cfg.maxFiles {
			w.wk.fail(fmt.Errorf("more than %d entries: %w", w.cfg.maxFiles, ErrLimit))
			return
		}
	}
	p := pending{e: attr.Entry{Path: path, Attrs: attrs}, dev: st.Dev, ino: st.Ino, retried: retried}
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
		w.wk.q.push(task{parent: h, dir: d})
		return
	case attr.TypeRegular:
		if attrs&attr.Hashes == 0 {
			break
		}
		if lim := w.cfg.maxFileBytes; lim > 0 && st.Size > lim {
			w.warn(path, "limit", fmt.Errorf("size %d is over the limit of %d bytes, not hashed: %w", st.Size, lim, ErrLimit))
			break
		}
		if w.reuse(&p.e, st) {
			break
		}
		if retried {
			w.hashOne(h, &p)
		} else {
			w.add(h, &p, st.Size)
		}
		return
	}
	w.finishUnopened(h.fd, name, &p.e)
	w.record(&p.e)
}

// reuse implements quick mode: see Options.Quick for why it is sound.
func (w *worker) reuse(e *attr.Entry, st *unix.Stat_t) bool {
	if w.cfg.quick == nil || e.Racy {
		return false
	}
	prev, ok := w.cfg.quick.Lookup(e.Path)
	const need = attr.Size | attr.Mtime | attr.Ctime | attr.Inode
	if !ok || prev == nil || prev.Racy || prev.Type != attr.TypeRegular || len(prev.Hash) == 0 ||
		!prev.Attrs.Has(need) || prev.HashAlg() != e.HashAlg() {
		return false
	}
	if prev.Size != st.Size || prev.Mtime != st.Mtim.Nano() || prev.Ctime != st.Ctim.Nano() || prev.Inode != st.Ino {
		return false
	}
	e.Hash = w.keep(prev.Hash)
	w.stats.Reused++
	return true
}

// add puts a file to hash in the worker's current batch for h.
func (w *worker) add(h *dirHandle, p *pending, size int64) {
	if w.batchParent != h {
		w.flush()
		h.acquire()
		w.batchParent = h
		w.batch = w.wk.q.getBatch()
	}
	w.batch = append(w.batch, *p)
	w.batchBytes += size
	if len(w.batch) >= batchFiles || w.batchBytes >= batchBytes {
		w.flush()
	}
}

// flush hands the current batch to the queue, or hashes it here when the
// queue already holds enough work for every worker (this keeps a fast lister
// from running far ahead of the hashers).
func (w *worker) flush() {
	h, b := w.batchParent, w.batch
	if h == nil {
		return
	}
	w.batchParent, w.batch, w.batchBytes = nil, nil, 0
	if w.aborted() {
		w.wk.q.putBatch(b)
		h.release()
		return
	}
	if int(w.wk.q.n.Load()) >= w.wk.workers {
		w.hashFiles(h, b)
		return
	}
	w.wk.q.push(task{parent: h, files: b})
}

// hashFiles hashes a batch of files of parent and records them.
func (w *worker) hashFiles(parent *dirHandle, files []pending) {
	for i := range files {
		if w.aborted() {
			break
		}
		w.hashOne(parent, &files[i])
	}
	w.wk.q.putBatch(files)
	parent.release()
}

func (w *worker) hashOne(parent *dirHandle, p *pending) {
	switch w.hashAt(parent.fd, nameOf(parent.path, p.e.Path), &p.e, p.dev, p.ino) {
	case opened, failed:
		w.record(&p.e)
	case swapped:
		w.swapped(parent, p)
	}
}

// merge puts every worker's entries in one slice sorted by path, dropping
// duplicates (a name renamed back and forth during listing may be listed
// twice), and sums the stats.
func merge(ws []*worker) *Result {
	type key struct {
		path string
		e    *attr.Entry
	}
	res := &Result{}
	total := 0
	for _, w := range ws {
		if w.cur != nil {
			w.chunks = append(w.chunks, w.cur)
			w.cur = nil
		}
		for _, c := range w.chunks {
			total += len(c)
		}
	}
	keys := make([]key, 0, total)
	for _, w := range ws {
		for _, c := range w.chunks {
			for i := range c {
				keys = append(keys, key{c[i].Path, &c[i]})
			}
		}
		res.Warnings = append(res.Warnings, w.warnings...)
		res.Stats.Dirs += w.stats.Dirs
		res.Stats.Hashed += w.stats.Hashed
		res.Stats.Reused += w.stats.Reused
		res.Stats.HashedBytes += w.stats.HashedBytes
	}
	slices.SortFunc(keys, func(a, b key) int { return comparePaths(a.path, b.path) })
	res.Entries = make([]attr.Entry, 0, total)
	for i, k := range keys {
		if i > 0 && k.path == keys[i-1].path {
			res.Warnings = append(res.Warnings, Warning{Path: k.path, Op: "duplicate", Err: fmt.Errorf("listed twice (renamed during the scan), kept once")})
			if k.e.Type == attr.TypeDir {
				res.Stats.Dirs--
			}
			continue
		}
		res.Entries = append(res.Entries, *k.e)
	}
	for _, w := range ws {
		w.chunks = nil
	}
	res.Stats.Entries = int64(len(res.Entries))
	slices.SortFunc(res.Warnings, func(a, b Warning) int { return comparePaths(a.Path, b.Path) })
	return res
}
