package drift

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/podfim/podfim/internal/target"
)

// Poller runs the polls of several Checkers, the node agent's one per
// protected container, on one thread: one wake-up, one read of the last
// pid and, when a process was started, one listing of /proc per interval,
// whatever the number of containers. Each checker then judges what it
// tracks, as its own Run would (a checker in a poller never runs Run).
type Poller struct {
	finder   *target.Finder
	interval time.Duration
	log      *slog.Logger

	mu       sync.Mutex
	checkers map[*Checker]context.Context
	round    sync.Mutex // held during a poll: Remove waits for it
}

// NewPoller returns a poller listing /proc through f every interval
// (DefaultInterval if 0); Run starts it.
func NewPoller(f *target.Finder, interval time.Duration, log *slog.Logger) *Poller {
	if interval <= 0 {
		interval = DefaultInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Poller{finder: f, interval: interval, log: log, checkers: map[*Checker]context.Context{}}
}

// Add makes the poller poll c, whose findings go to its sink with ctx,
// until the returned function is called; after it returns, c is polled
// no more.
func (p *Poller) Add(ctx context.Context, c *Checker) (remove func()) {
	p.mu.Lock()
	p.checkers[c] = ctx
	p.mu.Unlock()
	return func() {
		p.round.Lock() // a poll in flight ends first
		defer p.round.Unlock()
		p.mu.Lock()
		delete(p.checkers, c)
		p.mu.Unlock()
	}
}

// Run polls until ctx ends, on a locked OS thread that sleeps in
// nanosleep(2) between polls (see Checker.Run). It returns an error only
// when /proc cannot be listed.
func (p *Poller) Run(ctx context.Context) error {
	counter, err := p.finder.OpenPIDCounter()
	if err != nil {
		p.log.Warn("cannot read the last pid; /proc is listed at every poll", slog.String("error", err.Error()))
	} else {
		defer counter.Close()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var pids []int
	last, polls := -1, 0
	for {
		moved := true
		if counter != nil {
			if pid, err := counter.LastPID(); err == nil {
				moved, last = pid != last, pid
			}
		}
		if moved {
			if pids, err = p.finder.PIDs(pids); err != nil {
				return err
			}
		}
		p.poll(ctx, moved, polls%sweepEvery == 0, pids)
		polls++
		if !sleep(ctx, p.interval) {
			return nil
		}
	}
}

// poll gives one round to every checker: what is new when a process was
// started (moved), else the recheck of what they track.
func (p *Poller) poll(ctx context.Context, moved, sweep bool, pids []int) {
	p.round.Lock()
	defer p.round.Unlock()
	p.mu.Lock()
	cs := make(map[*Checker]context.Context, len(p.checkers))
	for c, cctx := range p.checkers {
		cs[c] = cctx
	}
	p.mu.Unlock()
	for c, cctx := range cs {
		if ctx.Err() != nil {
			return
		}
		if cctx.Err() != nil {
			continue
		}
		now := c.cfg.Clock()
		if moved || !c.primed {
			// A checker's first round looks at every process, as Run's
			// first poll does.
			c.primed = true
			c.step(cctx, now, sweep, pids)
		} else {
			c.relink(cctx, now, sweep)
		}
	}
}
