package target

import (
	"context"
	"errors"
	"slices"
	"time"
)

// EventKind is what happened to the followed container.
type EventKind int

// Event kinds.
const (
	// Found: the first container matching the selector appeared. It is
	// reported once per Follow: a container seen at first sight.
	Found EventKind = iota + 1
	// Restarted: the followed container ended (its main process exited) and
	// another one matching the selector is there, possibly after a Lost.
	// A new mount namespace, a new container ID, or a new set of processes
	// under the same ID (podman) are all restarts.
	Restarted
	// Lost: the followed container ended and none matches the selector.
	Lost
)

func (k EventKind) String() string {
	switch k {
	case Found:
		return "found"
	case Restarted:
		return "restarted"
	case Lost:
		return "lost"
	}
	return "unknown"
}

// Event reports a change of the followed container.
type Event struct {
	Kind EventKind
	// Container is the container now followed; nil for Lost.
	Container *Container
	// Previous is the container followed before: the one that ended for
	// Lost, the last one seen for Restarted; nil for Found.
	Previous *Container
}

// DefaultInterval is how often Follow polls when given no interval: a
// restart is noticed well within a second.
const DefaultInterval = 200 * time.Millisecond

// ambiguityGrace is how long several matching containers are tolerated
// before Follow gives up: while a container restarts, its last processes
// may still be there when the new container starts.
const ambiguityGrace = 2 * time.Second

// Follow polls /proc every interval (DefaultInterval if 0) while no
// container is followed, and sends an Event on events when the container
// matching sel appears, restarts or goes away. While one is followed it
// waits on a pidfd of its main process instead (its exit is seen at once)
// and lists /proc only every Recheck. It waits while an event is not received and never closes
// events.
//
// Found marks the first sight of a container, once per Follow; whatever
// comes later is Restarted, even after a Lost. A caller that takes a
// baseline "at first sight" must do so on Found only: podman restarts the
// same container, tampered files included.
//
// The selector picks a container when there is none to follow; once found,
// the container is followed by identity (its main process) until it ends,
// so a process of the target cannot make the monitor lose it by running
// another executable, and another matching container appearing later does
// not steal it.
//
// Follow returns nil when ctx is done. It returns an error when /proc
// cannot be read (an *AccessError for missing privilege) and an
// *AmbiguousError when several containers match for longer than a restart
// explains.
func (f *Finder) Follow(ctx context.Context, sel Selector, interval time.Duration, events chan<- Event) error {
	if err := sel.Validate(); err != nil {
		return err
	}
	if events == nil {
		return errors.New("target: Follow needs an events channel")
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	fl := follower{sel: sel}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if ctx.Err() != nil {
			return nil
		}
		cs, err := f.Containers()
		if err != nil {
			return err
		}
		evs, err := fl.step(cs, time.Now())
		for _, ev := range evs {
			select {
			case events <- ev:
			case <-ctx.Done():
				return nil
			}
		}
		if err != nil {
			return err
		}
		// While the followed container lives, wait for its main process
		// to exit (a pidfd) rather than listing /proc every interval.
		if fl.cur != nil && f.waitExit(ctx, fl.cur, max(Recheck, interval)) {
			t.Reset(interval)
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// follower is Follow's state, fed one listing at a time.
type follower struct {
	sel            Selector
	cur            *Container // followed; nil if none
	last           *Container // the last one followed, even after Lost
	ambiguousSince time.Time  // zero if not ambiguous
}

// step takes the containers listed at now and returns the events they
// cause, or an error once ambiguity lasted ambiguityGrace.
func (fl *follower) step(cs []Container, now time.Time) ([]Event, error) {
	if fl.cur != nil {
		key := fl.cur.Key()
		for i := range cs {
			if cs[i].Key() == key {
				// Same main process: same container. Keep the fresh
				// listing so that new processes are known.
				c := cs[i]
				fl.cur, fl.last = &c, &c
				fl.ambiguousSince = time.Time{}
				return nil, nil
			}
		}
	}
	// The followed container (if any) has ended. Its remaining processes,
	// being killed, are no candidate.
	c, err := choose(fl.sel, fl.withoutRemnants(cs))
	var amb *AmbiguousError
	switch {
	case err == nil:
		kind, prev := Restarted, fl.last
		if prev == nil {
			kind = Found
		}
		fl.cur, fl.last, fl.ambiguousSince = c, c, time.Time{}
		return []Event{{Kind: kind, Container: c, Previous: prev}}, nil
	case errors.As(err, &amb):
		if fl.ambiguousSince.IsZero() {
			fl.ambiguousSince = now
		}
		if now.Sub(fl.ambiguousSince) < ambiguityGrace {
			err = nil
		}
		return fl.lost(), err
	default: // ErrNoTarget: wait for one to appear
		fl.ambiguousSince = time.Time{}
		return fl.lost(), nil
	}
}

// lost stops following and reports Lost if a container was followed.
func (fl *follower) lost() []Event {
	if fl.cur == nil {
		return nil
	}
	prev := fl.cur
	fl.cur = nil
	return []Event{{Kind: Lost, Previous: prev}}
}

// withoutRemnants drops the containers that still hold processes of the
// last followed one.
func (fl *follower) withoutRemnants(cs []Container) []Container {
	if fl.last == nil {
		return cs
	}
	out := make([]Container, 0, len(cs))
	for _, c := range cs {
		remnant := slices.ContainsFunc(c.Processes, func(p Process) bool {
			return slices.ContainsFunc(fl.last.Processes, p.same)
		})
		if !remnant {
			out = append(out, c)
		}
	}
	return out
}
