package watch

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/metrics"
)

// DefaultEventHashBytes is Config.EventHashBytes's default: a few
// milliseconds of hashing, more than any page, configuration file or
// binary an event names, far less than a log of gigabytes.
const DefaultEventHashBytes = 16 << 20

// slowLane checks, in the background and one at a time, the paths of
// event batches whose hashing would take more than what is left of the
// batch's budget (Config.EventHashBytes): an event on a 32 GB log must not
// make a rewrite of /www/index.html wait for it (issue 11 item 3). A path
// queued again before its check started is checked once. At most
// Config.MaxEvents paths wait; beyond, the monitor falls back to a rescan.
type slowLane struct {
	mu      sync.Mutex
	pending map[string]slowItem
	order   []string
	wake    chan struct{}
}

type slowItem struct {
	written  bool
	detected time.Time
}

func newSlowLane() *slowLane {
	return &slowLane{pending: map[string]slowItem{}, wake: make(chan struct{}, 1)}
}

// add queues p, and reports false when the lane is full.
func (l *slowLane) add(p string, it slowItem, max int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.pending[p]; ok {
		// Checked once, as the earliest detection, written if any was.
		it.written = it.written || old.written
		it.detected = old.detected
		l.pending[p] = it
		return true
	}
	if len(l.pending) >= max {
		return false
	}
	l.pending[p] = it
	l.order = append(l.order, p)
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return true
}

func (l *slowLane) next() (string, slowItem, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.order) == 0 {
		return "", slowItem{}, false
	}
	p := l.order[0]
	l.order = l.order[1:]
	it := l.pending[p]
	delete(l.pending, p)
	return p, it, true
}

// runSlowLane checks the queued paths until ctx ends; a check that fails
// (the root is gone) is sent on errc.
func (m *Monitor) runSlowLane(ctx context.Context, errc chan<- error) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.slow.wake:
		}
		for {
			p, it, ok := m.slow.next()
			if !ok {
				break
			}
			start := time.Now()
			err := m.checkPath(ctx, p, it.written, it.detected)
			m.sink.Scanned(metrics.ScanEvent, err, time.Since(start), 1)
			if err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
		}
	}
}

// hashCost returns what checking p would hash, after one lstat: nothing
// unless its rule compares a content hash and it is a regular file; for a
// Growing file that grew, the baseline's prefix only (append-only: the
// bytes appended are not compared, scan.Options.Growing); never more than
// MaxFileBytes (a larger file is not hashed).
func (m *Monitor) hashCost(p string) int64 {
	attrs, skip := m.cfg.Matcher.Match(p)
	if skip || !attrs.Any(attr.Hashes) {
		return 0
	}
	e, err := m.root.Entry(p, attr.Type|attr.Size)
	if err != nil || e.Type != attr.TypeRegular {
		return 0
	}
	cost := e.Size
	if attrs.Has(attr.Growing) {
		if old, ok := m.cfg.Baseline.Lookup(p); ok && old.Type == attr.TypeRegular && old.Size < cost {
			cost = old.Size
		}
	}
	if max := m.cfg.Scan.MaxFileBytes; max > 0 && cost > max {
		cost = 0
	}
	return cost
}

// costPath is a path of a batch and its hashCost.
type costPath struct {
	path string
	cost int64
}

// schedule orders the paths of a batch for checking: cheapest first, so
// that small protected files overtake large ones, up to the batch's hash
// budget; the rest go to the slow lane (now returns them when it is full).
func (m *Monitor) schedule(paths map[string]bool, written map[string]bool, detected time.Time) (now []string, full bool) {
	cps := make([]costPath, 0, len(paths))
	for p := range paths {
		cps = append(cps, costPath{p, m.hashCost(p)})
	}
	slices.SortFunc(cps, func(a, b costPath) int {
		return cmp.Or(cmp.Compare(a.cost, b.cost), attr.ComparePaths(a.path, b.path))
	})
	budget := m.cfg.EventHashBytes
	for _, c := range cps {
		if c.cost <= budget {
			budget -= c.cost
			now = append(now, c.path)
			continue
		}
		if !m.slow.add(c.path, slowItem{written: written[c.path], detected: detected}, m.cfg.MaxEvents) {
			full = true
		}
	}
	return now, full
}
