package respond

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/drift"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/target"
)

// ProcessKiller kills one process of the app container (target.Finder's
// KillProcess: by pidfd, checked against the process's start time). A
// Target that implements it lets the kill action kill a drifted process
// before the container.
type ProcessKiller interface {
	KillProcess(p target.Process) (bool, error)
}

// Log keys and messages of execution drift.
const (
	keyPID     = "pid"
	keyPPID    = "ppid"
	keyUID     = "uid"
	keyExe     = "exe"
	keyCmdline = "cmdline"

	msgExecDrift     = "execution drift"
	msgProcessKilled = "drifted process killed"
)

// HandleExec responds to execution drift with the plan's actions: log
// ("execution drift"), metric (podfim_exec_drift_total{reason}), event
// (ExecutionDrift), webhook (kind "exec" with the process), unready,
// quarantine and delete as for a file, whose violation is the drifted
// file's path. kill kills the drifted process first, by pidfd, then the
// container (bounded by the kill limit, with its escalation): the process
// that started it is still in the container, and only a fresh container
// from the image is known clean; the process is killed even when the
// container's kill is held off or the limit is reached. restore has
// nothing to do for a process (the file monitor restores files).
func (r *Responder) HandleExec(ctx context.Context, d drift.Finding) error {
	f := compare.Finding{Path: d.Path, Kind: attr.Exec}
	r.m.SetViolationsOpen(r.openViolation(f))
	var errs []error
	for _, a := range r.plan.Actions {
		var err error
		switch a {
		case ActionLog:
			r.logExec(ctx, d)
			r.m.Action(a, metrics.ResultOK)
		case ActionMetric:
			if r.m == nil {
				err = errors.New("no metrics")
				break
			}
			r.m.ExecDrift(d.Reason)
			r.m.Action(a, metrics.ResultOK)
		case ActionEvent:
			if r.kube == nil {
				r.m.Action(a, metrics.ResultSkipped)
				break
			}
			r.kube.Event(corev1EventWarning, kube.ReasonExecutionDrift, execMessage(d))
			r.m.Action(a, metrics.ResultOK)
		case ActionRestore:
			r.m.Action(a, metrics.ResultSkipped)
		case ActionWebhook:
			if r.hook == nil {
				err = r.run(ctx, a, f, nil) // counts the missing configuration
				break
			}
			r.hook.enqueue(ctx, execPayload(d, r))
		case ActionKill:
			err = r.killExec(ctx, d, f)
		default:
			err = r.run(ctx, a, f, nil)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s pid %d: %w", a, d.Process.PID, err))
		}
	}
	r.m.ObserveResponseLatency(r.clock().Sub(d.Seen))
	return errors.Join(errs...)
}

// execAttrs are the log attributes of a drifted process.
func execAttrs(d drift.Finding) []slog.Attr {
	return []slog.Attr{
		slog.String(keyKind, string(attr.Exec)),
		slog.String(keyReason, string(d.Reason)),
		slog.Int(keyPID, d.Process.PID),
		slog.Int(keyPPID, d.Info.PPID),
		slog.Int(keyUID, d.Info.UID),
		slog.String(keyExe, d.Process.Exe),
		slog.String(keyCmdline, d.CommandLine()),
	}
}

func (r *Responder) logExec(ctx context.Context, d drift.Finding) {
	r.logPath(ctx, slog.LevelWarn, msgExecDrift, d.Path, execAttrs(d)...)
}

// execMessage says what ran, for `kubectl describe pod`; the Reporter makes
// it printable.
func execMessage(d drift.Finding) string {
	return fmt.Sprintf("execution drift (%s): pid %d runs %s (exe %s, uid %d, parent %d): %s",
		d.Reason, d.Process.PID, d.Path, d.Process.Exe, d.Info.UID, d.Info.PPID, d.CommandLine())
}

func execPayload(d drift.Finding, r *Responder) Payload {
	p := NewPayload(compare.Finding{Path: d.Path, Kind: attr.Exec}, r.clock())
	cmd := d.Info.Cmdline
	if cmd == nil {
		cmd = []string{}
	}
	p.Exec = &ExecPayload{
		PID: d.Process.PID, PPID: d.Info.PPID, UID: d.Info.UID, Exe: d.Process.Exe,
		Cmdline: cmd, CmdlineTruncated: d.Info.CmdlineTruncated, Reason: string(d.Reason),
	}
	return p
}

// killExec kills the drifted process, then runs the container's kill.
func (r *Responder) killExec(ctx context.Context, d drift.Finding, f compare.Finding) error {
	pk, ok := r.target.(ProcessKiller)
	if !ok {
		return r.kill(ctx, f, nil)
	}
	alive, err := pk.KillProcess(d.Process)
	attrs := append(execAttrs(d), actionAttr(ActionKill))
	switch {
	case err != nil:
		r.logPath(ctx, slog.LevelError, msgActionFailed, d.Path, append(attrs, resultAttr(metrics.ResultError), slog.String(keyError, err.Error()))...)
	case alive:
		r.logPath(ctx, slog.LevelWarn, msgProcessKilled, d.Path, append(attrs, resultAttr(metrics.ResultOK))...)
		r.event(corev1EventWarning, kube.ReasonProcessKilled, fmt.Sprintf("killed the drifted process %d (%s)", d.Process.PID, d.Path))
	default:
		r.logPath(ctx, slog.LevelDebug, msgActionSkipped, d.Path, append(attrs, resultAttr(metrics.ResultSkipped), slog.String(keyReason, "the process had exited"))...)
	}
	return errors.Join(err, r.kill(ctx, f, nil))
}
