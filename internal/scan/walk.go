package scan

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
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
	// listed: not lstat'ed; ino is the listing's d_ino and e holds only
	// Path and Attrs (see hashListed).
	listed bool
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

// How child handles a regular file that needs hashing.
const (
	fromListing = iota // queue it in a batch
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

// listDir lists an open directory and handles each child.
func (w *worker) listDir(h *dirHandle) {
	defer w.flush()
	// The fast path needs the lstat of no regular file it hashes: see hashListed.
	fast := w.cfg.quick == nil
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
			if w.aborted() {
				return
			}
			path := w.joinPath(h.path, name)
			attrs, skip := w.cfg.match(path)
			if skip {
				continue
			}
			// Counted when listed (one that then vanishes counts too): the
			// limit must stop a huge directory before it is all in memory.
			if n := w.wk.listed.Add(1); w.cfg.maxFiles > 0 && n > w.cfg.maxFiles {
				w.wk.fail(fmt.Errorf("more than %d entries: %w", w.cfg.maxFiles, ErrLimit))
				return
			}
			attrs = normalize(attrs)
			if fast && dtype == unix.DT_REG && attrs&attr.Hashes != 0 {
				w.add(h, &pending{e: attr.Entry{Path: path, Attrs: attrs}, ino: ino, listed: true}, 0)
				continue
			}
			w.child(h, path, attrs, fromListing)
		}
	}
}

// child lstats one name in the open directory h and records it or does or
// queues the opening it needs.
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
		if mode == fromListing {
			w.add(h, &p, st.Size)
		} else {
			w.hashOne(h, &p)
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
	if p.listed {
		w.hashListed(parent, p)
		return
	}
	switch w.hashAt(parent.fd, nameOf(parent.path, p.e.Path), &p.e, p.dev, p.ino) {
	case opened, failed:
		w.record(&p.e)
	case swapped:
		w.swapped(parent, p)
	}
}

// hashListed is the fast path for a regular file to hash: the listing said
// it is a regular file (d_type) with inode d_ino, so it is opened right away
// (O_NOFOLLOW|O_NONBLOCK, as always) and the fstat of the open file, which
// has lstat semantics since nothing was followed, gives its attributes and
// checks that it is the regular file and inode that was listed. That saves
// the fstatat, a tenth of the cost of a small file. Anything unexpected
// (not there, not a regular file, another inode as for a bind-mounted file,
// no permission) goes the careful way: lstat, open, compare.
func (w *worker) hashListed(parent *dirHandle, p *pending) {
	name := nameOf(parent.path, p.e.Path)
	if w.cfg.beforeOpen != nil {
		w.cfg.beforeOpen(p.e.Path)
	}
	fd, err := w.openFile(parent.fd, name)
	if err == unix.ENOENT {
		return
	}
	if err != nil {
		w.child(parent, p.e.Path, p.e.Attrs, inline)
		return
	}
	var st unix.Stat_t
	if fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != p.ino {
		unix.Close(fd)
		w.child(parent, p.e.Path, p.e.Attrs, inline)
		return
	}
	out := w.hashOpen(fd, &p.e, &st)
	unix.Close(fd)
	if out == opened {
		w.record(&p.e)
	}
}

