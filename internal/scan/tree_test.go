package scan

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// TestTreeFileTypes records every kind of object with the attributes the
// kernel reports for it.
func TestTreeFileTypes(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	write(t, p("file"), "hello\n")
	must(t, os.Mkdir(p("dir"), 0o750))
	must(t, os.Symlink("file", p("link")))
	must(t, unix.Mkfifo(p("fifo"), 0o640))
	must(t, unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Chmod(p("null"), 0o666)) // past the umask
	must(t, unix.Mknod(p("loop"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))))
	sock, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	must(t, err)
	must(t, unix.Bind(sock, &unix.SockaddrUnix{Name: p("sock")}))
	unix.Close(sock) // the socket file stays
	write(t, p("suid"), "x")
	must(t, unix.Chmod(p("suid"), 0o4755))
	must(t, os.Mkdir(p("sgid"), 0o755))
	must(t, unix.Chmod(p("sgid"), 0o2775))
	must(t, os.Mkdir(p("sticky"), 0o755))
	must(t, unix.Chmod(p("sticky"), 0o1777))
	write(t, p("owned"), "o")
	must(t, os.Lchown(p("owned"), 1234, 5678))
	must(t, os.Lchown(p("link"), 4321, 8765))
	write(t, p("hard1"), "linked")
	must(t, os.Link(p("hard1"), p("dir/hard2")))
	write(t, p("bad\xff\xfe name"), "binary name")
	write(t, p("new\nline"), "newline name")
	mtime := time.Unix(1700000000, 123456789)
	must(t, os.Chtimes(p("file"), mtime, mtime))

	res := scanT(t, root, Options{Now: future})
	want := map[string]attr.FileType{
		"/": attr.TypeDir, "/file": attr.TypeRegular, "/dir": attr.TypeDir, "/link": attr.TypeSymlink,
		"/fifo": attr.TypeFIFO, "/null": attr.TypeChar, "/loop": attr.TypeBlock, "/sock": attr.TypeSocket,
		"/suid": attr.TypeRegular, "/sgid": attr.TypeDir, "/sticky": attr.TypeDir, "/owned": attr.TypeRegular,
		"/hard1": attr.TypeRegular, "/dir/hard2": attr.TypeRegular,
		"/bad\xff\xfe name": attr.TypeRegular, "/new\nline": attr.TypeRegular,
	}
	if len(res.Entries) != len(want) {
		t.Errorf("got %d entries %q, want %d", len(res.Entries), paths(res), len(want))
	}
	for path, typ := range want {
		e := mustFind(t, res, path)
		if e.Type != typ {
			t.Errorf("%q: type %v, want %v", path, e.Type, typ)
		}
		if e.Attrs != attr.All {
			t.Errorf("%q: attrs %v, want %v", path, e.Attrs, attr.All)
		}
		st := lstat(t, filepath.Join(root, path))
		if e.Inode != st.Ino || e.Nlink != uint64(st.Nlink) || e.UID != st.Uid || e.GID != st.Gid || e.Mode != st.Mode&0o7777 ||
			e.Size != st.Size || e.Mtime != st.Mtim.Nano() || e.Ctime != st.Ctim.Nano() {
			t.Errorf("%q: entry %+v does not match lstat %+v", path, e, st)
		}
		if e.Racy {
			t.Errorf("%q: racy with a scan an hour ahead", path)
		}
	}
	tests := []struct {
		path  string
		check func(e *attr.Entry) bool
	}{
		{"/file", func(e *attr.Entry) bool { return bytes.Equal(e.Hash, sum256([]byte("hello\n"))) && e.Size == 6 }},
		{"/file", func(e *attr.Entry) bool { return e.Mtime == mtime.UnixNano() }},
		{"/link", func(e *attr.Entry) bool { return e.Target == "file" && e.Hash == nil && e.UID == 4321 && e.GID == 8765 }},
		{"/fifo", func(e *attr.Entry) bool { return e.Mode == 0o640 && e.Hash == nil }},
		{"/null", func(e *attr.Entry) bool { return e.Rdev == unix.Mkdev(1, 3) && e.Mode == 0o666 }},
		{"/loop", func(e *attr.Entry) bool { return e.Rdev == unix.Mkdev(7, 200) }},
		{"/sock", func(e *attr.Entry) bool { return e.Hash == nil && e.Rdev == 0 }},
		{"/suid", func(e *attr.Entry) bool { return e.Mode == 0o4755 }},
		{"/sgid", func(e *attr.Entry) bool { return e.Mode == 0o2775 }},
		{"/sticky", func(e *attr.Entry) bool { return e.Mode == 0o1777 }},
		{"/owned", func(e *attr.Entry) bool { return e.UID == 1234 && e.GID == 5678 }},
		{"/hard1", func(e *attr.Entry) bool { return e.Nlink == 2 }},
		{"/dir/hard2", func(e *attr.Entry) bool { return e.Nlink == 2 && bytes.Equal(e.Hash, sum256([]byte("linked"))) }},
		{"/bad\xff\xfe name", func(e *attr.Entry) bool { return bytes.Equal(e.Hash, sum256([]byte("binary name"))) }},
		{"/new\nline", func(e *attr.Entry) bool { return bytes.Equal(e.Hash, sum256([]byte("newline name"))) }},
		{"/", func(e *attr.Entry) bool { return e.Hash == nil && e.Nlink >= 5 }},
	}
	for _, tc := range tests {
		if e := mustFind(t, res, tc.path); !tc.check(e) {
			t.Errorf("%q: unexpected entry %+v", tc.path, e)
		}
	}
	if res.Stats.Hashed != 7 || res.Stats.Dirs != 4 || len(res.Warnings) != 0 {
		t.Errorf("stats %+v, warnings %v", res.Stats, res.Warnings)
	}
}

