package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/origin"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/testwait"
)

type allMatcher struct{}

func (allMatcher) Match(string) (attr.Set, bool) { return attr.All, false }

func (allMatcher) Transient(string) bool { return true }

type sinkEvent struct {
	kind     string // finding kind, "resolved", "rescan:<reason>"
	path     string
	attrs    []string
	origin   origin.Origin
	detected time.Time
	at       time.Time
	evChecks int // event checks finished when it was recorded
}

// recorder is a Sink that records what it is told and keeps the open
// violations, as the responder's ledger does: only the resolution of an
// open path is recorded.
type recorder struct {
	mu     sync.Mutex
	open   map[string]bool
	events []sinkEvent
	scans  map[metrics.ScanType]int
	notify chan struct{}
	root   string // the directory checked, for barrier
	// omitted is what Omitted says is left out now.
	omitted int
	// incomplete is what Incomplete said last, per kind of check.
	incomplete map[metrics.ScanType]int
	sample     []scan.Warning
}

func newRecorder() *recorder {
	return &recorder{open: map[string]bool{}, scans: map[metrics.ScanType]int{}, incomplete: map[metrics.ScanType]int{},
		notify: make(chan struct{}, 1000)}
}

func (r *recorder) add(e sinkEvent) {
	r.mu.Lock()
	e.evChecks = r.scans[metrics.ScanEvent]
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) Finding(_ context.Context, f compare.Finding, detected time.Time) {
	r.mu.Lock()
	r.open[f.Path] = true
	r.mu.Unlock()
	r.add(sinkEvent{kind: string(f.Kind), path: f.Path, attrs: f.Attributes, origin: f.Origin, detected: detected, at: time.Now()})
}
func (r *recorder) Resolved(p string) {
	r.mu.Lock()
	was := r.open[p]
	delete(r.open, p)
	r.mu.Unlock()
	if was {
		r.add(sinkEvent{kind: "resolved", path: p, at: time.Now()})
	}
}

func (r *recorder) Open() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ps []string
	for p := range r.open {
		ps = append(ps, p)
	}
	return ps
}
func (r *recorder) Omitted(n int, check bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if check {
		r.omitted = n
	} else {
		r.omitted += n
	}
}

func (r *recorder) Incomplete(kind metrics.ScanType, n int, sample []scan.Warning) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.incomplete[kind], r.sample = n, sample
}

func (r *recorder) Rescan(reason metrics.RescanReason) {
	r.add(sinkEvent{kind: "rescan:" + string(reason), at: time.Now()})
}
func (r *recorder) Scanned(kind metrics.ScanType, err error, _ time.Duration, _ int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.scans[kind]++
	}
}

// wait returns the first recorded event matching ok, failing after timeout.
func (r *recorder) wait(t *testing.T, timeout time.Duration, what string, ok func(sinkEvent) bool) sinkEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if ok(e) {
				r.mu.Unlock()
				return e
			}
		}
		r.mu.Unlock()
		select {
		case <-r.notify:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out after %v waiting for %s; got %+v", timeout, what, r.events)
		}
	}
}

// barrier creates the empty file name in dir, a watched directory of the
// tree the monitor checks, and waits until the event check of its inotify
// event has finished. The monitor handles events in order, one batch (and
// the rescan it may cause, watches re-synced included) at a time, and
// inotify queues them in order: what an earlier event makes the monitor
// do is done by then. The file is reported added, by that check or by a
// rescan before it.
func (r *recorder) barrier(t *testing.T, dir, name string) {
	t.Helper()
	rel, err := filepath.Rel(r.root, filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	p := "/" + filepath.ToSlash(rel)
	if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e := r.wait(t, 2*time.Second, "added "+p, func(e sinkEvent) bool { return e.kind == "added" && e.path == p })
	testwait.Eventually(t, 5*time.Second, time.Millisecond, "the event check of "+p, testwait.True(func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.scans[metrics.ScanEvent] > e.evChecks
	}))
}

// moreScans waits until n more checks of kind than now have finished
// without error: what those checks would report is recorded by then.
func (r *recorder) moreScans(t *testing.T, kind metrics.ScanType, n int) {
	t.Helper()
	r.mu.Lock()
	want := r.scans[kind] + n
	r.mu.Unlock()
	testwait.Eventually(t, 5*time.Second, time.Millisecond, fmt.Sprintf("%d more %s checks", n, kind), func() (bool, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.scans[kind] >= want, fmt.Sprintf("%d of %d", r.scans[kind], want)
	})
}

