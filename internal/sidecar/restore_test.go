package sidecar

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/watch"
)

func want(path string, content []byte) *attr.Entry {
	sum := sha256.Sum256(content)
	return &attr.Entry{
		Path: path, Type: attr.TypeRegular, Attrs: attr.Mode | attr.UID | attr.GID | attr.Xattrs | attr.Mtime | attr.SHA256 | attr.Size,
		Mode: 0o4750, UID: 1234, GID: 5678, Mtime: 1_600_000_000_123_456_789, Size: int64(len(content)),
		Xattrs: []attr.Xattr{{Name: "user.origin", Value: []byte("image")}},
		Hash:   sum[:],
	}
}

func openRoot(t *testing.T, dir string) *scan.Root {
	t.Helper()
	r, err := scan.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRestoreReplacesPlantedSymlinkWithoutFollowingIt(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("outside\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "www", "index.html")); err != nil {
		t.Fatal(err)
	}
	content := []byte("Hello, world!\n")
	w := &rootWriter{root: openRoot(t, dir)}
	e := want("/www/index.html", content)
	if err := w.Restore(e.Path, e, content); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "outside\n" {
		t.Fatalf("restore wrote through the symlink: victim = %q", b)
	}
	// The restored file compares equal to the baseline entry except for what
	// a new file cannot keep (inode, ctime).
	got, err := openRoot(t, dir).Entry(e.Path, e.Attrs)
	if err != nil {
		t.Fatal(err)
	}
	if d := compare.Diff(e, &got); len(d) != 0 {
		t.Fatalf("restored file differs from its baseline in %q (%+v)", d, got)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "www")); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
}

func TestRestoreRefusesSymlinkedParent(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "www")); err != nil {
		t.Fatal(err)
	}
	w := &rootWriter{root: openRoot(t, dir)}
	e := want("/www/index.html", []byte("x"))
	err := w.Restore(e.Path, e, []byte("x"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("restore through a symlinked directory = %v, want a not-exist error", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("restore wrote outside the root: %v", ents)
	}
}

func TestObjectsKeepOnlyVerifiedContent(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"a": "Hello, world!\n", "big": string(make([]byte, 100)), "changed": "now"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := openRoot(t, dir)
	res, err := root.Tree(context.Background(), scan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// "changed" was different when the baseline was made.
	for i := range res.Entries {
		if res.Entries[i].Path == "/changed" {
			sum := sha256.Sum256([]byte("was"))
			res.Entries[i].Hash = sum[:]
			res.Entries[i].Size = 3
		}
	}
	o := &objects{dir: filepath.Join(t.TempDir(), "objects"), maxBytes: 64}
	idx, err := watch.IndexOf(res.Entries)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := o.keep(root, idx)
	if err != nil {
		t.Fatal(err)
	}
	if kept != 1 {
		t.Fatalf("kept %d objects, want 1 (big is over the limit, changed does not match)", kept)
	}
	for _, e := range res.Entries {
		got := o.get(&e)
		switch e.Path {
		case "/a":
			if string(got) != "Hello, world!\n" {
				t.Errorf("get(/a) = %q", got)
			}
		case "/big", "/changed":
			if got != nil {
				t.Errorf("get(%s) = %q, want nothing", e.Path, got)
			}
		}
	}
	// A corrupted object is never handed out.
	ents, _ := os.ReadDir(o.dir)
	if err := os.WriteFile(filepath.Join(o.dir, ents[0].Name()), []byte("Hacked, world\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, e := range res.Entries {
		if e.Path == "/a" && o.get(&e) != nil {
			t.Error("corrupted object returned")
		}
	}
}