// TestTreeAttrsAndHashes collects only what the matcher asks for, with each
// hash algorithm, and never walks or records an excluded directory.
func TestTreeAttrsAndHashes(t *testing.T) {
	root := t.TempDir()
	content := []byte("some content")
	for _, d := range []string{"s256", "s512", "b3", "meta", "skip"} {
		write(t, filepath.Join(root, d, "f"), string(content))
	}
	var matched []string
	var mu = make(chan struct{}, 1)
	m := matcherFunc(func(path string) (attr.Set, bool) {
		mu <- struct{}{}
		matched = append(matched, path)
		<-mu
		switch {
		case path == "/skip":
			return 0, true
		case len(path) > 5 && path[:5] == "/s512":
			return attr.Mode | attr.SHA512, false
		case len(path) > 3 && path[:3] == "/b3":
			return attr.Size | attr.BLAKE3, false
		case len(path) > 5 && path[:5] == "/meta":
			return attr.Mode | attr.UID, false
		case len(path) > 5 && path[:5] == "/s256":
			return attr.SHA256 | attr.SHA512 | attr.Mtime, false // two hashes: the first is used
		}
		return attr.All, false
	})
	res := scanT(t, root, Options{Matcher: m, Now: future})
	for _, p := range matched {
		if p == "/skip/f" {
			t.Errorf("Match was called under an excluded directory")
		}
	}
	if find(res, "/skip") != nil || find(res, "/skip/f") != nil {
		t.Errorf("excluded paths recorded: %q", paths(res))
	}
	s512 := sha512.Sum512(content)
	b3 := blake3.Sum256(content)
	tests := []struct {
		path  string
		attrs attr.Set
		hash  []byte
	}{
		{"/s256/f", attr.Type | attr.SHA256 | attr.Mtime, sum256(content)},
		{"/s512/f", attr.Type | attr.Mode | attr.SHA512, s512[:]},
		{"/b3/f", attr.Type | attr.Size | attr.BLAKE3, b3[:]},
		{"/meta/f", attr.Type | attr.Mode | attr.UID, nil},
	}
	for _, tc := range tests {
		e := mustFind(t, res, tc.path)
		if e.Attrs != tc.attrs || !bytes.Equal(e.Hash, tc.hash) {
			t.Errorf("%q: attrs %v hash %x, want %v %x", tc.path, e.Attrs, e.Hash, tc.attrs, tc.hash)
		}
	}
	if e := mustFind(t, res, "/meta/f"); e.Size != 0 || e.Inode != 0 || e.Mtime != 0 || e.Mode != 0o644 || e.Xattrs != nil {
		t.Errorf("/meta/f collected more than asked: %+v", e)
	}
	if e := mustFind(t, res, "/b3/f"); e.Size != int64(len(content)) || e.Mode != 0 {
		t.Errorf("/b3/f: %+v", e)
	}
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

type matcherFunc func(string) (attr.Set, bool)

func (f matcherFunc) Match(p string) (attr.Set, bool) { return f(p) }

// posixACL encodes a POSIX ACL in the kernel's xattr format.
func posixACL(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2) // POSIX_ACL_XATTR_VERSION
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}

