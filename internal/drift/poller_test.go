package drift

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
)

// TestPoller: two checkers of one container on one poller each judge
// against their own baseline (what one trusts, the other reports), and a
// checker removed is polled no more.
func TestPoller(t *testing.T) {
	a, b := newFixture(t), newFixture(t)
	// b trusts a's binary: a reports it, b does not.
	exe1 := filepath.Join(a.dir, "one")
	copyExe(t, exe1)
	e, err := b.cfg.Root.Entry(exe1, attr.Type|attr.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	b.base.entries[exe1] = &e

	p := NewPoller(a.cfg.Finder, 10*time.Millisecond, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	removeA := p.Add(ctx, New(a.cfg, a.sink))
	removeB := p.Add(ctx, New(b.cfg, b.sink))
	defer removeB()

	one := a.start(t, exe1, "sleep")
	if got := a.waitFor(t, one.Process.Pid); got.Reason != Added {
		t.Errorf("a: %+v, want added", got)
	}
	// b's next finding is of a binary it does not trust; waitFor fails on
	// a finding of any other process of the test first (one, which b
	// trusts, was started and seen before it).
	exe2 := filepath.Join(b.dir, "two")
	copyExe(t, exe2)
	two := b.start(t, exe2, "sleep")
	if got := b.waitFor(t, two.Process.Pid); got.Reason != Added {
		t.Errorf("b: %+v, want added", got)
	}

	removeA()
	exe3 := filepath.Join(b.dir, "three")
	copyExe(t, exe3)
	three := b.start(t, exe3, "sleep")
	b.waitFor(t, three.Process.Pid)
	for {
		select {
		case f := <-a.sink.ch:
			if f.Process.PID == three.Process.Pid {
				t.Fatalf("a removed checker reported %+v", f)
			}
			continue
		default:
		}
		break
	}
}