func (r *recorder) count(ok func(sinkEvent) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if ok(e) {
			n++
		}
	}
	return n
}

// start baselines dir and runs a monitor on it, with cfg.Matcher (nil:
// every attribute of every path).
func start(t *testing.T, dir string, cfg Config) (*recorder, context.CancelFunc, chan error) {
	t.Helper()
	root, err := scan.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	if cfg.Matcher == nil {
		cfg.Matcher = allMatcher{}
	}
	// The baseline is made under the monitor's limits, as a sidecar's
	// first-sight baseline is.
	opts := cfg.Scan
	opts.Matcher = cfg.Matcher
	res, err := root.Tree(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Baseline, err = IndexOf(res.Entries); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	rec.root = dir
	m := New(root, cfg, rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	// The first full check has run once a "full" scan is counted.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec.mu.Lock()
		n := rec.scans[metrics.ScanFull]
		rec.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first full check did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	return rec, cancel, done
}

func tree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "www", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"www/index.html", "www/sub/a.css", "app.conf"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("Hello, world!\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestInotifyDetectsWriteAndResolve(t *testing.T) {
	dir := tree(t)
	rec, _, _ := start(t, dir, Config{Inotify: true})
	index := filepath.Join(dir, "www", "index.html")
	orig, _ := os.ReadFile(index)
	if err := os.WriteFile(index, []byte("Hacked!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ev := rec.wait(t, 2*time.Second, "changed /www/index.html", func(e sinkEvent) bool {
		return e.kind == "changed" && e.path == "/www/index.html"
	})
	if !slices.Contains(ev.attrs, "sha256") {
		t.Errorf("attributes %q lack sha256", ev.attrs)
	}
	if lat := ev.at.Sub(ev.detected); lat > 50*time.Millisecond {
		t.Logf("note: detection to finding took %v", lat)
	}
	// Put the bytes back: content matches but mtime/ctime do not, so the
	// violation stays open (a full FIM must see the metadata change too).
	if err := os.WriteFile(index, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "a second state of the violation", func(e sinkEvent) bool {
		return e.kind == "changed" && e.path == "/www/index.html" && !slices.Contains(e.attrs, "sha256")
	})
}

func TestInotifyAddedRemovedAndNewDirectory(t *testing.T) {
	dir := tree(t)
	rec, _, _ := start(t, dir, Config{Inotify: true})
	if err := os.WriteFile(filepath.Join(dir, "www", "evil.php"), []byte("<?php"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "added /www/evil.php", func(e sinkEvent) bool { return e.kind == "added" && e.path == "/www/evil.php" })
	if err := os.Remove(filepath.Join(dir, "app.conf")); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "removed /app.conf", func(e sinkEvent) bool { return e.kind == "removed" && e.path == "/app.conf" })

	// A new directory: rescanned, then watched, so a file written into it
	// later is seen by inotify alone.
	if err := os.Mkdir(filepath.Join(dir, "www", "new"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "added /www/new", func(e sinkEvent) bool { return e.kind == "added" && e.path == "/www/new" })
	rec.wait(t, 2*time.Second, "dir_change rescan", func(e sinkEvent) bool { return e.kind == "rescan:"+string(metrics.RescanDirChange) })
	// The rescan re-syncs the watches before the next event is handled.
	rec.barrier(t, filepath.Join(dir, "www"), "marker")
	if err := os.WriteFile(filepath.Join(dir, "www", "new", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "added /www/new/x", func(e sinkEvent) bool { return e.kind == "added" && e.path == "/www/new/x" })
}

func TestSameStateReportedOnce(t *testing.T) {
	dir := tree(t)
	rec, _, _ := start(t, dir, Config{Inotify: true, Quick: 20 * time.Millisecond})
	if err := os.Chmod(filepath.Join(dir, "app.conf"), 0o666); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "mode change", func(e sinkEvent) bool { return e.kind == "changed" && e.path == "/app.conf" })
	// Several quick checks later, still one finding for this state.
	rec.moreScans(t, metrics.ScanQuick, 3)
	if n := rec.count(func(e sinkEvent) bool { return e.path == "/app.conf" && e.kind == "changed" }); n != 1 {
		t.Errorf("same state reported %d times, want once", n)
	}
}

func TestPollingOnlyDetectsAndResolves(t *testing.T) {
	dir := tree(t)
	rec, _, _ := start(t, dir, Config{Inotify: false, Quick: 20 * time.Millisecond})
	conf := filepath.Join(dir, "app.conf")
	if err := os.Chmod(conf, 0o600); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "mode change by polling", func(e sinkEvent) bool { return e.kind == "changed" && e.path == "/app.conf" })
	if err := os.Chmod(conf, 0o644); err != nil {
		t.Fatal(err)
	}
	// ctime moved on, so it is not resolved by chmod back: that is correct.
	// Removing an added file resolves its violation, though.
	evil := filepath.Join(dir, "evil")
	if err := os.WriteFile(evil, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "added /evil", func(e sinkEvent) bool { return e.kind == "added" && e.path == "/evil" })
	if err := os.Remove(evil); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "resolved /evil", func(e sinkEvent) bool { return e.kind == "resolved" && e.path == "/evil" })
}

func TestQueueOverflowFallsBackToRescan(t *testing.T) {
	const knob = "/proc/sys/fs/inotify/max_queued_events"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Fatalf("this test needs %s: %v", knob, err)
	}
	if err := os.WriteFile(knob, []byte("8"), 0o644); err != nil {
		t.Fatalf("this test needs root to shrink the inotify queue: %v", err)
	}
	// The limit applies to instances created from now on; restore it once
	// ours exists.
	// The reader is held back while the files are written, so the queue
	// overflows whatever the scheduling (a reader that keeps up would
	// drain it, and the test would prove nothing).
	dir := tree(t)
	gate := make(chan struct{})
	rec, _, _ := start(t, dir, Config{Inotify: true, Coalesce: 50 * time.Millisecond, readGate: gate})
	if err := os.WriteFile(knob, old, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := os.WriteFile(filepath.Join(dir, "www", "f"+strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	rec.wait(t, 3*time.Second, "overflow rescan", func(e sinkEvent) bool { return e.kind == "rescan:"+string(metrics.RescanOverflow) })
	// The rescan finds every file, including those whose events were lost.
	rec.wait(t, 3*time.Second, "added /www/f199", func(e sinkEvent) bool { return e.kind == "added" && e.path == "/www/f199" })
	rec.wait(t, 3*time.Second, "added /www/f0", func(e sinkEvent) bool { return e.kind == "added" && e.path == "/www/f0" })
}

func TestTargetGoneEndsRun(t *testing.T) {
	dir := tree(t)
	rec, _, done := start(t, dir, Config{Inotify: false, Quick: 10 * time.Millisecond})
	// Removing the whole tree makes the root's directory unreachable: the
	// quick check sees everything removed; a deleted root is still an open
	// directory, so the run continues until cancelled.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "removed /app.conf", func(e sinkEvent) bool { return e.kind == "removed" && e.path == "/app.conf" })
	rec.moreScans(t, metrics.ScanQuick, 3)
	select {
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	default:
	}
}

func TestRestoredAcceptsNewInodeAndCtimeOnly(t *testing.T) {
	dir := tree(t)
	root, err := scan.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	res, err := root.Tree(context.Background(), scan.Options{Matcher: allMatcher{}})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	m := New(root, Config{Matcher: allMatcher{}, Baseline: mustIndex(t, res.Entries)}, rec)
	ctx := context.Background()
	www := filepath.Join(dir, "www")
	index := filepath.Join(www, "index.html")
	var dirSt, fileSt unix.Stat_t
	if err := unix.Lstat(www, &dirSt); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(index, &fileSt); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(index, []byte("Hacked!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.check(ctx, metrics.ScanFull, time.Now()); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, time.Second, "changed index", func(e sinkEvent) bool { return e.kind == "changed" && e.path == "/www/index.html" })

	// A tampered state must not be accepted as restored.
	if clean, err := m.Restored(ctx, "/www/index.html", attr.Inode|attr.Ctime); err != nil || clean {
		t.Fatalf("Restored of a still-tampered file = %v, %v; want not clean", clean, err)
	}

	// Restore the way the sidecar does: new file, same bytes, mode and
	// mtime, renamed over; the directory's mtime put back.
	tmp := filepath.Join(www, ".restore")
	if err := os.WriteFile(tmp, []byte("Hello, world!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.UtimesNano(tmp, []unix.Timespec{{Nsec: unix.UTIME_OMIT}, fileSt.Mtim}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, index); err != nil {
		t.Fatal(err)
	}
	if err := unix.UtimesNano(www, []unix.Timespec{{Nsec: unix.UTIME_OMIT}, dirSt.Mtim}); err != nil {
		t.Fatal(err)
	}
	if clean, err := m.Restored(ctx, "/www/index.html", attr.Inode|attr.Ctime|attr.Mode); err != nil || !clean {
		t.Fatalf("Restored = %v, %v; want clean", clean, err)
	}
	if clean, err := m.Restored(ctx, "/www", attr.Ctime); err != nil || !clean {
		t.Fatalf("Restored(/www) = %v, %v; want clean", clean, err)
	}
	rec.wait(t, time.Second, "resolved index", func(e sinkEvent) bool { return e.kind == "resolved" && e.path == "/www/index.html" })
	before := rec.count(func(e sinkEvent) bool { return e.kind == "changed" })
	if err := m.check(ctx, metrics.ScanFull, time.Now()); err != nil {
		t.Fatal(err)
	}
	if after := rec.count(func(e sinkEvent) bool { return e.kind == "changed" }); after != before {
		t.Errorf("a full check after the restore reported %d new changes", after-before)
	}
	// A later change to the restored file is still detected.
	if err := os.Chmod(index, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := m.check(ctx, metrics.ScanFull, time.Now()); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, time.Second, "mode change after restore", func(e sinkEvent) bool {
		return e.kind == "changed" && e.path == "/www/index.html" && slices.Contains(e.attrs, "mode")
	})
}

// TestToleratedDirectoryAttributes: the directories above a container's
// mount points may change inode, link count, size and times (the runtime
// recreates its mount points in a fresh container), nothing else; an entry
// added to them is still reported.
func TestToleratedDirectoryAttributes(t *testing.T) {
	tol := map[string]attr.Set{"/": Tolerated, "/www": Tolerated}
	for _, inotify := range []bool{true, false} {
		t.Run("inotify="+strconv.FormatBool(inotify), func(t *testing.T) {
			dir := tree(t)
			rec, _, _ := start(t, dir, Config{Inotify: inotify, Quick: 20 * time.Millisecond, Tolerate: tol})
			// What a runtime does to "/" and "/www": a new subdirectory
			// (a mount point) changes their size, link count and times.
			// The subdirectory is an entry of its own, and reported.
			if err := os.Mkdir(filepath.Join(dir, "www", "proc"), 0o755); err != nil {
				t.Fatal(err)
			}
			rec.wait(t, 2*time.Second, "added /www/proc", func(e sinkEvent) bool { return e.kind == "added" && e.path == "/www/proc" })
			future := time.Now().Add(time.Hour)
			if err := os.Chtimes(dir, future, future); err != nil {
				t.Fatal(err)
			}
			// The same change to an untolerated directory is a finding.
			if err := os.Chtimes(filepath.Join(dir, "www", "sub"), future, future); err != nil {
				t.Fatal(err)
			}
			rec.wait(t, 2*time.Second, "changed /www/sub", func(e sinkEvent) bool { return e.kind == "changed" && e.path == "/www/sub" })
			rec.moreScans(t, metrics.ScanQuick, 3)
			if n := rec.count(func(e sinkEvent) bool {
				return e.kind == "changed" && (e.path == "/" || e.path == "/www")
			}); n != 0 {
				t.Fatalf("%d findings for tolerated changes of / and /www", n)
			}
			// A mode change of a tolerated directory is reported, with only
			// the untolerated attribute named.
			if err := os.Chmod(filepath.Join(dir, "www"), 0o777); err != nil {
				t.Fatal(err)
			}
			ev := rec.wait(t, 2*time.Second, "changed /www (mode)", func(e sinkEvent) bool { return e.kind == "changed" && e.path == "/www" })
			if !slices.Equal(ev.attrs, []string{"mode"}) {
				t.Errorf("attributes %q, want [mode]", ev.attrs)
			}
		})
	}
}

// TestOrigins: with Config.Origins, every finding passed on carries its
// origin, and what the mount table says is the runtime's is not passed on.
func TestOrigins(t *testing.T) {
	dir := tree(t)
	mounts := origin.NewMounts([]string{"/www/sub"}) // a volume
	rec, _, _ := start(t, dir, Config{Inotify: true, Quick: 20 * time.Millisecond, Origins: origin.New(false, nil, mounts)})
	// A new mount at the same place in a new container: new times.
	future := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "www", "sub"), future, future); err != nil {
		t.Fatal(err)
	}
	for p, s := range map[string]string{"www/sub/x": "v", "dropped": "d", "app.conf": "tampered"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, want := range map[string]origin.Origin{
		"/www/sub/x": {Kind: origin.Volume, Mount: "/www/sub"},
		"/dropped":   {Kind: origin.Container},
		"/app.conf":  {Kind: origin.Baseline},
	} {
		ev := rec.wait(t, 2*time.Second, p, func(e sinkEvent) bool { return e.path == p })
		if ev.origin != want {
			t.Errorf("%s: origin %+v, want %+v", p, ev.origin, want)
		}
	}
	rec.moreScans(t, metrics.ScanQuick, 3)
	if n := rec.count(func(e sinkEvent) bool { return e.path == "/www/sub" }); n != 0 {
		t.Errorf("%d findings for the mount point's new times", n)
	}
}

// TestFirstCheckResolvesWhatItDoesNotFindAgain: the violations open when a
// monitor starts (left by an earlier container) are the sink's; the first
// full check reports those it finds again and resolves the others.
func TestFirstCheckResolvesWhatItDoesNotFindAgain(t *testing.T) {
	dir := tree(t)
	root, err := scan.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	res, err := root.Tree(context.Background(), scan.Options{Matcher: allMatcher{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.conf"), []byte("tampered\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	rec.open["/app.conf"] = true       // still tampered in this container
	rec.open["/www/index.html"] = true // clean in this container
	m := New(root, Config{Matcher: allMatcher{}, Baseline: mustIndex(t, res.Entries)}, rec)
	if err := m.check(context.Background(), metrics.ScanFull, time.Now()); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []string
	for _, e := range rec.events {
		got = append(got, e.kind+" "+e.path)
	}
	if want := []string{"changed /app.conf", "resolved /www/index.html"}; !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if !rec.open["/app.conf"] || len(rec.open) != 1 {
		t.Errorf("open after the first check: %v", rec.open)
	}
}

func mustIndex(t *testing.T, entries []attr.Entry) *Index {
	t.Helper()
	x, err := IndexOf(entries)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// A restore that completes while a whole-tree check runs is newer than
// what that check's scan saw: the check must not report the restored file
// again. Here the check's scan sees the tampered page, then (held at
// checkHook, as a check of a large tree is busy for minutes) the page is
// restored and Restored resolves it. Before, Restored did not mark the
// path as checked alone, so the check reported the tampered state again: a
// second restore, a second Event, and with kill, a killed clean container.
func TestRestoredDuringCheck(t *testing.T) {
	dir := tree(t)
	root, err := scan.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	res, err := root.Tree(context.Background(), scan.Options{Matcher: allMatcher{}})
	if err != nil {
		t.Fatal(err)
	}
	index := filepath.Join(dir, "www", "index.html")
	var fileSt unix.Stat_t
	if err := unix.Lstat(index, &fileSt); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	ctx := context.Background()
	var m *Monitor
	var restoreErr error
	restore := func(metrics.ScanType) {
		// Restored as the sidecar does: new file, same bytes and mtime,
		// renamed over (the directory's mtime is not compared here).
		tmp := filepath.Join(dir, "www", ".restore")
		if err := os.WriteFile(tmp, []byte("Hello, world!\n"), 0o644); err != nil {
			restoreErr = err
			return
		}
		if err := unix.UtimesNano(tmp, []unix.Timespec{{Nsec: unix.UTIME_OMIT}, fileSt.Mtim}); err != nil {
			restoreErr = err
			return
		}
		if err := os.Rename(tmp, index); err != nil {
			restoreErr = err
			return
		}
		clean, err := m.Restored(ctx, "/www/index.html", attr.Inode|attr.Ctime)
		if err == nil && !clean {
			err = errors.New("Restored: not clean")
		}
		restoreErr = err
	}
	m = New(root, Config{Matcher: contentMatcher{}, Baseline: mustIndex(t, res.Entries)}, rec)
	if err := os.WriteFile(index, []byte("Hacked!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.check(ctx, metrics.ScanFull, time.Now()); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, time.Second, "changed index", func(e sinkEvent) bool { return e.kind == "changed" && e.path == "/www/index.html" })
	before := rec.count(func(e sinkEvent) bool { return e.kind == "changed" && e.path == "/www/index.html" })

	m.cfg.checkHook = restore
	if err := m.check(ctx, metrics.ScanFull, time.Now()); err != nil {
		t.Fatal(err)
	}
	if restoreErr != nil {
		t.Fatal(restoreErr)
	}
	rec.wait(t, time.Second, "resolved index", func(e sinkEvent) bool { return e.kind == "resolved" && e.path == "/www/index.html" })
	if n := rec.count(func(e sinkEvent) bool { return e.kind == "changed" && e.path == "/www/index.html" }) - before; n != 0 {
		t.Errorf("the check that saw the page before its restore reported it %d more time(s)", n)
	}
	rec.mu.Lock()
	open := rec.open["/www/index.html"]
	rec.mu.Unlock()
	if open {
		t.Error("the restored page's violation is open again")
	}
}
