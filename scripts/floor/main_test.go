package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFloor: every regular file is read whole, once, however the work is
// split; symlinks, directories and FIFOs are lstatted but never opened.
func TestFloor(t *testing.T) {
	root := t.TempDir()
	var files, bytes int64
	for d := 0; d < 7; d++ {
		dir := filepath.Join(root, "d"+string(rune('a'+d)), "sub")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 150; f++ { // more than one batch per directory
			size := (d*150 + f) % 3000
			if f == 0 {
				size = 5 << 20 // more than a batch's bytes
			}
			p := filepath.Join(dir, "f"+strings.Repeat("x", f%7)+string(rune('A'+f%26))+string(rune('0'+f/26)))
			if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
				t.Fatal(err)
			}
			files++
			bytes += int64(size)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := mkfifo(filepath.Join(root, "fifo")); err != nil {
		t.Fatal(err)
	}
	for _, workers := range []int{1, 2, 8} {
		got, err := floor(root, workers)
		if err != nil {
			t.Fatal(err)
		}
		if want := (totals{files: files, bytes: bytes}); got != want {
			t.Errorf("%d workers: got %+v, want %+v", workers, got, want)
		}
	}
	if _, err := floor(filepath.Join(root, "missing"), 1); err == nil {
		t.Error("a missing root: no error")
	}
}

func mkfifo(path string) error { return unix.Mkfifo(path, 0o600) }