// TestTreeXattrs reads every xattr, ACLs and file capabilities included, of
// open files and directories and of objects never opened (symlink, FIFO),
// through listxattrat and through the /proc/self/fd fallback.
func TestTreeXattrs(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	write(t, p("file"), "x")
	must(t, os.Mkdir(p("dir"), 0o755))
	must(t, os.Symlink("file", p("link")))
	must(t, unix.Mkfifo(p("fifo"), 0o600))
	write(t, p("plain"), "no xattrs")
	const undef = 0xffffffff
	acl := posixACL([3]uint32{0x01, 7, undef}, [3]uint32{0x02, 4, 1000}, [3]uint32{0x04, 4, undef}, [3]uint32{0x10, 4, undef}, [3]uint32{0x20, 4, undef})
	// struct vfs_cap_data, revision 2, effective, CAP_NET_BIND_SERVICE permitted.
	caps := binary.LittleEndian.AppendUint32(nil, 0x02000001)
	caps = binary.LittleEndian.AppendUint32(caps, 1<<10)
	caps = append(caps, make([]byte, 12)...)
	big := bytes.Repeat([]byte("v"), 3000) // bigger than the first buffer: the ERANGE path
	must(t, unix.Setxattr(p("file"), "user.b", []byte("two"), 0))
	must(t, unix.Setxattr(p("file"), "user.a", []byte("one"), 0))
	must(t, unix.Setxattr(p("file"), "user.big", big, 0))
	must(t, unix.Setxattr(p("file"), "user.empty", nil, 0))
	must(t, unix.Setxattr(p("file"), "system.posix_acl_access", acl, 0))
	must(t, unix.Setxattr(p("file"), "security.capability", caps, 0))
	must(t, unix.Setxattr(p("dir"), "user.d", []byte("dir"), 0))
	must(t, unix.Setxattr(p("dir"), "system.posix_acl_default", acl, 0))
	must(t, unix.Lsetxattr(p("link"), "trusted.l", []byte("on the link"), 0))
	must(t, unix.Setxattr(p("file"), "trusted.f", []byte("on the file"), 0))
	must(t, unix.Lsetxattr(p("fifo"), "trusted.p", []byte("on the fifo"), 0))

	type xa = attr.Xattr
	want := map[string][]xa{
		"/file": {{Name: "security.capability", Value: caps}, {Name: "system.posix_acl_access", Value: acl},
			{Name: "trusted.f", Value: []byte("on the file")}, {Name: "user.a", Value: []byte("one")},
			{Name: "user.b", Value: []byte("two")}, {Name: "user.big", Value: big}, {Name: "user.empty", Value: nil}},
		"/link":  {{Name: "trusted.l", Value: []byte("on the link")}},
		"/fifo":  {{Name: "trusted.p", Value: []byte("on the fifo")}},
		"/plain": nil,
	}
	for _, mode := range []string{"at", "proc", "quick"} {
		t.Run(mode, func(t *testing.T) {
			r, err := OpenRoot(root)
			must(t, err)
			defer r.Close()
			opts := Options{Now: future}
			switch mode {
			case "proc":
				r.noXattrat.Store(true)
			case "quick": // regular files are not opened: their xattrs come by name
				base := scanT(t, root, Options{Now: future})
				prior := hashIndex{}
				for i := range base.Entries {
					prior[base.Entries[i].Path] = &base.Entries[i]
				}
				opts.QuickHashes = prior
			}
			res, err := r.Tree(t.Context(), opts)
			must(t, err)
			if mode == "quick" && res.Stats.Reused != 2 {
				t.Errorf("quick mode reused %d hashes, want 2", res.Stats.Reused)
			}
			for path, xs := range want {
				e := mustFind(t, res, path)
				if len(e.Xattrs) != len(xs) {
					t.Errorf("%q: xattrs %q, want %q", path, e.Xattrs, xs)
					continue
				}
				for i := range xs {
					if e.Xattrs[i].Name != xs[i].Name || !bytes.Equal(e.Xattrs[i].Value, xs[i].Value) {
						t.Errorf("%q: xattr %d = %q, want %q", path, i, e.Xattrs[i], xs[i])
					}
				}
			}
			d := mustFind(t, res, "/dir").XattrMap()
			if string(d["user.d"]) != "dir" || !bytes.Equal(d["system.posix_acl_default"], acl) || len(d) != 2 {
				t.Errorf("/dir xattrs %q", d)
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings: %v", res.Warnings)
			}
			if mode != "proc" && r.noXattrat.Load() {
				t.Errorf("listxattrat was not used (kernel %s)", kernelRelease())
			}
		})
	}
}
