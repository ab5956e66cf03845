package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/target"
	"github.com/podfim/podfim/internal/testwait"
)

// result is one answer of the fake API.
type result struct {
	ids []string
	err error
}

// fakeLookup answers lookups from a script, repeating the last answer.
type fakeLookup struct {
	mu     sync.Mutex
	script []result
	calls  int
	names  []string
	called chan struct{} // one send per lookup, if set
}

func (f *fakeLookup) ContainerIDs(ctx context.Context, name string) ([]string, string, error) {
	f.mu.Lock()
	r := f.script[min(f.calls, len(f.script)-1)]
	f.calls++
	f.names = append(f.names, name)
	ch := f.called
	f.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		case <-ctx.Done():
		}
	}
	return r.ids, "hello:1", r.err
}

func (f *fakeLookup) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// logRecorder keeps the messages logged, with their error attribute.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == keyError || a.Key == keyIDs {
			msg += " " + a.Key + "=" + a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	l.msgs = append(l.msgs, msg)
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.msgs)
}

// startResolver runs a resolver; set, if given, adjusts it before it starts.
func startResolver(t *testing.T, f *fakeLookup, interval, backoff time.Duration, set ...func(*nameResolver)) (*nameResolver, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	r := newNameResolver("app", f, interval, slog.New(rec))
	r.backoff = backoff
	for _, s := range set {
		s(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r, rec
}

// await receives one lookup or fails.
func await(t *testing.T, f *fakeLookup, what string) {
	t.Helper()
	select {
	case <-f.called:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no lookup", what)
	}
}

// checkLog waits for the resolver to log as many lines as want (it logs
// after storing the IDs a test waits for), then compares.
func checkLog(t *testing.T, rec *logRecorder, want []string) {
	t.Helper()
	testwait.Eventually(t, 5*time.Second, time.Millisecond, "the log", testwait.True(func() bool { return len(rec.messages()) >= len(want) }))
	if got := rec.messages(); !slices.Equal(got, want) {
		t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// missing calls r.Missed every millisecond until the test ends, as Follow
// does on every poll while no container has the IDs.
func missing(t *testing.T, r *nameResolver) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				r.Missed()
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
}

const (
	idA = "0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779"
	idB = "abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152"
)

func TestNameResolverLooksUpOnMisses(t *testing.T) {
	f := &fakeLookup{script: []result{{ids: []string{idA}}, {ids: []string{idA}}, {ids: []string{idB, idA}}}, called: make(chan struct{})}
	idle := make(chan struct{}, 1)
	r, rec := startResolver(t, f, 20*time.Millisecond, time.Second, func(r *nameResolver) {
		r.idle = func() {
			select {
			case idle <- struct{}{}:
			default:
			}
		}
	})

	await(t, f, "start")
	testwait.Eventually(t, 5*time.Second, time.Millisecond, "the IDs", testwait.True(func() bool { return slices.Equal(r.ContainerIDs(), []string{idA}) }))
	// No miss, no request: a followed container needs none. The resolver
	// waits for a miss (idle) before any further lookup.
	select {
	case <-f.called:
		t.Fatal("looked up without a miss")
	case <-idle:
	case <-time.After(5 * time.Second):
		t.Fatal("the resolver neither looked up nor waited for a miss")
	}
	// Misses come on every poll while the new ID is unknown: one lookup
	// per interval, not per miss.
	missing(t, r)
	await(t, f, "first miss")
	start := time.Now()
	await(t, f, "second miss")
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Errorf("two lookups %v apart, want the interval (20ms) at least", d)
	}
	testwait.Eventually(t, 5*time.Second, time.Millisecond, "the restarted container's IDs", testwait.True(func() bool { return slices.Equal(r.ContainerIDs(), []string{idB, idA}) }))
	checkLog(t, rec, []string{
		"target container name looked up ids=[0e768f8db752]",
		"target container name looked up ids=[abddff03dfd7 0e768f8db752]",
	})
	f.mu.Lock()
	name := f.names[0]
	f.mu.Unlock()
	if r.String() != "container name app" || name != "app" {
		t.Errorf("String() %q, looked up %q", r.String(), name)
	}
}

func TestNameResolverErrors(t *testing.T) {
	errA, errB := errors.New("forbidden by RBAC"), errors.New("connection refused")
	f := &fakeLookup{script: []result{
		{ids: []string{idA}},
		{err: errA}, {err: errA}, {err: errA},
		{err: errB}, {err: errB},
		{ids: []string{idA}},
		{err: errA},
		{ids: []string{idB}},
	}, called: make(chan struct{})}
	r, rec := startResolver(t, f, time.Millisecond, 4*time.Millisecond)
	missing(t, r)
	for i := range len(f.script) {
		await(t, f, fmt.Sprint("lookup ", i))
		if i > 0 && i < 6 {
			// Failures keep the IDs known.
			if ids := r.ContainerIDs(); !slices.Equal(ids, []string{idA}) {
				t.Errorf("lookup %d: IDs %q after an error", i, ids)
			}
		}
	}
	testwait.Eventually(t, 5*time.Second, time.Millisecond, "the last IDs", testwait.True(func() bool { return slices.Equal(r.ContainerIDs(), []string{idB}) }))
	// Each distinct error once; a recovery is logged.
	want := []string{
		"target container name looked up ids=[0e768f8db752]",
		"failed to look up the target container by name; retrying error=forbidden by RBAC",
		"failed to look up the target container by name; retrying error=connection refused",
		"target container name looked up ids=[0e768f8db752]",
		"failed to look up the target container by name; retrying error=forbidden by RBAC",
		"target container name looked up ids=[abddff03dfd7]",
	}
	checkLog(t, rec, want)
}

func TestNameResolverBackoff(t *testing.T) {
	// An API that always fails, and misses on every poll: the lookups
	// slow down 10, 20, 40, 80 ms (capped there) instead of one per 10 ms.
	// The fake clock measures each wait exactly: the worker's timer has
	// not fired 1 ms before the expected wait, and fires at it.
	fc := clocktesting.NewFakeClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	f := &fakeLookup{script: []result{{err: errors.New("connection refused")}}, called: make(chan struct{})}
	r, rec := startResolver(t, f, 10*time.Millisecond, 80*time.Millisecond, func(r *nameResolver) { r.clock = fc })
	missing(t, r)
	for i, want := range []time.Duration{10, 20, 40, 80, 80, 80} {
		want *= time.Millisecond
		await(t, f, fmt.Sprint("lookup ", i))
		testwait.Eventually(t, 5*time.Second, time.Millisecond, "the wait after a failed lookup", testwait.True(fc.HasWaiters))
		fc.Step(want - time.Millisecond)
		if !fc.HasWaiters() {
			t.Fatalf("lookup %d: waited less than %s", i, want)
		}
		fc.Step(time.Millisecond)
		if fc.HasWaiters() {
			t.Fatalf("lookup %d: waited more than %s", i, want)
		}
	}
	await(t, f, "the lookup after the last wait")
	if n := len(rec.messages()); n != 1 {
		t.Errorf("%d log lines for one error repeated, want 1", n)
	}
}

var logPlan = respond.Plan{Actions: []respond.Action{respond.ActionLog}}

func TestValidateTargetName(t *testing.T) {
	base := func() Config {
		return Config{Policy: policy.Default(), StateDir: t.TempDir(), Inotify: true, Plan: logPlan, TargetName: "app"}
	}
	c := base()
	if err := c.Validate(); err != nil {
		t.Errorf("valid: %v", err)
	}
	for _, tc := range []struct {
		edit func(*Config)
		msg  string
	}{
		{func(c *Config) { c.Selector.Exe = "/app" }, "--target-name and --target-exe are mutually exclusive"},
		{func(c *Config) { c.Selector.ContainerID = idA }, "--target-name and --target-container are mutually exclusive"},
		{func(c *Config) { c.TargetName = "App" }, `invalid --target-name "App"`},
		{func(c *Config) { c.TargetName = "app-" }, "DNS label"},
		{func(c *Config) { c.TargetName = strings.Repeat("a", 64) }, "DNS label"},
	} {
		c := base()
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v, want %q", c.Selector, err, tc.msg)
		}
	}
	// Without a lookup, Run refuses before anything starts.
	c = base()
	if err := Run(context.Background(), c, slog.New(&logRecorder{})); err == nil || !strings.Contains(err.Error(), "Config.Names") {
		t.Errorf("no lookup: %v", err)
	}
}

// Run with a name the API resolves to an ID no process has: the sidecar
// keeps looking (a lookup per miss, paced), sends no request without
// --target-name, and stops cleanly.
func TestRunTargetName(t *testing.T) {
	// A /proc that shows only the test's own process (skipped as the
	// sidecar's): no container at all, whatever runs on the machine.
	proc := t.TempDir()
	pid := strconv.Itoa(os.Getpid())
	if err := os.Symlink("/proc/"+pid, filepath.Join(proc, pid)); err != nil {
		t.Fatal(err)
	}
	for _, named := range []bool{true, false} {
		f := &fakeLookup{script: []result{{ids: []string{strings.Repeat("e", 64)}}}}
		cfg := Config{Policy: policy.Default(), StateDir: t.TempDir(), Inotify: true, Plan: logPlan, Retarget: 10 * time.Millisecond, Names: f,
			Finder: &target.Finder{Proc: proc, Infra: -1}}
		if named {
			cfg.TargetName = "app"
		} else {
			// Something to pick instead of nothing: a selector no
			// process matches, so that Run waits as above.
			cfg.Selector = target.Selector{ContainerID: strings.Repeat("e", 64)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		err := Run(ctx, cfg, slog.New(&logRecorder{}))
		cancel()
		if err != nil {
			t.Fatalf("named %v: %v", named, err)
		}
		n := f.count()
		switch {
		case named && (n < 2 || n > 10):
			// A lookup at start, then one per 50 ms (5 retarget
			// intervals) while Follow misses.
			t.Errorf("%d lookups in 400 ms, want about 8", n)
		case !named && n != 0:
			t.Errorf("%d lookups without --target-name", n)
		}
	}
}
