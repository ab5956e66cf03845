// Command floor is the floor row of scripts/bench.sh: the least work any tool
// must do for a full check of a tree, to measure podfim against the machine
// rather than against another tool. It walks the tree with getdents, lstats
// every entry (fstatat relative to its directory), and opens, reads and
// SHA-256es every regular file, then closes it; one worker per core, and
// nothing else: no xattrs, no output but one summary line on stderr, no
// database, no checks that a file did not change while it was read.
//
// Work is shared the way a fast tool would share it: a directory is one
// task (list and lstat), its regular files are handed out in batches of up
// to 64 files or 4 MiB, so that twenty big files in one directory are hashed
// by every worker. Files are opened relative to their directory's descriptor
// (no path walk per file) and read with a 256 KiB buffer until EOF.
//
//	floor [-workers N] DIR
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

const (
	bufSize    = 256 << 10
	batchFiles = 64
	batchBytes = 4 << 20
)

// dir is an open directory shared by the tasks that use its descriptor.
type dir struct {
	fd   int
	refs atomic.Int32
}

func (d *dir) release() {
	if d.refs.Add(-1) == 0 {
		unix.Close(d.fd)
	}
}

// task is a directory to list (parent, name) or a batch of files in d.
type task struct {
	parent *dir
	name   string
	d      *dir
	files  []string
}

type queue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	tasks   []task
	pending int // tasks queued or running
}

func (q *queue) push(t task) {
	q.mu.Lock()
	q.tasks = append(q.tasks, t)
	q.pending++
	q.mu.Unlock()
	q.cond.Signal()
}

// pop returns the next task, or false when every task is done.
func (q *queue) pop() (task, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.tasks) == 0 {
		if q.pending == 0 {
			return task{}, false
		}
		q.cond.Wait()
	}
	t := q.tasks[len(q.tasks)-1]
	q.tasks = q.tasks[:len(q.tasks)-1]
	return t, true
}

func (q *queue) done() {
	q.mu.Lock()
	q.pending--
	last := q.pending == 0
	q.mu.Unlock()
	if last {
		q.cond.Broadcast()
	}
}

type worker struct {
	q      *queue
	buf    []byte
	dirent []byte
	st     unix.Stat_t
	files  int64
	bytes  int64
	errs   int64
}

func main() {
	workers := flag.Int("workers", runtime.NumCPU(), "workers (default: one per core)")
	flag.Parse()
	if flag.NArg() != 1 || *workers < 1 {
		fmt.Fprintln(os.Stderr, "usage: floor [-workers N] DIR")
		os.Exit(2)
	}
	t, err := floor(flag.Arg(0), *workers)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "floor: %d files, %d bytes hashed, %d errors, %d workers\n", t.files, t.bytes, t.errs, *workers)
	if t.errs > 0 {
		os.Exit(1)
	}
}

// totals is what a run did: regular files and bytes hashed, and the
// entries that could not be listed, lstatted, opened or read.
type totals struct {
	files, bytes, errs int64
}

// floor does the floor's work on the tree at root with workers workers.
func floor(root string, workers int) (totals, error) {
	rootfd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return totals{}, fmt.Errorf("failed to open %q: %w", root, err)
	}
	q := &queue{}
	q.cond = sync.NewCond(&q.mu)
	d := &dir{fd: rootfd}
	d.refs.Store(1)
	q.push(task{d: d}) // a task with a dir and no files: list it
	ws := make([]*worker, workers)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = &worker{q: q, buf: make([]byte, bufSize), dirent: make([]byte, 32<<10)}
		wg.Add(1)
		go func(w *worker) { defer wg.Done(); w.run() }(ws[i])
	}
	wg.Wait()
	var t totals
	for _, w := range ws {
		t.files, t.bytes, t.errs = t.files+w.files, t.bytes+w.bytes, t.errs+w.errs
	}
	return t, nil
}

func (w *worker) run() {
	for {
		t, ok := w.q.pop()
		if !ok {
			return
		}
		switch {
		case t.files != nil:
			for _, name := range t.files {
				w.hash(t.d.fd, name)
			}
			t.d.release()
		case t.parent != nil:
			fd, err := unix.Openat(t.parent.fd, t.name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			t.parent.release()
			if err != nil {
				w.errs++
				break
			}
			d := &dir{fd: fd}
			d.refs.Store(1)
			w.list(d)
		default:
			w.list(t.d)
		}
		w.q.done()
	}
}

// list reads d with getdents, lstats every entry, queues its directories
// and batches of its regular files, and drops its own reference to d.
func (w *worker) list(d *dir) {
	defer d.release()
	var batch []string
	var size int64
	flush := func() {
		if len(batch) > 0 {
			d.refs.Add(1)
			w.q.push(task{d: d, files: batch})
		}
		batch, size = nil, 0
	}
	for {
		n, err := unix.Getdents(d.fd, w.dirent)
		if err != nil {
			w.errs++
			return
		}
		if n <= 0 {
			break
		}
		for buf := w.dirent[:n]; len(buf) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(buf[16:]))
			name := buf[19:reclen]
			buf = buf[reclen:]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if string(name) == "." || string(name) == ".." {
				continue
			}
			s := string(name)
			if err := unix.Fstatat(d.fd, s, &w.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				w.errs++
				continue
			}
			switch w.st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				d.refs.Add(1)
				w.q.push(task{parent: d, name: s})
			case unix.S_IFREG:
				batch = append(batch, s)
				size += w.st.Size
				if len(batch) >= batchFiles || size >= batchBytes {
					flush()
				}
			}
		}
	}
	flush()
}

// hash opens, reads to EOF, SHA-256es and closes one regular file.
func (w *worker) hash(dirfd int, name string) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		w.errs++
		return
	}
	defer unix.Close(fd)
	h := sha256.New()
	for {
		n, err := unix.Read(fd, w.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			w.errs++
			return
		}
		if n == 0 {
			break
		}
		h.Write(w.buf[:n])
		w.bytes += int64(n)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	w.files++
}
