package sidecar

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/podfim/podfim/internal/target"
)

// ContainerLookup finds the container IDs of a container of the sidecar's
// pod by name: the Kubernetes API (*kube.Client).
type ContainerLookup interface {
	ContainerIDs(ctx context.Context, name string) (ids []string, image string, err error)
}

// Pacing of the name lookups.
const (
	// lookupEvery is how many retarget intervals at least pass between two
	// lookups: 1 s at the default 200 ms.
	lookupEvery = 5
	// maxLookupBackoff caps the wait after failed lookups.
	maxLookupBackoff = 30 * time.Second
	// lookupTimeout bounds one lookup.
	lookupTimeout = 15 * time.Second
)

// nameResolver is the target.Resolver of --target-name: it keeps the
// container IDs the API shows for the name, looked up in the background.
// The first lookup happens at start; later ones only when Follow misses
// (it looks for a container and none has the known IDs: a restart, or the
// kubelet not having reported the container yet), at most once per
// interval. While a container is followed its IDs do not matter (it is
// followed by identity), so a healthy sidecar sends no request at all.
// Failed lookups are retried with exponential backoff, keeping the last
// IDs known: API trouble never stops the monitoring of a container found.
type nameResolver struct {
	name     string
	lookup   ContainerLookup
	interval time.Duration // least time between lookups
	backoff  time.Duration // most time between failed lookups
	log      *slog.Logger
	miss     chan struct{} // a pending miss; capacity 1
	clock    clock.Clock   // paces the lookups; a fake one in tests
	// idle, if set, is called each time run waits for a miss: tests wait
	// for it to know that no lookup is coming without one.
	idle func()

	mu  sync.Mutex
	ids []string
}

func newNameResolver(name string, lookup ContainerLookup, interval time.Duration, log *slog.Logger) *nameResolver {
	return &nameResolver{
		name: name, lookup: lookup, log: log,
		interval: interval, backoff: max(interval, maxLookupBackoff),
		miss: make(chan struct{}, 1), clock: clock.RealClock{},
	}
}

// ContainerIDs returns the IDs last looked up (target.Resolver).
func (r *nameResolver) ContainerIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids
}

// Missed asks for a lookup without waiting for it (target.Resolver).
func (r *nameResolver) Missed() {
	select {
	case r.miss <- struct{}{}:
	default:
	}
}

func (r *nameResolver) String() string { return "container name " + r.name }

// run looks the name up until ctx ends.
func (r *nameResolver) run(ctx context.Context) {
	var (
		backoff time.Duration
		lastErr string // logged; "" when the last lookup worked
		known   bool   // a lookup worked once
		image   string
	)
	for {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		ids, img, err := r.lookup.ContainerIDs(lctx, r.name)
		cancel()
		if ctx.Err() != nil {
			return
		}
		wait := r.interval
		if err != nil {
			backoff = min(max(2*backoff, r.interval), r.backoff)
			wait = backoff
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				r.log.Error("failed to look up the target container by name; retrying", keyName, r.name, keyError, msg, keyRetry, backoff.String())
			}
		} else {
			backoff = 0
			r.mu.Lock()
			changed := !known || !slices.Equal(ids, r.ids) || img != image
			r.ids = ids
			r.mu.Unlock()
			if changed || lastErr != "" {
				r.log.Info("target container name looked up", keyName, r.name, keyIDs, shortIDs(ids), keyImage, img)
			}
			known, image, lastErr = true, img, ""
		}
		if !sleep(ctx, r.clock, wait) {
			return
		}
		// Misses from before the wait are stale: only one after it, with
		// the IDs just looked up, calls for another lookup.
		select {
		case <-r.miss:
		default:
		}
		if r.idle != nil {
			r.idle()
		}
		select {
		case <-ctx.Done():
			return
		case <-r.miss:
		}
	}
}

// sleep waits for d on c or ctx, and reports whether ctx is still live.
func sleep(ctx context.Context, c clock.Clock, d time.Duration) bool {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// shortIDs cuts container IDs to 12 characters, as runtimes print them.
func shortIDs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:min(len(id), 12)]
	}
	return out
}

var _ target.Resolver = (*nameResolver)(nil)
