package scan

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/podfim/podfim/internal/attr"
)

// The ordered walk emits entries as it goes, in attr.ComparePaths order,
// so that a scan with Options.Emit holds a bounded window of the tree, not
// the tree: one goroutine, the lister, walks depth-first with each
// directory's names sorted, which is that order. It records what needs no
// opening (directories, which it opens and descends itself, symlinks...)
// and hands each regular file to hash to the workers, all through slots in
// walk order, cut into batches: the workers fill a batch's file slots in
// any order, and the calling goroutine emits batches in order as they are
// done. Channels of a few batches bound what is held.
//
// Every object is handled by the same code (openDir, child, hashOne...),
// whichever goroutine calls it; only where its entry goes differs: see
// sink. A file that a worker finds swapped for a directory is walked at
// its place, when the emitter reaches it.

// sink takes what a worker records or hands over in a walk.
type sink interface {
	put(e *attr.Entry)            // a finished entry, the next in order
	job(h *dirHandle, p *pending) // a file of h to open and hash, the next in order
	dir(h *dirHandle, d *pending) // a directory of h to open and walk (h acquired for it)
}

const (
	batchSlots   = 256 // slots of a batch
	orderBatches = 8   // batches handed out and not yet emitted, per worker
)

// slot is one place in the walk order: an entry, or a file to hash
// (parent set until it is done), and after it, perhaps, a directory to walk
// there (a file swapped for a directory under a worker).
type slot struct {
	e         attr.Entry
	has       bool
	parent    *dirHandle
	p         pending
	sub       *pending
	subParent *dirHandle
}

type obatch struct {
	slots []slot
	next  atomic.Int32 // the next slot a worker claims
	left  atomic.Int32 // file slots not done
	refs  atomic.Int32 // the emitter's, and one per hand-out to the workers
	done  chan struct{}
}

// pipe connects the lister, the workers and the emitter.
type pipe struct {
	jobs  chan *obatch // batches with files to hash
	order chan *obatch // every batch, in walk order; closed by the lister
	stop  chan struct{}
	done  <-chan struct{}
	idle  atomic.Int32
	pool  sync.Pool
	cur   *obatch // the lister's
	files int32   // file slots in cur
	left  []*obatch
	mu    sync.Mutex
}

func newPipe(workers int, done <-chan struct{}) *pipe {
	return &pipe{
		jobs:  make(chan *obatch, orderBatches*workers),
		order: make(chan *obatch, orderBatches*workers),
		stop:  make(chan struct{}),
		done:  done,
	}
}

// slot returns the next slot of the lister's batch.
func (p *pipe) slot() *slot {
	if p.cur == nil {
		b, _ := p.pool.Get().(*obatch)
		if b == nil {
			b = &obatch{slots: make([]slot, 0, batchSlots)}
		}
		b.done = make(chan struct{})
		p.cur, p.files = b, 0
	}
	p.cur.slots = append(p.cur.slots, slot{})
	return &p.cur.slots[len(p.cur.slots)-1]
}

// flush hands the lister's batch on, in order.
func (p *pipe) flush() {
	b := p.cur
	if b == nil {
		return
	}
	p.cur = nil
	b.left.Store(p.files)
	b.refs.Store(1)
	if p.files == 0 {
		close(b.done)
	}
	select {
	case p.order <- b:
	case <-p.done:
		p.keep(b)
		return
	}
	if p.files > 0 {
		b.refs.Add(1)
		select {
		case p.jobs <- b:
		case <-p.done:
			// In order already: released from there.
		}
	}
}

// keep puts a batch aside for release after an abort.
func (p *pipe) keep(b *obatch) {
	p.mu.Lock()
	p.left = append(p.left, b)
	p.mu.Unlock()
}

func (p *pipe) unref(b *obatch) {
	if b.refs.Add(-1) == 0 {
		clear(b.slots)
		b.slots = b.slots[:0]
		b.next.Store(0)
		p.pool.Put(b)
	}
}

// release drops the directory references of what was never done, after
// an abort, once every goroutine has returned.
func (p *pipe) release() {
	bs := p.left
	for b := range p.order { // closed by the lister, which has returned
		bs = append(bs, b)
	}
	for len(p.jobs) > 0 {
		bs = append(bs, <-p.jobs)
	}
	for _, b := range bs {
		for i := range b.slots {
			s := &b.slots[i]
			if s.parent != nil {
				s.parent.release()
				s.parent = nil
			}
			if s.subParent != nil {
				s.subParent.release()
				s.subParent = nil
			}
		}
	}
}

// listerSink is the lister's sink: everything goes into slots.
type listerSink struct {
	w *worker
	p *pipe
}

func (l listerSink) put(e *attr.Entry) {
	s := l.p.slot()
	s.e, s.has = *e, true
	l.full()
}

func (l listerSink) job(h *dirHandle, p *pending) {
	h.acquire()
	s := l.p.slot()
	s.parent, s.p = h, *p
	l.p.files++
	l.full()
}

func (l listerSink) dir(h *dirHandle, d *pending) { l.w.openDir(h, d) }

