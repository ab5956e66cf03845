package scan

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

func TestEntry(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "dir", "sub", "file"), "entry")
	must(t, unix.Setxattr(filepath.Join(root, "dir", "sub", "file"), "user.x", []byte("y"), 0))
	must(t, os.Symlink("dir", filepath.Join(root, "dirlink")))
	must(t, os.Symlink("sub", filepath.Join(root, "dir", "sublink")))
	must(t, os.Symlink("/etc", filepath.Join(root, "etc")))
	must(t, unix.Mkfifo(filepath.Join(root, "dir", "fifo"), 0o600))
	res := scanT(t, root, Options{})
	r, err := OpenRoot(root)
	must(t, err)
	defer r.Close()

	for _, steps := range []bool{false, true} {
		// Every entry of the tree, the same as Tree recorded it (Racy aside:
		// it depends on the time of each call).
		for _, want := range res.Entries {
			got, err := r.Entry(want.Path, attr.All)
			if err != nil {
				t.Errorf("Entry(%q): %v", want.Path, err)
				continue
			}
			got.Racy, want.Racy = false, false
			if want.Type == attr.TypeDir { // listing a directory does not change it, but be exact about what matters
				got.Xattrs, want.Xattrs = nil, nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Entry(%q) = %+v, Tree recorded %+v", want.Path, got, want)
			}
		}
		if !steps {
			continue
		}
		fd, err := r.openDirSteps("/dir/sub")
		must(t, err)
		unix.Close(fd)
		if _, err := r.openDirSteps("/dirlink/sub"); !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("openDirSteps through a symlink: %v", err)
		}
	}
	notExist := []string{"/missing", "/dir/missing", "/missing/file", "/dirlink/sub/file", "/dir/sublink/file", "/etc/passwd", "/dir/sub/file/x", "/dir/fifo/x"}
	for _, p := range notExist {
		if e, err := r.Entry(p, attr.All); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Entry(%q) = %+v, %v; want fs.ErrNotExist", p, e, err)
		}
	}
	for _, p := range []string{"", "dir", "/dir/", "//dir", "/dir/../etc", "/./dir", "/dir\x00"} {
		if _, err := r.Entry(p, attr.All); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Entry(%q): err = %v, want an invalid-path error", p, err)
		}
	}
	e, err := r.Entry("/dir/sub/file", attr.Type|attr.Size)
	if err != nil || e.Attrs != attr.Type|attr.Size || e.Size != 5 || e.Hash != nil || e.Inode != 0 {
		t.Errorf("Entry with few attributes: %+v, %v", e, err)
	}
	must(t, r.Close())
	if _, err := r.Entry("/dir", attr.All); err == nil {
		t.Errorf("Entry after Close succeeded")
	}
}

// TestEntryChanges: Entry under the same races as Tree.
func TestEntryChanges(t *testing.T) {
	root := t.TempDir()
	for _, n := range []string{"gone", "to-link", "growing"} {
		write(t, filepath.Join(root, "d", n), "content of "+n)
	}
	write(t, filepath.Join(root, "d", "big"), strings.Repeat("big", 100))
	r, err := OpenRoot(root)
	must(t, err)
	defer r.Close()
	opts := Options{Now: future, beforeOpen: func(path string) {
		p := filepath.Join(root, path)
		switch path {
		case "/d/gone":
			check(t, os.Remove(p))
		case "/d/to-link":
			check(t, os.Remove(p))
			check(t, os.Symlink("/etc/passwd", p))
		}
	}, afterRead: func(path string) {
		if path == "/d/growing" {
			f, err := os.OpenFile(filepath.Join(root, path), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			_, err = f.WriteString("+")
			check(t, err)
			check(t, f.Close())
		}
	}, MaxFileBytes: 299}
	if _, err := r.EntryWith("/d/gone", attr.All, opts); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("vanished: err = %v", err)
	}
	if e, err := r.EntryWith("/d/to-link", attr.All, opts); err != nil || e.Type != attr.TypeSymlink || e.Target != "/etc/passwd" || e.Hash != nil {
		t.Errorf("swapped for a symlink: %+v, %v", e, err)
	}
	var w Warning
	if e, err := r.EntryWith("/d/growing", attr.All, opts); !errors.As(err, &w) || w.Op != "changed" || e.Hash != nil || e.Type != attr.TypeRegular {
		t.Errorf("changing: %+v, %v", e, err)
	}
	if e, err := r.EntryWith("/d/big", attr.All, opts); !errors.As(err, &w) || !errors.Is(err, ErrLimit) || e.Hash != nil || e.Size != 300 {
		t.Errorf("over MaxFileBytes: %+v, %v", e, err)
	}
	opts.MaxFileBytes = 0
	if e, err := r.EntryWith("/d/big", attr.All, opts); err != nil || e.Hash == nil || e.Racy {
		t.Errorf("no limit: %+v, %v", e, err)
	}
}

// TestEntryLongPath reaches a file deeper than PATH_MAX, which only a walk by
// descriptors can; Entry then goes one component at a time. Tree leaves the
// paths over MaxPathBytes out, with one Warning for the first directory over
// it (no baseline can hold them), and records the rest.
func TestEntryLongPath(t *testing.T) {
	root := t.TempDir()
	comp := strings.Repeat("x", 200)
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	must(t, err)
	path := ""
	for range 25 { // 25 * 201 bytes > PATH_MAX
		must(t, unix.Mkdirat(fd, comp, 0o755))
		next, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		unix.Close(fd)
		fd = next
		path += "/" + comp
	}
	f, err := unix.Openat(fd, "file", unix.O_CREAT|unix.O_WRONLY, 0o644)
	must(t, err)
	_, err = unix.Write(f, []byte("deep"))
	must(t, err)
	unix.Close(f)
	unix.Close(fd)
	path += "/file"

	res := scanT(t, root, Options{})
	over := strings.Repeat("/"+comp, MaxPathBytes/(len(comp)+1)+1)
	if len(res.Entries) != MaxPathBytes/(len(comp)+1)+1 || len(res.Warnings) != 1 || res.Warnings[0].Path != over ||
		!errors.Is(res.Warnings[0], ErrLimit) || !res.Warnings[0].Incomplete() {
		t.Errorf("Tree: %d entries, warnings %.300v", len(res.Entries), res.Warnings)
	}
	r, err := OpenRoot(root)
	must(t, err)
	defer r.Close()
	if e, err := r.Entry(path, attr.All); err != nil || !bytes.Equal(e.Hash, sum256([]byte("deep"))) {
		t.Errorf("Entry: %+v, %v", e, err)
	}
	// t.TempDir's cleanup cannot remove paths this long: do it by parts.
	t.Cleanup(func() { removeDeep(t, root, comp, 25) })
}

func removeDeep(t *testing.T, root, comp string, depth int) {
	t.Helper()
	for d := depth; d > 0; d-- {
		// Walk to the parent level by level to stay under PATH_MAX.
		fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		must(t, err)
		for range d - 1 {
			next, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			must(t, err)
			unix.Close(fd)
			fd = next
		}
		if d == depth {
			sub, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			must(t, err)
			must(t, unix.Unlinkat(sub, "file", 0))
			unix.Close(sub)
		}
		must(t, unix.Unlinkat(fd, comp, unix.AT_REMOVEDIR))
		unix.Close(fd)
	}
}
