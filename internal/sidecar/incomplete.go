package sidecar

import (
	"fmt"
	"strings"
	"sync"

	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/scan"
)

// Log keys of an incomplete check.
const (
	keyType     = "type"
	keyWarnings = "warnings"
)

// maxEventPaths bounds the paths an incomplete check's Event names; the
// log names watch.MaxWarningSample and the count says how many there were.
const maxEventPaths = 3

// incompleteChecks remembers, per kind of whole-tree check, how many paths
// the last one could not compare, between Sink.Incomplete and Sink.Scanned.
type incompleteChecks struct {
	mu sync.Mutex
	n  map[metrics.ScanType]int
}

func (c *incompleteChecks) set(kind metrics.ScanType, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[metrics.ScanType]int{}
	}
	c.n[kind] = n
}

func (c *incompleteChecks) get(kind metrics.ScanType) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[kind]
}

// Incomplete applies the rule for a whole-tree check that could not compare
// every path (docs/sidecar.md, "Incomplete checks"): as the CLI's exit 8,
// it is never silent. It is logged with the first paths and why, counted
// (podfim_scans_total{result="incomplete"}, podfim_check_incomplete_paths)
// and posted as a Warning Event; it does not advance the last full check's
// time, and the monitor keeps the open violations of those paths open. It
// is no finding: the paths it names are the app's to make unreadable, and
// what they hide is what the baseline could not record either.
func (k *sink) Incomplete(kind metrics.ScanType, n int, sample []scan.Warning) {
	k.incomplete.set(kind, n)
	k.s.metrics.SetIncomplete(kind, n)
	if n == 0 {
		return
	}
	ws := make([]string, len(sample))
	for i, w := range sample {
		ws[i] = w.Error() // quoted paths (scan.Warning.Error uses %q)
	}
	k.s.log.Warn("check incomplete: some paths could not be compared", keyType, kind, keyCount, n, keyWarnings, ws)
	paths := make([]string, 0, maxEventPaths)
	for _, w := range sample[:min(len(sample), maxEventPaths)] {
		paths = append(paths, fmt.Sprintf("%q", w.Path))
	}
	more := ""
	if n > len(paths) {
		more = fmt.Sprintf(" and %d more", n-len(paths))
	}
	k.s.event(eventWarning, kube.ReasonCheckIncomplete, fmt.Sprintf("%s check could not compare %d path(s): %s%s (see the sidecar's log)",
		kind, n, strings.Join(paths, ", "), more))
}