// merge puts every worker's entries in one slice in attr.ComparePaths order,
// dropping duplicates (a name renamed back and forth during listing may be
// listed twice), and sums the stats and warnings.
//
// The order is a depth-first walk with each directory's children sorted by
// name, so it is built that way: bucket the entries by parent directory, sort
// each bucket by name (short comparisons), walk from "/". That is several
// times cheaper than sorting 100,000 full paths.
func merge(ws []*worker) *Result {
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
		res.Warnings = append(res.Warnings, w.warnings...)
		res.Stats.Dirs += w.stats.Dirs
		res.Stats.Hashed += w.stats.Hashed
		res.Stats.Reused += w.stats.Reused
		res.Stats.HashedBytes += w.stats.HashedBytes
	}
	all := func(yield func(*rec) bool) {
		for _, w := range ws {
			for _, c := range w.chunks {
				for i := range c {
					if !yield(&c[i]) {
						return
					}
				}
			}
		}
	}
	res.Entries = make([]attr.Entry, 0, total)
	if !mergeTree(res, all, total) {
		// Entries without their parent directory (only possible when the
		// tree changed under the scan): fall back to sorting full paths.
		res.Entries = res.Entries[:0]
		mergeSort(res, all, total)
	}
	for _, w := range ws {
		w.chunks = nil
	}
	res.Stats.Entries = int64(len(res.Entries))
	slices.SortFunc(res.Warnings, func(a, b Warning) int { return comparePaths(a.Path, b.Path) })
	return res
}

// parentOf splits a path into its parent directory and name.
func parentOf(path string) (string, string) {
	i := strings.LastIndexByte(path, '/')
	if i == 0 {
		return "/", path[1:]
	}
	return path[:i], path[i+1:]
}

type mergeChild struct {
	name string
	e    *rec
}

// mergeTree appends the entries to res in depth-first order; false when some
// entry's parent was not reached.
func mergeTree(res *Result, all func(func(*rec) bool), total int) bool {
	// Counting sort of the entries into one array, by parent.
	index := map[string]int{}
	var count []int
	var root *rec
	roots := 0
	for e := range all {
		if e.path == "/" {
			root = e
			roots++
			continue
		}
		dir, _ := parentOf(e.path)
		i, ok := index[dir]
		if !ok {
			i = len(count)
			index[dir] = i
			count = append(count, 0)
		}
		count[i]++
	}
	if roots != 1 {
		return roots == 0 && total == 0
	}
	start := make([]int, len(count)+1)
	for i, n := range count {
		start[i+1] = start[i] + n
	}
	kids := make([]mergeChild, total-1)
	fill := slices.Clone(start[:len(count)])
	for e := range all {
		if e.path == "/" {
			continue
		}
		dir, name := parentOf(e.path)
		i := index[dir]
		kids[fill[i]] = mergeChild{name, e}
		fill[i]++
	}
	bucket := func(dir string) []mergeChild {
		i, ok := index[dir]
		if !ok {
			return nil
		}
		b := kids[start[i]:start[i+1]]
		slices.SortFunc(b, func(a, b mergeChild) int { return strings.Compare(a.name, b.name) })
		return b
	}

	res.Entries = append(res.Entries, root.entry())
	seen := 1
	type frame struct {
		kids []mergeChild
		i    int
	}
	stack := []frame{{kids: bucket("/")}}
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.i == len(f.kids) {
			stack = stack[:len(stack)-1]
			continue
		}
		k := f.kids[f.i]
		f.i++
		seen++
		if f.i > 1 && k.name == f.kids[f.i-2].name {
			duplicate(res, k.e)
			continue
		}
		res.Entries = append(res.Entries, k.e.entry())
		if k.e.typ == attr.TypeDir {
			if b := bucket(k.e.path); len(b) > 0 {
				stack = append(stack, frame{kids: b})
			}
		}
	}
	return seen == total
}

// mergeSort appends the entries to res sorted by full path.
func mergeSort(res *Result, all func(func(*rec) bool), total int) {
	es := make([]*rec, 0, total)
	for e := range all {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *rec) int { return comparePaths(a.path, b.path) })
	for i, e := range es {
		if i > 0 && e.path == es[i-1].path {
			duplicate(res, e)
			continue
		}
		res.Entries = append(res.Entries, e.entry())
	}
}

func duplicate(res *Result, e *rec) {
	res.Warnings = append(res.Warnings, Warning{Path: e.path, Op: "duplicate", Err: errors.New("listed twice (renamed during the scan), kept once")})
	if e.typ == attr.TypeDir {
		res.Stats.Dirs--
	}
}
