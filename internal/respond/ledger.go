package respond

import (
	"fmt"
	"slices"
	"time"

	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
)

// ledger is the one record of the target's open violations. The responder
// owns it because it decides on them: a violation opens with the finding
// that the responder handles and closes when the caller (the monitor)
// reports its path clean. Everything else is a view of it: /readyz
// (Readiness), podfim_violations_open, the quarantine label and its
// annotation, and the paths a whole-tree check must find again (Open).
//
// It outlives the monitor of one container. When the target changes
// (TargetChanged), nothing is verified any more and the open violations
// wait for the new container's first full check, which resolves those it
// does not find again: that is the caller's general rule (a whole-tree
// check resolves every open path it no longer finds, see watch), applied to
// what Open returns.
//
// Bound: one entry per open path, and the monitor passes on at most
// watch.Config.MaxFindings violations (a tree the app fills with 300,000
// files opens that many, not 300,000); the findings it leaves out are
// counted in omitted (Omitted), which holds the pod out of service like an
// open violation until a whole-tree check leaves none out (issue 11).
//
// The fields are guarded by the Responder's mu.
type ledger struct {
	open map[string]*violation
	// verified: the first full check of the current container completed.
	verified bool
	// omitted: findings the monitor left out at its bound (Omitted).
	omitted int
	// omittedLogged: when that was last logged (at most once a minute).
	omittedLogged time.Time
}

// violation is one open violation.
type violation struct {
	// unready: the unready action ran for it, so it holds /readyz down.
	unready bool
}

// add opens the violation at path (or finds it open) and returns it.
func (l *ledger) add(path string) *violation {
	if v, ok := l.open[path]; ok {
		return v
	}
	if l.open == nil {
		l.open = make(map[string]*violation)
	}
	v := &violation{}
	l.open[path] = v
	return v
}

// paths returns the open paths, in no order: callers sort them once they
// have let go of the lock.
func (l *ledger) paths() []string {
	ps := make([]string, 0, len(l.open))
	for p := range l.open {
		ps = append(ps, p)
	}
	return ps
}

// Open returns the paths with an open violation, sorted: a whole-tree check
// of the target resolves those it does not find again.
func (r *Responder) Open() []string {
	r.mu.Lock()
	ps := r.ledger.paths()
	r.mu.Unlock()
	slices.Sort(ps)
	return ps
}

// Resolved closes the violation at path: it was restored and verified, or
// a check found it clean (in a new container, say). Nothing happens when no
// violation is open at path. Readiness returns once no violation is open
// and the target is verified.
func (r *Responder) Resolved(path string) {
	r.mu.Lock()
	if _, ok := r.ledger.open[path]; !ok {
		r.mu.Unlock()
		return
	}
	delete(r.ledger.open, path)
	defer r.changed()
	n := len(r.ledger.open)
	release := n == 0 && !r.quarantined.IsZero()
	if release {
		r.quarantined = time.Time{}
	}
	if n == 0 {
		r.deleteRefused = false
	}
	r.mu.Unlock()
	r.m.SetViolationsOpen(n)
	r.event(corev1EventNormal, kube.ReasonViolationResolved, fmt.Sprintf("%s is clean again; %d violations open", path, n))
	if release && r.kube != nil {
		r.kube.SetQuarantine(false, "")
		r.event(corev1EventNormal, kube.ReasonPodReleased, "no integrity violation is open: quarantine label removed")
	}
}

// TargetChanged tells the responder that the app container changed: found,
// lost, or (restarted true) started again. Nothing is verified until the
// next container's first full check (Verified); the open violations stay
// open until a check resolves them. After a restart the next kill action
// is a new kill, counted against the limit, instead of being coalesced into
// the last one.
func (r *Responder) TargetChanged(restarted bool) {
	defer r.changed()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ledger.verified = false
	if restarted {
		r.killPending = false
	}
}

// Verified records that a full check of the current container completed:
// the pod may be ready again once no violation holds it unready.
func (r *Responder) Verified() {
	defer r.changed()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ledger.verified = true
}

// Readiness is the view of the ledger that /readyz serves: whether the
// current container's first full check completed, and the open violations
// the unready action holds the pod out of service for: at most max of them
// in path order, and how many there are.
func (r *Responder) Readiness(max int) (verified bool, unready []string, total int) {
	r.mu.Lock()
	verified = r.ledger.verified
	for p, v := range r.ledger.open {
		if v.unready {
			unready = append(unready, p)
		}
	}
	omitted := 0
	if r.plan.Uses(ActionUnready) {
		// Left out, not resolved: they hold the pod down as the ones held do.
		omitted = r.ledger.omitted
	}
	r.mu.Unlock()
	// Sorted outside the lock: a probe every few seconds must not hold up
	// the responder for the length of a sort.
	slices.Sort(unready)
	return verified, unready[:min(len(unready), max)], len(unready) + omitted
}

// Omitted records findings the monitor did not pass on because it holds its
// bound of violations (watch.Config.MaxFindings): after a whole-tree check
// (check true) n replaces the count, after an event check it is added.
// They are counted in podfim_limit_overflows_total{limit="findings"},
// logged at most once a minute, and, with the unready action, hold the pod
// out of service until a whole-tree check leaves none out.
func (r *Responder) Omitted(n int, check bool) {
	defer r.changed()
	r.mu.Lock()
	if check {
		r.ledger.omitted = n
	} else {
		r.ledger.omitted += n
	}
	total := r.ledger.omitted
	now := r.clock()
	logIt := n > 0 && now.Sub(r.ledger.omittedLogged) >= time.Minute
	if logIt {
		r.ledger.omittedLogged = now
	}
	r.mu.Unlock()
	r.m.Overflow(metrics.LimitFindings, n)
	if logIt {
		r.log.Warn(msgOmitted, keyCount, total)
	}
}

// openViolation opens the violation of f and returns the number open.
func (r *Responder) openViolation(f compare.Finding) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ledger.add(f.Path)
	return len(r.ledger.open)
}

// holdUnready is the unready action: the violation at path holds /readyz
// down until it is resolved. A violation resolved meanwhile (an escalation
// that ran late) is not opened again: only Handle opens.
func (r *Responder) holdUnready(path string) {
	defer r.changed()
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.ledger.open[path]; ok {
		v.unready = true
	}
}

// OnChange registers f, called after every change of what Readiness
// reports (a violation held or resolved, the target changed or verified,
// findings left out), without the responder's lock held: the node agent
// turns it into the pod's readiness gate condition. Call it before the
// responder is used.
func (r *Responder) OnChange(f func()) { r.onChange = f }

// changed calls the OnChange function, if any.
func (r *Responder) changed() {
	if r.onChange != nil {
		r.onChange()
	}
}
