package watch

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/testwait"
)

// contentMatcher compares what survives a copy of a file's content (no
// times, no inode), as policies of container images do; transient is the
// rule's `transient`.
type contentMatcher struct{ transient bool }

func (contentMatcher) Match(string) (attr.Set, bool) {
	return attr.Type | attr.Mode | attr.UID | attr.GID | attr.Size | attr.SHA256, false
}

func (m contentMatcher) Transient(string) bool { return m.transient }

// tamperAndRevert writes the page and writes it back while the event
// reader is held, then lets it read both writes as one batch: the check
// sees the page as it was.
func tamperAndRevert(t *testing.T, dir string, gate chan struct{}) {
	t.Helper()
	index := filepath.Join(dir, "www", "index.html")
	orig, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{[]byte("Hacked world!\n"), orig} {
		f, err := os.OpenFile(index, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	close(gate)
}

// Issue 11 item 14: a tamper reverted within the coalescing window, under
// a policy without ctime, is still a finding: changed, "transient".
func TestTransientWriteReported(t *testing.T) {
	dir := tree(t)
	gate := make(chan struct{})
	rec, _, _ := start(t, dir, Config{Inotify: true, Matcher: contentMatcher{transient: true}, readGate: gate})
	tamperAndRevert(t, dir, gate)
	ev := rec.wait(t, 5*time.Second, "changed /www/index.html (transient)", func(e sinkEvent) bool {
		return e.kind == "changed" && e.path == "/www/index.html"
	})
	if !slices.Equal(ev.attrs, []string{AttrTransient}) {
		t.Errorf("attributes %q, want [transient]", ev.attrs)
	}
	if n := rec.count(func(e sinkEvent) bool { return e.kind == "changed" && e.path != "/www/index.html" }); n != 0 {
		t.Errorf("%d findings about other paths (the directory's event is not a write)", n)
	}
}

// A rule with `transient: false` does not report a write that left the
// content as it was: the event check runs and finds nothing.
func TestTransientWriteQuietRule(t *testing.T) {
	dir := tree(t)
	gate := make(chan struct{})
	rec, _, _ := start(t, dir, Config{Inotify: true, Matcher: contentMatcher{transient: false}, readGate: gate})
	tamperAndRevert(t, dir, gate)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec.mu.Lock()
		n := rec.scans[metrics.ScanEvent]
		rec.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event batch was not checked")
		}
		time.Sleep(time.Millisecond)
	}
	if n := rec.count(func(e sinkEvent) bool { return e.kind == "changed" }); n != 0 {
		t.Errorf("%d findings, want none: the rule says transient: false", n)
	}
}

// Issue 11 item 6: a protected file mapped shared and writable by a process
// of the target is a finding ("mmap") while the mapping is held, though
// its content and times are as they were; once the mapping is gone and the
// file hashes clean, it is resolved.
func TestMappedProtectedFileReported(t *testing.T) {
	dir := tree(t)
	var held atomic.Bool
	held.Store(true)
	mappings := func() []Mapping {
		if !held.Load() {
			return nil
		}
		return []Mapping{{PID: 42, Exe: "/app", Path: "/www/index.html"}}
	}
	rec, _, _ := start(t, dir, Config{Matcher: contentMatcher{transient: true}, Mappings: mappings, Quick: 20 * time.Millisecond})
	ev := rec.wait(t, 5*time.Second, "changed /www/index.html (mmap)", func(e sinkEvent) bool {
		return e.kind == "changed" && e.path == "/www/index.html"
	})
	if !slices.Equal(ev.attrs, []string{AttrMapped}) {
		t.Errorf("attributes %q, want [mmap]", ev.attrs)
	}
	held.Store(false)
	rec.wait(t, 5*time.Second, "resolved /www/index.html", func(e sinkEvent) bool {
		return e.kind == "resolved" && e.path == "/www/index.html"
	})
}

