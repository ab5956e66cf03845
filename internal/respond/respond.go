// Package respond owns what podfim does about a finding: log it, count it,
// take the pod out of service, restore the file, kill the app container
// (bounded, with escalation when killing does not help), notify a webhook,
// and through the Kubernetes API post Events, quarantine or delete the pod.
// It decides and acts, and keeps the one ledger of open violations that
// readiness, the quarantine and the caller's whole-tree checks read (see
// ledger); finding changes and re-verifying after a response are the
// caller's.
package respond

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/metrics"
)

// Target is the app container that kill and restore act on.
type Target interface {
	// Kill sends SIGKILL to every process of the app container, so that the
	// kubelet starts a fresh container from the image.
	Kill() error
	// Root returns the writer restore uses, confined to the container's root.
	Root() RootWriter
}

// RootWriter writes a file of the target back to its baseline state. The
// sidecar implements it over a directory handle on the target's root
// (openat2 with RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS, or os.Root); the
// target is hostile, so an implementation must keep this contract:
//
//   - path is relative to the target root (it starts with "/") and may be
//     any bytes. No component of it, the last included, is ever followed as
//     a symlink: a symlink anywhere on the way is an error, never an escape.
//     Missing parent directories are an error, not created.
//   - The file is replaced atomically: content is written to a new file in
//     the same directory, fsynced, then renamed over path, so no reader sees
//     a half-written file and an attacker's open descriptor keeps the old
//     inode. Whatever is at path (a directory, a FIFO) is replaced only if it
//     is not a directory.
//   - Owner, mode and extended attributes are those of want, set on the
//     descriptor of the new file before the rename, owner before mode
//     (chown clears setuid and setgid), and only those want.Attrs holds.
//     When want.Attrs holds xattrs, the new file gets exactly want.Xattrs.
//     mtime is set to want.Mtime when collected.
//
// The inode and ctime of a restored file cannot match the baseline: the
// caller's re-verification must not count them against a restored path.
type RootWriter interface {
	Restore(path string, want *attr.Entry, content []byte) error
}

// Kube is the Kubernetes API side of the responses (*kube.Reporter). Its
// methods must not block: they hand the work to a background worker.
type Kube interface {
	// Event posts an Event (type "Normal" or "Warning") on the pod.
	Event(eventType, reason, message string)
	// SetQuarantine labels (on) or unlabels the pod; reason is annotated.
	SetQuarantine(on bool, reason string)
	// Delete asks for the pod to be deleted, or says why it may not be:
	// no controller, younger than minAge, already asked.
	Delete(minAge time.Duration) error
}

// killHoldoff is how long after a kill further kill actions are coalesced
// into it when the restart of the container is not reported with
// TargetChanged(true): every finding of one scan asks for a kill, and one kill
// per restart is what the limit counts.
const killHoldoff = 30 * time.Second

// Responder runs a Plan for each finding. It is safe for concurrent use.
type Responder struct {
	plan   Plan
	log    *slog.Logger
	m      *metrics.Sidecar
	target Target
	clock  func() time.Time
	hook   *webhook // nil when the plan has no webhook
	kube   Kube     // nil without API access

	mu          sync.Mutex
	ledger      ledger      // the open violations
	kills       []time.Time // kills within the window, oldest first
	killPending bool        // killed; the restart has not been reported
	lastKill    time.Time
	escalating  bool      // the kill limit is reached; logged once per episode
	quarantined time.Time // when the quarantine began; zero: not quarantined
	// deleteRefused: the delete guard refused in this episode; said once.
	deleteRefused bool
	deleting      *pending // the finding of the last delete requested; see DeleteFailed
	onChange      func()   // see OnChange
}

