package target

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMapsLine(t *testing.T) {
	for _, tc := range []struct {
		line, path string
		ok         bool
	}{
		{"7f1c2a000000-7f1c2a001000 rw-s 00000000 00:2d 12                         /www/index.html\n", "/www/index.html", true},
		{"7f1c2a000000-7f1c2a001000 -w-s 00000000 00:2d 12 /a b\n", "/a b", true},
		{"7f1c2a000000-7f1c2a001000 rw-s 00000000 00:2d 12 /new\\012line\n", "/new\nline", true},
		{"7f1c2a000000-7f1c2a001000 r--s 00000000 00:2d 12 /www/index.html\n", "", false}, // read-only shared
		{"7f1c2a000000-7f1c2a001000 rw-p 00000000 00:2d 12 /www/index.html\n", "", false}, // private: copy on write
		{"7f1c2a000000-7f1c2a001000 rw-s 00000000 00:2d 12 /www/index.html (deleted)\n", "", false},
		{"7f1c2a000000-7f1c2a001000 rw-s 00000000 00:01 7 /memfd:x (deleted)\n", "", false},
		{"7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0                          [stack]\n", "", false},
		{"7ffd1c000000-7ffd1c021000 rw-s 00000000 00:00 0\n", "", false},
		{"garbage\n", "", false},
		{"", "", false},
	} {
		path, ok := parseMapsLine([]byte(tc.line))
		if path != tc.path || ok != tc.ok {
			t.Errorf("parseMapsLine(%q) = %q, %v; want %q, %v", tc.line, path, ok, tc.path, tc.ok)
		}
	}
}

// The test's own process maps a file shared and writable: it is listed,
// once, and a private or read-only mapping is not.
func TestWritableSharedOwnProcess(t *testing.T) {
	dir := t.TempDir()
	mapFile := func(name string, prot, flags int) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close() // the mapping outlives the descriptor
		b, err := unix.Mmap(int(f.Fd()), 0, 4096, prot, flags)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Munmap(b) })
	}
	mapFile("shared", unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	mapFile("shared", unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED) // twice: listed once
	mapFile("private", unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	mapFile("readonly", unix.PROT_READ, unix.MAP_SHARED)
	p, err := readProcess("/proc", os.Getpid(), nil)
	if err != nil {
		t.Fatal(err)
	}
	paths, err := writableShared("/proc", p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "shared")}; !slices.Equal(paths, want) {
		t.Errorf("writableShared = %q, want %q", paths, want)
	}
}
