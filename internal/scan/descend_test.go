package scan

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

// subtreeMatcher watches only what is under sub; it walks the directories
// leading there without recording them.
type subtreeMatcher struct{ sub string }

func (m subtreeMatcher) Match(p string) (attr.Set, bool) {
	if p == m.sub || strings.HasPrefix(p, m.sub+"/") {
		return attr.All, false
	}
	return 0, true
}

func (m subtreeMatcher) Descend(dir string) bool {
	return dir == "/" || strings.HasPrefix(m.sub, dir+"/")
}

func TestDescendWalksSkippedDirectoriesWithoutRecordingThem(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"srv/www/css", "srv/other", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"srv/www/index.html", "srv/www/css/a.css", "srv/other/x", "etc/passwd", "srv/top"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A symlink named like the way down is never followed.
	if err := os.Symlink(filepath.Join(dir, "srv"), filepath.Join(dir, "srvlink")); err != nil {
		t.Fatal(err)
	}
	res, err := Tree(context.Background(), dir, Options{Matcher: subtreeMatcher{sub: "/srv/www"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range res.Entries {
		got = append(got, e.Path)
	}
	want := []string{"/srv/www", "/srv/www/css", "/srv/www/css/a.css", "/srv/www/index.html"}
	if !slices.Equal(got, want) {
		t.Fatalf("entries = %q, want %q", got, want)
	}
	// Without Descend, the same Match records nothing: "/" is skipped.
	res, err = Tree(context.Background(), dir, Options{Matcher: onlyMatch{subtreeMatcher{sub: "/srv/www"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 0 {
		t.Fatalf("without Descend: %d entries", len(res.Entries))
	}
}

type onlyMatch struct{ m subtreeMatcher }

func (o onlyMatch) Match(p string) (attr.Set, bool) { return o.m.Match(p) }

func TestEmitGivesTheSameEntriesInOrder(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"a/b", "a.b", "c"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a/b/x", "a/y", "a.b/z", "c/w"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := Tree(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []attr.Entry
	res, err := Tree(context.Background(), dir, Options{
		Emit: func(e *attr.Entry) { got = append(got, *e) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != nil || res.Stats.Entries != int64(len(want.Entries)) {
		t.Errorf("with Emit: %d entries collected, Stats.Entries %d", len(res.Entries), res.Stats.Entries)
	}
	if len(got) != len(want.Entries) {
		t.Fatalf("emitted %d entries, want %d", len(got), len(want.Entries))
	}
	for i := range got {
		if got[i].Path != want.Entries[i].Path || string(got[i].Hash) != string(want.Entries[i].Hash) {
			t.Errorf("entry %d: %q, want %q", i, got[i].Path, want.Entries[i].Path)
		}
	}
}