// New returns a responder for p, which should have passed Validate; zero
// fields of p take their defaults. m, t and k may be nil when the plan
// needs no metrics, target or Kubernetes API (the actions
// that would need them then fail, and the others go on); log nil discards,
// clock nil is time.Now. A plan with a webhook starts a background sender:
// Close stops it.
func New(p Plan, log *slog.Logger, m *metrics.Sidecar, t Target, k Kube, clock func() time.Time) *Responder {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	p = p.withDefaults()
	r := &Responder{
		plan: p, log: log, m: m, target: t, kube: k, clock: clock,
	}
	if p.Webhook != nil && p.Uses(ActionWebhook) {
		r.hook = newWebhook(*p.Webhook, log, m)
	}
	return r
}

// eventTimeKey is the context key of WithEventTime.
type eventTimeKey struct{}

// WithEventTime returns a context that carries the time of the event
// (inotify event, scan start) that revealed the finding, so that Handle
// records podfim_response_latency_seconds.
func WithEventTime(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, eventTimeKey{}, t)
}

// Handle responds to one finding: it opens a violation at f.Path and runs
// the plan's actions in order. content is the file's original bytes when
// the caller kept them (nil otherwise; an empty slice for an empty file)
// and is used by restore only. The webhook is sent in the background; the
// other actions are done when Handle returns, and their errors are joined
// into its error. After a restore the caller re-verifies the path and calls
// Resolved when it is clean.
func (r *Responder) Handle(ctx context.Context, f compare.Finding, content []byte) error {
	r.m.SetViolationsOpen(r.openViolation(f))

	var errs []error
	for _, a := range r.plan.Actions {
		if err := r.run(ctx, a, f, content); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", a, f.Path, err))
		}
	}
	if t, ok := ctx.Value(eventTimeKey{}).(time.Time); ok {
		r.m.ObserveResponseLatency(r.clock().Sub(t))
	}
	return errors.Join(errs...)
}

// Close stops the background webhook sender. It delivers what is queued
// until ctx ends, then abandons the rest (counted as errors) and returns
// ctx's error. Findings handled after Close are not sent.
func (r *Responder) Close(ctx context.Context) error {
	if r.hook == nil {
		return nil
	}
	return r.hook.close(ctx)
}

// run runs one action and counts its result.
func (r *Responder) run(ctx context.Context, a Action, f compare.Finding, content []byte) error {
	var (
		res = metrics.ResultOK
		err error
	)
	switch a {
	case ActionLog:
		r.logFinding(ctx, f)
	case ActionMetric:
		if r.m == nil {
			res, err = metrics.ResultError, errors.New("no metrics")
		} else {
			r.m.Finding(f.Kind, f.Origin.Kind)
		}
	case ActionUnready:
		r.holdUnready(f.Path)
	case ActionRestore:
		res, err = r.restore(ctx, f, content)
	case ActionKill:
		// kill counts its own results and runs the escalation.
		return r.kill(ctx, f, content)
	case ActionEvent:
		if r.kube == nil {
			res, err = metrics.ResultSkipped, nil // no API access: logged once at start
			break
		}
		r.kube.Event(corev1EventWarning, findingReason(f.Kind), findingMessage(f)+evidenceMessage(evidenceOf(ctx)))
	case ActionQuarantine:
		res, err = r.quarantine(f)
	case ActionDelete:
		// delete counts its own results and runs the escalation.
		return r.deletePod(ctx, f, content)
	case ActionWebhook:
		if r.hook == nil {
			res, err = metrics.ResultError, errors.New("no webhook configured")
			break
		}
		// The sender counts the result once delivery is over.
		p := NewPayload(f, r.clock())
		p.Evidence = evidencePayload(evidenceOf(ctx))
		r.hook.enqueue(ctx, p)
		return nil
	default:
		return fmt.Errorf("unknown action %q", a)
	}
	r.m.Action(a, res)
	if err != nil {
		r.logPath(ctx, slog.LevelError, msgActionFailed, f.Path,
			actionAttr(a), resultAttr(res), slog.String(keyError, err.Error()))
	}
	return err
}
