package watch

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Container runtimes give a container an overlayfs root. inotify on the
// merged directory reports changes made through the overlay (what a process
// in the container does), including copy-up of a lower-layer file. Changes
// made to the layers underneath, bypassing the overlay (from the node), are
// not reported; the scheduled checks catch those.
func TestInotifyOnOverlayfs(t *testing.T) {
	base := t.TempDir()
	lower, upper, work, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{lower, upper, work, merged, filepath.Join(lower, "www")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "www", "index.html"), []byte("Hello, world!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "www", "other.html"), []byte("other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("this test needs root and overlayfs (as container runtimes use): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })

	rec, _, _ := start(t, merged, Config{Inotify: true})
	// Through the overlay: a copy-up of the lower file, seen by inotify.
	if err := os.WriteFile(filepath.Join(merged, "www", "index.html"), []byte("Hacked!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 2*time.Second, "changed /www/index.html through the overlay", func(e sinkEvent) bool {
		return e.kind == "changed" && e.path == "/www/index.html"
	})
	// A write can be seen in two states (truncated, then written): let it
	// settle before counting.
	rec.barrier(t, filepath.Join(merged, "www"), "settled")
	before := rec.count(func(e sinkEvent) bool { return e.path == "/www/index.html" })
	// Bypassing the overlay (writing the upper layer from the node): no
	// event; documented, and covered by the scheduled checks.
	if err := os.WriteFile(filepath.Join(upper, "www", "index.html"), []byte("Hacked again, from below\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rec.barrier(t, filepath.Join(merged, "www"), "after")
	if n := rec.count(func(e sinkEvent) bool { return e.path == "/www/index.html" }) - before; n != 0 {
		t.Errorf("a write to the upper layer gave %d findings by inotify; docs/sidecar.md says it gives none until a scheduled check: update one of them", n)
	}
}
