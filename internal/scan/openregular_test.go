package scan

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// OpenRegular opens a regular file and nothing else: a FIFO (whose open a
// writer would notice, and which would block without O_NONBLOCK) and a
// symlink (never followed, even to a regular file) are ErrNotRegular.
func TestOpenRegular(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "page"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("page", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	root, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f, size, err := root.OpenRegular("/page")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(b) != "hello" || size != 5 {
		t.Errorf("page: %q size %d %v", b, size, err)
	}
	for _, p := range []string{"/fifo", "/link"} {
		if f, _, err := root.OpenRegular(p); !errors.Is(err, ErrNotRegular) {
			if f != nil {
				f.Close()
			}
			t.Errorf("OpenRegular(%q) = %v, want ErrNotRegular", p, err)
		}
	}
	if _, _, err := root.OpenRegular("/missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenRegular(/missing) = %v, want not exist", err)
	}
}
