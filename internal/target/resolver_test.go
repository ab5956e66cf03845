package target

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResolver is a Resolver whose IDs a test sets, as the Kubernetes API's
// pod status would show them after a restart.
type fakeResolver struct {
	mu     sync.Mutex
	ids    []string
	misses int
}

func (r *fakeResolver) set(ids ...string) {
	r.mu.Lock()
	r.ids = ids
	r.mu.Unlock()
}

func (r *fakeResolver) ContainerIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ids
}

func (r *fakeResolver) Missed() {
	r.mu.Lock()
	r.misses++
	r.mu.Unlock()
}

func (r *fakeResolver) missed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.misses
}

func (r *fakeResolver) String() string { return "container name app" }

func TestChooseResolver(t *testing.T) {
	a := ctr(p(7, 10, 70, "/bin/a", id1))
	b := ctr(p(9, 20, 90, "/bin/b", id2))
	noID := ctr(p(11, 30, 110, "/bin/c", ""))
	all := append(append(append([]Container{}, a...), b...), noID...)

	r := &fakeResolver{}
	sel := Selector{Resolver: r}
	if sel.IsZero() {
		t.Error("a selector with a resolver is not zero")
	}
	if err := sel.Validate(); err != nil {
		t.Error(err)
	}

	// Nothing known yet: nothing matches, not even "the only other
	// container", and the resolver hears of the miss.
	if _, err := choose(sel, a); !errors.Is(err, ErrNoTarget) || !strings.Contains(err.Error(), "none matches container name app") {
		t.Errorf("no IDs: %v", err)
	}
	if r.missed() != 1 {
		t.Errorf("misses = %d, want 1", r.missed())
	}

	for _, tc := range []struct {
		ids []string
		pid int // 0: no target
	}{
		{[]string{id2}, 9},
		{[]string{"containerd://" + id1}, 7},
		{[]string{"cri-o://" + strings.ToUpper(id2)}, 9},
		{[]string{id1[:12]}, 7},
		// Current first, then the one it replaced: the current one
		// wins even while the old one's processes linger.
		{[]string{id2, id1}, 9},
		{[]string{id1, id2}, 7},
		// The replaced one only (the status not updated yet).
		{[]string{"docker://" + strings.Repeat("f", 64), id1}, 7},
		// Unusable IDs are ignored, never a wildcard.
		{[]string{"", "containerd://", id1[:11], "zzzzzzzzzzzz"}, 0},
		{[]string{strings.Repeat("f", 64)}, 0},
	} {
		r.set(tc.ids...)
		c, err := choose(sel, all)
		switch {
		case tc.pid == 0 && !errors.Is(err, ErrNoTarget):
			t.Errorf("%q: got %v, %v; want no target", tc.ids, c, err)
		case tc.pid != 0 && (err != nil || c.PID != tc.pid):
			t.Errorf("%q: got %v, %v; want pid %d", tc.ids, c, err, tc.pid)
		}
	}

	// Combined with an executable: both must match.
	r.set(id1)
	if _, err := choose(Selector{Resolver: r, Exe: "/bin/b"}, all); !errors.Is(err, ErrNoTarget) {
		t.Errorf("exe of another container: %v", err)
	}
	if c, err := choose(Selector{Resolver: r, Exe: "/bin/a"}, all); err != nil || c.PID != 7 {
		t.Errorf("exe of that container: %v, %v", c, err)
	}
}

// A restart under a new container ID: the follower finds the new container
// once the resolver knows its ID, and only then.
func TestFollowerResolver(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := &fakeResolver{}
	fl := follower{sel: Selector{Resolver: r}}
	step := func(i int, cs []Container) []Event {
		t.Helper()
		evs, err := fl.step(cs, t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatalf("poll %d: %v", i, err)
		}
		return evs
	}
	other := ctr(p(5, 1, 50, "/other", strings.Repeat("c", 64)))
	old := append(ctr(p(7, 10, 70, "/app", id1)), other...)
	restarted := append(ctr(p(9, 20, 90, "/app", id2)), other...)

	// The API does not know the container yet: two candidates, no
	// ambiguity error, just a miss.
	if evs := step(0, old); len(evs) != 0 || r.missed() != 1 {
		t.Fatalf("before resolution: %v, %d misses", evs, r.missed())
	}
	r.set(id1)
	evs := step(1, old)
	if len(evs) != 1 || evs[0].Kind != Found || evs[0].Container.PID != 7 {
		t.Fatalf("resolved: %v", evs)
	}
	// Followed by identity: the resolver is not consulted while the
	// container lives.
	if evs := step(2, old); len(evs) != 0 || r.missed() != 1 {
		t.Fatalf("still there: %v, %d misses", evs, r.missed())
	}
	// Restarted under a new ID the resolver does not know yet: lost, and
	// a miss per poll until it does.
	evs = step(3, restarted)
	if len(evs) != 1 || evs[0].Kind != Lost || evs[0].Previous.PID != 7 || r.missed() != 2 {
		t.Fatalf("restart, stale IDs: %v, %d misses", evs, r.missed())
	}
	if evs := step(4, restarted); len(evs) != 0 || r.missed() != 3 {
		t.Fatalf("still stale: %v, %d misses", evs, r.missed())
	}
	r.set("containerd://"+id2, "containerd://"+id1) // current, last state
	evs = step(5, restarted)
	if len(evs) != 1 || evs[0].Kind != Restarted || evs[0].Container.PID != 9 || evs[0].Previous.PID != 7 {
		t.Fatalf("restart resolved: %v", evs)
	}
}

// Follow on the real /proc with a resolver: the test's own container ID
// is unknown here, so the resolver keeps missing and Follow keeps waiting
// (no error, no event) until cancelled.
func TestFollowResolverWaits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*DefaultInterval)
	defer cancel()
	r := &fakeResolver{}
	r.set(strings.Repeat("e", 64))
	x := startSleep(t)
	defer x.kill()
	events := make(chan Event, 1)
	if err := (&Finder{}).Follow(ctx, Selector{Resolver: r}, 0, events); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		t.Errorf("unexpected event %v %v", ev.Kind, ev.Container)
	default:
	}
	if r.missed() < 2 {
		t.Errorf("misses = %d, want one per poll", r.missed())
	}
}
