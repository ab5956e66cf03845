package watch

import (
	"context"
	"sync"
	"time"

	"github.com/podfim/podfim/internal/metrics"
)

// maxTouched bounds the paths remembered as checked one by one while a
// whole-tree check runs (see touch). Beyond it, that check resolves
// nothing: the next check does.
const maxTouched = 1 << 16

// checkQueue holds the one whole-tree check waiting to run. Whole-tree
// checks run in their own goroutine, one at a time, so that event checks
// never wait for them (issue 11 item 3): a check of 300,000 files takes
// minutes, and a rewrite of /www/index.html must be answered in
// milliseconds meanwhile. Requests made while one runs merge into one:
// full wins over quick, and the earliest detection time is kept.
type checkQueue struct {
	mu       sync.Mutex
	pending  bool
	kind     metrics.ScanType
	detected time.Time
	wake     chan struct{}
}

func newCheckQueue() *checkQueue { return &checkQueue{wake: make(chan struct{}, 1)} }

// want asks for a whole-tree check of kind, detected at detected.
func (q *checkQueue) want(kind metrics.ScanType, detected time.Time) {
	q.mu.Lock()
	if !q.pending {
		q.pending, q.kind, q.detected = true, kind, detected
	} else {
		if kind == metrics.ScanFull {
			q.kind = metrics.ScanFull
		}
		if detected.Before(q.detected) {
			q.detected = detected
		}
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *checkQueue) take() (metrics.ScanType, time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.pending {
		return "", time.Time{}, false
	}
	q.pending = false
	return q.kind, q.detected, true
}

// runChecks runs the whole-tree checks asked for until ctx ends; a check
// that fails (the root is gone) is sent on errc. first is closed once the
// first check has completed.
func (m *Monitor) runChecks(ctx context.Context, errc chan<- error, first chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.checks.wake:
		}
		kind, detected, ok := m.checks.take()
		if !ok {
			continue
		}
		if err := m.rescan(ctx, kind, detected); err != nil {
			if ctx.Err() == nil {
				select {
				case errc <- err:
				default:
				}
			}
			return
		}
		if first != nil {
			close(first)
			first = nil
		}
	}
}

// beginCheck and endCheck bracket the comparison of a whole-tree check:
// paths checked one by one in between (touch) are newer than what the
// check's scan saw of them.
func (m *Monitor) beginCheck() {
	m.mu.Lock()
	m.touched, m.touchedOver = map[string]bool{}, false
	m.mu.Unlock()
}

func (m *Monitor) endCheck() {
	m.mu.Lock()
	m.touched, m.touchedOver = nil, false
	m.mu.Unlock()
}

// touch records that p was checked alone (an event, the slow lane, a
// re-verification) while a whole-tree check runs: what that check's scan
// saw of p may be older, so it neither reports nor resolves p.
func (m *Monitor) touch(p string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.touched == nil:
	case len(m.touched) < maxTouched:
		m.touched[p] = true
	default:
		m.touchedOver = true
	}
}

// newer reports whether p was checked alone since the running whole-tree
// check began; resolvable whether that check may resolve p (not when it
// lost track of the paths checked alone).
func (m *Monitor) newer(p string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.touched[p]
}

func (m *Monitor) resolvable(p string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.touched[p] && !m.touchedOver
}
