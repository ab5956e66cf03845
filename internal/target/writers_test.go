package target

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// devIno returns the device and inode of the file at path.
func devIno(t *testing.T, path string) (uint64, uint64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev, st.Ino
}

// hasOpenForWrite names a process holding the inode open for writing, not
// one holding it open for reading only, and counts the descriptors over
// MaxAttributedFDs instead of reading them.
func TestHasOpenForWrite(t *testing.T) {
	dir := t.TempDir()
	written, read := filepath.Join(dir, "written"), filepath.Join(dir, "read")
	for _, p := range []string{written, read} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w, err := os.OpenFile(written, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := os.Open(read)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pid := os.Getpid()

	dev, ino := devIno(t, written)
	if ok, over, err := hasOpenForWrite("/proc", pid, dev, ino); err != nil || !ok || over != 0 {
		t.Errorf("file open for writing: writer %v, over %d, err %v; want true, 0, nil", ok, over, err)
	}
	dev, ino = devIno(t, read)
	if ok, _, err := hasOpenForWrite("/proc", pid, dev, ino); err != nil || ok {
		t.Errorf("file open for reading: writer %v, err %v; want false, nil", ok, err)
	}

	// Past the bound: 300 more descriptors than MaxAttributedFDs (Go
	// raises the soft RLIMIT_NOFILE to the hard limit at start).
	const extra = 300
	var fds []int
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	for range MaxAttributedFDs + extra {
		fd, err := syscall.Dup(int(r.Fd()))
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("cannot hold %d descriptors in CI (RLIMIT_NOFILE): %v", MaxAttributedFDs+extra, err)
			}
			t.Skipf("cannot hold %d descriptors: %v", MaxAttributedFDs+extra, err)
		}
		fds = append(fds, fd)
	}
	dev, ino = devIno(t, written)
	ok, over, err := hasOpenForWrite("/proc", pid, dev, ino)
	if err != nil || over < extra {
		t.Errorf("%d descriptors: over %d, err %v; want at least %d over", MaxAttributedFDs+extra, over, err, extra)
	}
	// /proc lists descriptors in ascending order: the writer's, opened
	// before the duplicates, is among those looked at.
	if !ok {
		t.Errorf("writer at a low descriptor not found among the first %d", MaxAttributedFDs)
	}
}
