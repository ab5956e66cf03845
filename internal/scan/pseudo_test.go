package scan

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// mountT mounts a file system of type fstype (or, with fstype "bind", a bind
// mount of source) on target for the test, and unmounts it at the end. It
// needs root, like the rest of these tests, and fails without it.
func mountT(t *testing.T, source, target, fstype string) {
	t.Helper()
	var flags uintptr
	if fstype == "bind" {
		flags, fstype = unix.MS_BIND, ""
	}
	if err := unix.Mount(source, target, fstype, flags, ""); err != nil {
		t.Fatalf("mount %s on %s (needs root): %v", source, target, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	})
}

// namer records everything and names the paths in names (see Namer).
type namer map[string]bool

func (namer) Match(string) (attr.Set, bool) { return attr.All, false }
func (n namer) Names(dir string) bool       { return n[dir] }

// pseudoRoot is a tree that holds a procfs, a sysfs and an mqueue mount, and
// a procfs file bind-mounted over a regular file: what `paths: /` on a
// container's root meets. The procfs holds this process's pagemap, which
// reports size 0 and reads 2^48 bytes.
func pseudoRoot(t *testing.T) string {
	root := t.TempDir()
	for _, d := range []string{"proc", "sys", "mq", "etc"} {
		must(t, os.Mkdir(filepath.Join(root, d), 0o755))
	}
	write(t, filepath.Join(root, "etc", "hostname"), "web\n")
	write(t, filepath.Join(root, "etc", "status"), "regular at first\n")
	mountT(t, "proc", filepath.Join(root, "proc"), "proc")
	mountT(t, "sysfs", filepath.Join(root, "sys"), "sysfs")
	mountT(t, "mqueue", filepath.Join(root, "mq"), "mqueue")
	mountT(t, "/proc/self/status", filepath.Join(root, "etc", "status"), "bind")
	return root
}

// TestTreeSkipsPseudoFileSystems (issue 11, item 5): a scan of a root that
// holds pseudo file systems finishes (scanT fails after 30 s; reading
// pagemap to its end would take days), records none of them (not even the
// mount point, whose link count and times change with every process), and
// counts them; a rule that names one has it walked.
func TestTreeSkipsPseudoFileSystems(t *testing.T) {
	root := pseudoRoot(t)
	for _, tc := range []struct {
		name string
		m    Matcher
	}{{"no matcher", nil}, {"matcher that names none", namer{}}} {
		t.Run(tc.name, func(t *testing.T) {
			res := scanT(t, root, Options{Matcher: tc.m, MaxFileBytes: 1 << 20})
			for _, e := range res.Entries {
				for _, p := range []string{"/proc", "/sys", "/mq", "/etc/status"} {
					if e.Path == p || strings.HasPrefix(e.Path, p+"/") {
						t.Errorf("recorded %q on a pseudo file system", e.Path)
					}
				}
			}
			mustFind(t, res, "/etc/hostname")
			if res.Stats.Pseudo != 4 {
				t.Errorf("Stats.Pseudo = %d, want 4 (proc, sys, mq, /etc/status)", res.Stats.Pseudo)
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings: %v", res.Warnings)
			}
		})
	}
	t.Run("named", func(t *testing.T) {
		res := scanT(t, root, Options{Matcher: namer{"/mq": true, "/etc/status": true}, MaxFileBytes: 1 << 20})
		if e := mustFind(t, res, "/mq"); e.Type != attr.TypeDir {
			t.Errorf("/mq: %+v", e)
		}
		if e := mustFind(t, res, "/etc/status"); len(e.Hash) == 0 {
			t.Errorf("/etc/status, named, not hashed: %+v", e)
		}
		if find(res, "/proc") != nil || find(res, "/sys") != nil || res.Stats.Pseudo != 2 {
			t.Errorf("entries %q, Stats.Pseudo = %d; want /proc and /sys skipped", paths(res), res.Stats.Pseudo)
		}
	})
	t.Run("entry", func(t *testing.T) {
		r, err := OpenRoot(root)
		must(t, err)
		defer r.Close()
		for _, p := range []string{"/proc/self/pagemap", "/sys/kernel/uevent_seqnum", "/etc/status"} {
			if e, err := r.EntryWith(p, attr.All, Options{MaxFileBytes: 1 << 20}); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Entry(%q) = %+v, %v; want not found", p, e, err)
			}
		}
		if e, err := r.EntryWith("/etc/status", attr.All, Options{Matcher: namer{"/etc/status": true}}); err != nil || len(e.Hash) == 0 {
			t.Errorf("Entry(/etc/status) named: %+v, %v", e, err)
		}
	})
}
