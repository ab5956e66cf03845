package sidecar

import (
	"context"

	"github.com/podfim/podfim/internal/drift"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/target"
)

// startDrift runs execution drift on container c (its root and baseline)
// until the returned stop is called: a goroutine beside the file monitor,
// so a slow hash of a file a process runs never delays file events, and
// the reverse.
func (s *sidecar) startDrift(ctx context.Context, c *target.Container, root *scan.Root, b drift.Lookup) (stop func()) {
	var mps []string
	mounts, err := c.Mounts()
	if err == nil {
		mps = mounts.Points()
	} else {
		// Without them a binary on a volume is judged by the baseline
		// alone (reported as added), never missed.
		s.log.Warn("cannot read the container's mount points; execution drift cannot tell volumes", keyError, err.Error())
	}
	ctx, cancel := context.WithCancel(ctx)
	ch := drift.New(drift.Config{
		Finder:       s.finder,
		Container:    c,
		Root:         root,
		Baseline:     b,
		Covers:       s.currentMatcher().Covers,
		MountPoints:  mps,
		Interval:     s.cfg.ExecInterval,
		MaxFileBytes: s.currentMatcher().Limits().MaxFileBytes,
		Metrics:      s.metrics,
		Log:          s.log,
	}, driftSink{s})
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