// Issue 11 item 4: an app that creates files without end opens at most
// MaxFindings violations; the findings beyond are counted (Omitted) by
// every whole-tree check, and the count falls back to 0 once the files are
// gone.
func TestFindingsBounded(t *testing.T) {
	dir := tree(t)
	rec, _, _ := start(t, dir, Config{Quick: 20 * time.Millisecond, MaxFindings: 3})
	for i := range 10 {
		if err := os.WriteFile(filepath.Join(dir, "www", "new"+strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitOmitted := func(what string, ok func(int) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			rec.mu.Lock()
			n := rec.omitted
			rec.mu.Unlock()
			if ok(n) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("omitted = %d, want %s", n, what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitOmitted(">= 8 (10 files and their directory, 3 passed on)", func(n int) bool { return n >= 8 })
	// Distinct paths: a directory written to while a whole-tree check
	// runs may be reported in two states (by its event and by the check).
	paths := map[string]bool{}
	rec.count(func(e sinkEvent) bool {
		if e.kind != "resolved" && !strings.HasPrefix(e.kind, "rescan") {
			paths[e.path] = true
		}
		return false
	})
	if len(paths) != 3 {
		t.Errorf("findings about %d paths passed on (%v), want 3", len(paths), paths)
	}
	for i := range 10 {
		os.Remove(filepath.Join(dir, "www", "new"+strconv.Itoa(i)))
	}
	waitOmitted("0 once the files are gone", func(n int) bool { return n == 0 })
}

// Issue 11 item 3: the check of a small protected file never waits for the
// hashing of a large one. A 2 GiB file (sparse: hashing it still reads 2
// GiB, 1.4 s at 1.5 GB/s, 20 s on a loaded machine) appears, and while its
// event is being handled the page is rewritten: the page's finding comes
// within 500 ms, before the large file could have been hashed. Before the
// fix the loop hashed the large file first, and the page waited for it.
func TestLargeFileDoesNotDelaySmall(t *testing.T) {
	dir := tree(t)
	rec, _, _ := start(t, dir, Config{Inotify: true})
	big, err := os.Create(filepath.Join(dir, "big.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := big.Truncate(2 << 30); err != nil {
		t.Fatal(err)
	}
	big.Close()
	// Let the big file's event reach the loop first (the ordering the
	// test is about, not an outcome waited for).
	time.Sleep(200 * time.Millisecond)
	wrote := time.Now()
	if err := os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("Hacked world!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ev := rec.wait(t, 10*time.Second, "changed /www/index.html", func(e sinkEvent) bool {
		return e.kind == "changed" && e.path == "/www/index.html"
	})
	if took := ev.at.Sub(wrote); took > 500*time.Millisecond {
		t.Errorf("the page's finding came %v after the write, want well under the time to hash 2 GiB", took)
	}
	// The large file is still checked, in the background.
	rec.wait(t, 120*time.Second, "added /big.log", func(e sinkEvent) bool { return e.kind == "added" && e.path == "/big.log" })
}

// A whole-tree check that could not compare a file (here: larger than the
// per-file byte limit, so not hashed; in a pod: unreadable), and that the
// baseline lacks the hash of too (so no comparison can fail), says so
// (Sink.Incomplete, with the path), and the open violation of that file
// stays open, while a clean file's is resolved. Before, the sidecar
// ignored the scan's warnings: an incomplete check looked complete and
// resolved what it had not compared.
func TestIncompleteCheck(t *testing.T) {
	dir := tree(t)
	if err := os.WriteFile(filepath.Join(dir, "big"), []byte("thirty bytes of content here.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := start(t, dir, Config{Quick: 20 * time.Millisecond, Scan: scan.Options{MaxFileBytes: 20}})
	rec.mu.Lock()
	n, sample := rec.incomplete[metrics.ScanFull], rec.sample
	// Open violations, as an earlier container may have left them.
	rec.open["/big"], rec.open["/app.conf"] = true, true
	rec.mu.Unlock()
	if n != 1 || len(sample) != 1 || sample[0].Path != "/big" || !sample[0].Incomplete() {
		t.Fatalf("first full check: Incomplete(%d, %v), want 1 path, /big", n, sample)
	}
	rec.wait(t, 5*time.Second, "resolved /app.conf", func(e sinkEvent) bool { return e.kind == "resolved" && e.path == "/app.conf" })
	rec.moreScans(t, metrics.ScanQuick, 2)
	rec.mu.Lock()
	open, quick := rec.open["/big"], rec.incomplete[metrics.ScanQuick]
	rec.mu.Unlock()
	if !open {
		t.Error("the violation of /big, which no check could compare, was resolved")
	}
	if quick != 1 {
		t.Errorf("quick checks: Incomplete(%d), want 1", quick)
	}
}

// Issue 11 item 3: a whole-tree check never blocks event handling. A
// scheduled full check is held after its scan (as a check of 300,000
// files is busy for minutes); a rewrite of the page meanwhile is found
// and reported while that check still runs. Before, the loop ran the
// check itself and read no event until it ended: here, never.
func TestEventsDuringFullCheck(t *testing.T) {
	dir := tree(t)
	held, release := make(chan struct{}), make(chan struct{})
	var fulls atomic.Int32
	hook := func(kind metrics.ScanType) {
		if kind == metrics.ScanFull && fulls.Add(1) == 2 {
			close(held)
			<-release
		}
	}
	rec, _, _ := start(t, dir, Config{Inotify: true, Full: 20 * time.Millisecond, checkHook: hook})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("the second full check did not start")
	}
	rec.mu.Lock()
	fullsDone := rec.scans[metrics.ScanFull]
	rec.mu.Unlock()
	if err := os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("Hacked world!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 5*time.Second, "changed /www/index.html while a full check runs", func(e sinkEvent) bool {
		return e.kind == "changed" && e.path == "/www/index.html"
	})
	rec.mu.Lock()
	still := rec.scans[metrics.ScanFull]
	rec.mu.Unlock()
	if still != fullsDone {
		t.Fatalf("%d full checks ended while one was held", still-fullsDone)
	}
	close(release)
	rec.moreScans(t, metrics.ScanFull, 1)
	// The held check's scan saw the page before the write; it must not
	// resolve the violation the event opened.
	rec.mu.Lock()
	open := rec.open["/www/index.html"]
	rec.mu.Unlock()
	if !open {
		t.Error("the violation of /www/index.html was resolved by a check that saw the page before the write")
	}
}

// An event check that leaves a path out (MaxFindings reached) counts it
// once until the next whole-tree check, however many events it gets.
// Before, each event on it added one: the overflow metric counted events.
// /www (its mtime changed; checked first, as the cheapest) takes the one
// place; /www/extra, written 5 times, is left out.
func TestOmittedCountedOnce(t *testing.T) {
	dir := tree(t)
	rec, _, _ := start(t, dir, Config{Inotify: true, MaxFindings: 1})
	extra := filepath.Join(dir, "www", "extra")
	for i := range 5 {
		rec.mu.Lock()
		n := rec.scans[metrics.ScanEvent]
		rec.mu.Unlock()
		if err := os.WriteFile(extra, []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		testwait.Eventually(t, 5*time.Second, time.Millisecond, "the write's event check", testwait.True(func() bool {
			rec.mu.Lock()
			defer rec.mu.Unlock()
			return rec.scans[metrics.ScanEvent] > n && rec.omitted > 0
		}))
	}
	rec.mu.Lock()
	omitted, events := rec.omitted, rec.scans[metrics.ScanEvent]
	rec.mu.Unlock()
	if omitted != 1 {
		t.Errorf("omitted = %d after %d event checks of one path left out, want 1", omitted, events)
	}
}
