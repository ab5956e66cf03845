package sidecar

import (
	"context"

	"github.com/podfim/podfim/internal/drift"
	"github.com/podfim/podfim/internal/origin"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/target"
)

// startDrift runs execution drift on container c (its root and baseline)
// until the returned stop is called: a goroutine beside the file monitor,
// so a slow hash of a file a process runs never delays file events, and
// the reverse.
func (s *sidecar) startDrift(ctx context.Context, c *target.Container, root *scan.Root, b drift.Lookup, mounts *origin.Mounts) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	matcher := s.currentMatcher()
	ch := drift.New(drift.Config{
		Finder:    s.finder,
		Container: c,
		Root:      root,
		Baseline:  b,
		Covers:    matcher.Covers,
		// Without the mount table (nil: mountTolerance warned) a binary
		// on a volume is judged by the baseline alone (added), never
		// missed.
		MountPoints:  mounts.Points(),
		Interval:     s.cfg.ExecInterval,
		MaxFileBytes: matcher.Limits().MaxFileBytes,
		Metrics:      s.metrics,
		Log:          s.log,
	}, driftSink{s})
	if p := s.cfg.DriftPoller; p != nil {
		remove := p.Add(ctx, ch)
		return func() {
			remove()
			cancel()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := ch.Run(ctx); err != nil {
			s.log.Error("execution drift stopped", keyError, err.Error())
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// driftSink passes drifted processes to the responder.
type driftSink struct{ s *sidecar }

func (d driftSink) Drift(ctx context.Context, f drift.Finding) {
	if err := d.s.resp.HandleExec(ctx, f); err != nil {
		d.s.log.Error("response failed", keyPath, f.Path, keyPID, f.Process.PID, keyError, err.Error())
	}
}

// KillProcess kills one process of the app container by pidfd
// (respond.ProcessKiller).
func (s *sidecar) KillProcess(p target.Process) (bool, error) {
	return s.finder.KillProcess(p)
}
