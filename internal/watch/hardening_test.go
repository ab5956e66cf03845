package watch

import (
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/metrics"
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
