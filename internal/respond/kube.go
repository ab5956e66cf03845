package respond

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/report"
)

// Event types (corev1.EventTypeNormal, EventTypeWarning), spelled here so
// that this package needs no client-go import.
const (
	corev1EventNormal  = "Normal"
	corev1EventWarning = "Warning"
)

// errNoKube is the error of quarantine and delete without API access.
var errNoKube = errors.New("no Kubernetes API access (POD_NAMESPACE/POD_NAME unset, or not in a pod)")

// event posts an Event when the plan has the event action and the API is
// reachable; the Reporter behind Kube never blocks.
func (r *Responder) event(eventType, reason, message string) {
	if r.kube == nil || !r.plan.Uses(ActionEvent) {
		return
	}
	r.kube.Event(eventType, reason, message)
}

// findingReason is the Event reason of a finding of kind k.
func findingReason(k compare.Kind) string {
	switch k {
	case compare.Added:
		return kube.ReasonFileAdded
	case compare.Removed:
		return kube.ReasonFileRemoved
	}
	return kube.ReasonFileChanged
}

// findingMessage says what changed, for `kubectl describe pod`. The path
// is the attacker's choice: the Reporter makes the message printable.
func findingMessage(f compare.Finding) string {
	var what string
	switch f.Kind {
	case compare.Added:
		what = fmt.Sprintf("integrity violation: %s was added", f.Path)
	case compare.Removed:
		what = fmt.Sprintf("integrity violation: %s was removed", f.Path)
	default:
		what = fmt.Sprintf("integrity violation: %s changed (%s)", f.Path, strings.Join(f.Attributes, ", "))
	}
	if o := report.OriginText(f.Origin); o != "" {
		what += "; origin: " + o
	}
	return what
}

// quarantine is the quarantine action: the pod is labelled while any
// violation is open, and the annotation lists the open paths.
func (r *Responder) quarantine(f compare.Finding) (metrics.Result, error) {
	if r.kube == nil {
		return metrics.ResultError, errNoKube
	}
	r.mu.Lock()
	first := r.quarantined.IsZero()
	if first {
		r.quarantined = r.clock()
	}
	since := r.quarantined
	paths := r.ledger.paths()
	r.mu.Unlock()
	slices.Sort(paths)
	r.kube.SetQuarantine(true, kube.QuarantineReason(since, paths))
	if first {
		r.event(corev1EventWarning, kube.ReasonPodQuarantined,
			fmt.Sprintf("labelled %s=true until the violation is resolved: %s", kube.LabelQuarantined, f.Path))
	}
	return metrics.ResultOK, nil
}

// deletePod is the delete action: the pod goes, and its controller starts a
// fresh one from the image with a fresh baseline. When the guard refuses
// (no controller, a pod younger than DeleteMinAge: the replacement of a
// pod deleted a moment ago) or there is no API access, the Escalate actions
// run instead, as after the kill limit.
func (r *Responder) deletePod(ctx context.Context, f compare.Finding, content []byte) error {
	err := errNoKube
	if r.kube != nil {
		err = r.kube.Delete(r.plan.DeleteMinAge)
	}
	switch {
	case err == nil:
		r.mu.Lock()
		r.deleting = &pending{f: f, content: content}
		r.mu.Unlock()
		r.m.Action(ActionDelete, metrics.ResultOK)
		r.logPath(ctx, slog.LevelWarn, msgDeleted, f.Path, actionAttr(ActionDelete),
			resultAttr(metrics.ResultOK))
		r.event(corev1EventWarning, kube.ReasonPodDeleted, fmt.Sprintf("deleting the pod so that its controller replaces it: %s", f.Path))
		return nil
	case errors.Is(err, kube.ErrDeleteAgain):
		r.m.Action(ActionDelete, metrics.ResultSkipped)
		return nil
	}
	res := metrics.ResultSkipped
	if errors.Is(err, errNoKube) || errors.Is(err, kube.ErrDeleteRefused) {
		res = metrics.ResultError
	}
	r.m.Action(ActionDelete, res)
	// Said once per episode (until no violation is open), like the kill
	// limit: every finding of a storm is refused for the same reason.
	r.mu.Lock()
	first := !r.deleteRefused
	r.deleteRefused = true
	r.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
		r.event(corev1EventWarning, kube.ReasonDeleteRefused, fmt.Sprintf("not deleting the pod (%v); escalating to %v", err, r.plan.Escalate))
	}
	r.logPath(ctx, level, msgDeleteRefused, f.Path, actionAttr(ActionDelete),
		resultAttr(res), slog.String(keyReason, err.Error()), slog.Any(keyEscalate, r.plan.Escalate))
	return r.escalate(ctx, f, content, ActionDelete)
}

// pending is the finding whose delete action was requested.
type pending struct {
	f       compare.Finding
	content []byte
}

// DeleteFailed is told, by the Kube's worker, that the deletion a delete
// action requested failed (RBAC refused it, the API server did not answer):
// the pod is not going away, so the Escalate actions run for the finding
// that asked, as when the guard refuses.
func (r *Responder) DeleteFailed(err error) {
	r.mu.Lock()
	p := r.deleting
	r.deleting = nil
	open := false
	if p != nil {
		_, open = r.ledger.open[p.f.Path]
	}
	r.mu.Unlock()
	if p == nil {
		return
	}
	ctx := context.Background()
	r.m.Action(ActionDelete, metrics.ResultError)
	r.logPath(ctx, slog.LevelWarn, msgDeleteRefused, p.f.Path, actionAttr(ActionDelete),
		resultAttr(metrics.ResultError), slog.String(keyReason, err.Error()), slog.Any(keyEscalate, r.plan.Escalate))
	if !open {
		// Resolved meanwhile (restored, or a fresh container): an
		// escalation now would hold a closed violation open for good.
		return
	}
	r.event(corev1EventWarning, kube.ReasonDeleteRefused, fmt.Sprintf("the pod's deletion failed (%v); escalating to %v", err, r.plan.Escalate))
	if err := r.escalate(ctx, p.f, p.content, ActionDelete); err != nil {
		r.logPath(ctx, slog.LevelError, msgActionFailed, p.f.Path, actionAttr(ActionDelete), slog.String(keyError, err.Error()))
	}
}
