package scan

import (
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// dirHandle is an open, verified directory, shared by the tasks that still
// need it as a parent and closed when the last one is done.
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
	idle   atomic.Int32 // workers waiting for a task
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
		q.idle.Add(1)
		q.cond.Wait()
		q.idle.Add(-1)
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
