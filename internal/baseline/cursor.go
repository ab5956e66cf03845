package baseline

import (
	"errors"
	"io"
	"sync"

	"github.com/podfim/podfim/internal/attr"
)

// Fork returns a second Reader of the same file, from its first entry:
// a Reader of its own, reading the file independently (and checking the
// digest at its own end), for a caller that reads the baseline twice at
// once. Only a Reader from OpenFile that is not closed can fork; the fork
// does not close the file: the Reader it came from does.
func (r *Reader) Fork() (*Reader, error) {
	fs, ok := r.src.(*fileSource)
	if !ok {
		return nil, errors.New("baseline: Fork needs a Reader from OpenFile that is not closed")
	}
	f := *r
	f.src = &fileSource{f: fs.f, off: fs.off, n: fs.n, want: fs.want}
	f.body, f.closer, f.err = nil, nil, nil
	if err := f.start(); err != nil {
		return nil, err
	}
	return &f, nil
}

// QuickCursor answers what a quick check asks of a baseline (see
// QuickIndex) from a Reader it reads once, as the questions come: in path
// order, as a scan that walks in that order asks them. It holds one
// decoded group of the baseline, not an index of it. A question about a
// path the cursor has passed (asked out of order) gets nil: that file is
// hashed. It is safe for concurrent use.
//
// The hashes it gives come from a file whose digest is checked at its end
// only: Finish reads to the end, and a caller must not act on the scan
// unless Finish returns nil.
type QuickCursor struct {
	mu      sync.Mutex
	r       *Reader
	e       *attr.Entry // the entry the cursor is at; nil at the end
	started bool
	err     error
	slab    []byte // the hashes given out
}

// NewQuickCursor returns a cursor over the entries r has not returned yet.
func NewQuickCursor(r *Reader) *QuickCursor { return &QuickCursor{r: r} }

// Ordered says that questions must come in path order (see scan.QuickHashes).
func (c *QuickCursor) Ordered() bool { return true }

// next moves to the next entry.
func (c *QuickCursor) next() {
	c.started = true
	e, err := c.r.Next()
	if err != nil {
		c.e = nil
		if err != io.EOF {
			c.err = err
		}
		return
	}
	c.e = e
}

// Unchanged returns the hash the baseline recorded for path when it
// recorded a regular file, not racy, hashed with alg, with this inode,
// size, mtime and ctime; nil otherwise, and for a path asked out of order.
// The bytes are never overwritten.
func (c *QuickCursor) Unchanged(path string, alg attr.Set, ino uint64, size, mtime, ctime int64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		c.next()
	}
	for c.e != nil && attr.ComparePaths(c.e.Path, path) < 0 {
		c.next()
	}
	e := c.e
	if e == nil || e.Path != path || e.Racy || e.Type != attr.TypeRegular || len(e.Hash) == 0 ||
		!e.Attrs.Has(quickNeed) || e.HashAlg() != alg || e.Inode != ino || e.Size != size ||
		e.Mtime != mtime || e.Ctime != ctime {
		return nil
	}
	if cap(c.slab)-len(c.slab) < len(e.Hash) {
		c.slab = make([]byte, 0, 32<<10)
	}
	start := len(c.slab)
	c.slab = append(c.slab, e.Hash...)
	return c.slab[start:len(c.slab):len(c.slab)]
}

// Finish reads the rest of the baseline, which checks its digest, and
// returns the first error of any read.
func (c *QuickCursor) Finish() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		c.next()
	}
	for c.e != nil {
		c.next()
	}
	return c.err
}
