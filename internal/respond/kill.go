package respond

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
)

// kill is the kill action. A kill makes the kubelet start a fresh container
// from the image, which is clean unless the tampering lives outside the
// image (a volume) or the runtime restarts the same container (podman). So
// kills are bounded: at most KillLimit within the sliding KillWindow. Once
// the limit is reached, the Escalate actions run instead, until the window
// has room again.
//
// Every finding of a scan asks for a kill, but the container only needs one
// per start: after a kill, further requests are coalesced into it until
// TargetChanged(true) is called (or killHoldoff has passed without it).
func (r *Responder) kill(ctx context.Context, f compare.Finding, content []byte) error {
	r.mu.Lock()
	now := r.clock()
	if r.killPending && now.Sub(r.lastKill) < killHoldoff {
		r.mu.Unlock()
		r.m.Action(ActionKill, metrics.ResultSkipped)
		r.logPath(ctx, slog.LevelDebug, msgActionSkipped, f.Path, actionAttr(ActionKill),
			resultAttr(metrics.ResultSkipped),
			slog.String(keyReason, "the container was already killed and has not restarted yet"))
		return nil
	}
	r.killPending = false
	cutoff := now.Add(-r.plan.KillWindow)
	i := 0
	for i < len(r.kills) && !r.kills[i].After(cutoff) {
		i++
	}
	r.kills = r.kills[i:]

	if len(r.kills) >= r.plan.KillLimit {
		first := !r.escalating
		r.escalating = true
		n := len(r.kills)
		r.mu.Unlock()
		r.m.Action(ActionKill, metrics.ResultSkipped)
		if first {
			r.logPath(ctx, slog.LevelWarn,
				fmt.Sprintf("%s: %d kills in %s; the restarted container is still modified "+
					"(tampered volume or a runtime that reuses the container?); escalating to %v",
					msgKillLimit, n, r.plan.KillWindow, r.plan.Escalate),
				f.Path, actionAttr(ActionKill), resultAttr(metrics.ResultSkipped),
				slog.Int(keyKills, n), slog.Duration(keyWindow, r.plan.KillWindow),
				slog.Any(keyEscalate, r.plan.Escalate))
		}
		if first {
			r.event(corev1EventWarning, kube.ReasonKillLimitReached,
				fmt.Sprintf("%d kills in %s did not help (%s still modified); escalating to %v", n, r.plan.KillWindow, f.Path, r.plan.Escalate))
		}
		return r.escalate(ctx, f, content, ActionKill)
	}

	// Kill under the lock: concurrent findings must not both decide to kill.
	r.escalating = false
	// Attempts count, not only successes: a kill that keeps failing must
	// escalate too.
	r.kills = append(r.kills, now)
	err := r.killTarget()
	if err == nil {
		r.killPending = true
		r.lastKill = now
	}
	n := len(r.kills)
	r.mu.Unlock()

	if err != nil {
		r.m.Action(ActionKill, metrics.ResultError)
		r.logPath(ctx, slog.LevelError, msgActionFailed, f.Path, actionAttr(ActionKill),
			resultAttr(metrics.ResultError), slog.String(keyError, err.Error()))
		return err
	}
	r.m.Action(ActionKill, metrics.ResultOK)
	r.logPath(ctx, slog.LevelWarn, msgKilled, f.Path, actionAttr(ActionKill),
		resultAttr(metrics.ResultOK), slog.Int(keyKills, n), slog.Duration(keyWindow, r.plan.KillWindow))
	r.event(corev1EventWarning, kube.ReasonContainerKilled,
		fmt.Sprintf("killed the app container so that the kubelet starts it afresh from the image (%s; kill %d of at most %d in %s)", f.Path, n, r.plan.KillLimit, r.plan.KillWindow))
	return nil
}

func (r *Responder) killTarget() error {
	if r.target == nil {
		return errors.New("no target")
	}
	if err := r.target.Kill(); err != nil {
		return fmt.Errorf("failed to kill the app container: %w", err)
	}
	return nil
}

// escalate runs the Escalate actions that are not already in Actions,
// instead of the action from (kill, delete), which is never run from here.
func (r *Responder) escalate(ctx context.Context, f compare.Finding, content []byte, from Action) error {
	var errs []error
	for _, a := range r.plan.Escalate {
		if a == ActionKill || a == from || r.plan.has(a) {
			continue
		}
		if err := r.run(ctx, a, f, content); err != nil {
			errs = append(errs, fmt.Errorf("escalation %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}
