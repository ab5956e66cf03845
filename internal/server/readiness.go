package server

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"
)

// maxReasons bounds the reasons Ready lists, so that a tampered tree with
// thousands of modified files cannot turn /readyz into a large response.
const maxReasons = 50

// Readiness decides whether the pod may receive traffic: only once the first
// full verification of the target has completed, and only while no
// integrity violation is open. It is safe for concurrent use; the zero value
// is not started and has no violations.
type Readiness struct {
	mu      sync.Mutex
	started bool
	open    map[string]struct{}
}

// SetViolation opens (open true) or closes the violation named key,
// typically a path of the target. Opening an open violation or closing a
// closed one does nothing.
func (r *Readiness) SetViolation(key string, open bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !open {
		delete(r.open, key)
		return
	}
	if r.open == nil {
		r.open = make(map[string]struct{})
	}
	r.open[key] = struct{}{}
}

// SetStarted records whether the first full verification of the target has
// completed. Until it has, the pod is not ready: serving an unverified
// container would defeat the check at startup (NIST SI-7).
func (r *Readiness) SetStarted(started bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = started
}

// Violations returns the number of open violations.
func (r *Readiness) Violations() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.open)
}

// Ready reports whether the pod is ready and, when it is not, why: one
// human-readable reason per line of /readyz, violations in key order, at most
// maxReasons of them followed by a count of the rest. Keys that are not
// printable UTF-8 are Go-quoted so that a hostile file name cannot forge
// lines.
func (r *Readiness) Ready() (bool, []string) {
	r.mu.Lock()
	started := r.started
	keys := make([]string, 0, len(r.open))
	for k := range r.open {
		keys = append(keys, k)
	}
	r.mu.Unlock()

	var reasons []string
	if !started {
		reasons = append(reasons, "not started: the first full verification of the target has not completed")
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i == maxReasons {
			reasons = append(reasons, fmt.Sprintf("and %d more integrity violations", len(keys)-maxReasons))
			break
		}
		reasons = append(reasons, "integrity violation: "+quote(k))
	}
	return len(reasons) == 0, reasons
}

// quote returns s as is when it is printable UTF-8, and Go-quoted otherwise.
func quote(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, c := range s {
		if !strconv.IsPrint(c) || c == '"' || c == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}