func (l listerSink) full() {
	if len(l.p.cur.slots) == batchSlots {
		l.p.flush()
	}
}

// directSink walks in place and emits at once: the emitter's, for a
// directory found by a worker.
type directSink struct {
	w    *worker
	emit func(*attr.Entry)
}

func (d directSink) put(e *attr.Entry)              { d.emit(e) }
func (d directSink) job(h *dirHandle, p *pending)   { d.w.hashOne(h, p) }
func (d directSink) dir(h *dirHandle, sub *pending) { d.w.openDir(h, sub) }

// slotSink is a worker's while it does the file of one slot.
type slotSink struct {
	w *worker
	s *slot
}

func (s slotSink) put(e *attr.Entry)              { s.s.e, s.s.has = *e, true }
func (s slotSink) job(h *dirHandle, p *pending)   { s.w.hashOne(h, p) }
func (s slotSink) dir(h *dirHandle, sub *pending) { s.s.sub, s.s.subParent = sub, h }

// listSorted lists h whole, sorts the names and handles each in turn.
// Names are kept in one buffer per directory while its subtree is walked.
func (w *worker) listSorted(h *dirHandle, fast bool) {
	type dent struct {
		off, n uint32
		ino    uint64
		dtype  byte
	}
	var names []byte
	var ds []dent
	name := func(d dent) []byte { return names[d.off : d.off+d.n] }
	// The limit stops a huge directory before it is all in memory: past
	// MaxFiles names, those the Matcher does not skip are counted.
	kept := int64(-1)
	count := func(n []byte) {
		if _, skip := w.cfg.match(joinPath(h.path, n)); !skip {
			kept++
		}
	}
	w.readDir(h, func(ino uint64, dtype byte, n []byte) bool {
		if w.aborted() {
			return false
		}
		if lim := w.cfg.maxFiles; lim > 0 && int64(len(ds)) >= lim {
			if kept < 0 {
				kept = 0
				for _, d := range ds {
					count(name(d))
				}
			}
			if count(n); kept > lim {
				w.wk.fail(fmt.Errorf("more than %d entries: %w", lim, ErrLimit))
				return false
			}
		}
		ds = append(ds, dent{off: uint32(len(names)), n: uint32(len(n)), ino: ino, dtype: dtype})
		names = append(names, n...)
		return true
	})
	slices.SortFunc(ds, func(a, b dent) int { return bytes.Compare(name(a), name(b)) })
	for i, d := range ds {
		if i > 0 && bytes.Equal(name(d), name(ds[i-1])) {
			// Renamed during the listing: kept once.
			w.warn(w.joinPath(h.path, name(d)), "duplicate", errors.New("listed twice (renamed during the scan), kept once"))
			continue
		}
		if !w.listed(h, d.ino, d.dtype, name(d), fast) {
			return
		}
	}
}

// runOrdered is a worker of the walk: it hashes the files of the batches
// it is handed.
func (w *worker) runOrdered(p *pipe) {
	for {
		p.idle.Add(1)
		var b *obatch
		select {
		case b = <-p.jobs:
		case <-p.stop:
		case <-p.done:
		}
		p.idle.Add(-1)
		if b == nil {
			return
		}
		w.hashBatch(p, b)
	}
}

// hashBatch does the file slots of b it claims. After a big file, with a
// worker idle, it hands b out again, so that the rest of it is shared.
func (w *worker) hashBatch(p *pipe, b *obatch) {
	defer p.unref(b)
	defer w.publish()
	for {
		i := int(b.next.Add(1)) - 1
		if i >= len(b.slots) {
			return
		}
		s := &b.slots[i]
		if s.parent == nil {
			continue
		}
		before := w.stats.HashedBytes
		if !w.aborted() {
			w.sink = slotSink{w, s}
			w.hashOne(s.parent, &s.p)
			w.sink = nil
		}
		s.parent.release()
		s.parent = nil
		if b.left.Add(-1) == 0 {
			close(b.done)
			return
		}
		if w.stats.HashedBytes-before >= splitBytes && p.idle.Load() > 0 && i+1 < len(b.slots) {
			b.refs.Add(1)
			select {
			case p.jobs <- b:
			default:
				b.refs.Add(-1)
			}
		}
	}
}

// emitOrdered passes the entries to emit in order as their batches are
// done, walking in place the directories workers found; it returns how
// many it emitted.
func (w *worker) emitOrdered(p *pipe, emit func(*attr.Entry)) int64 {
	var n int64
	count := func(e *attr.Entry) {
		emit(e)
		n++
	}
	w.sink = directSink{w, count}
	for b := range p.order {
		select {
		case <-b.done:
		case <-p.done:
			p.keep(b)
			return n
		}
		for i := range b.slots {
			s := &b.slots[i]
			if s.has {
				count(&s.e)
			}
			if s.sub != nil {
				h, d := s.subParent, s.sub
				s.sub, s.subParent = nil, nil
				w.openDir(h, d) // releases h
			}
		}
		p.unref(b)
	}
	return n
}
