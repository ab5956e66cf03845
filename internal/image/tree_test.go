package image

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/scan"
)

func wantPaths(t *testing.T, es map[string]attr.Entry, want ...string) {
	t.Helper()
	sortPaths(want)
	if got := paths(es); !slices.Equal(got, want) {
		t.Fatalf("paths:\n got %q\nwant %q", got, want)
	}
}

func TestWhiteoutDirectoryThenRecreate(t *testing.T) {
	l1 := layer(t, dir("a/"), file("a/x", "x"), dir("a/sub/"), file("a/sub/y", "y"), file("keep", "k"))
	l2 := layer(t, wh(".wh.a"))
	l3 := layer(t, dir("a/"), file("a/z", "z"))
	es := mustApply(t, l1, l2, l3)
	wantPaths(t, es, "/", "/a", "/a/z", "/keep")
	if !bytes.Equal(es["/a/z"].Hash, sum("z")) {
		t.Errorf("/a/z hash %x", es["/a/z"].Hash)
	}
	// The whiteout and the new directory in one layer give the same.
	es = mustApply(t, l1, layer(t, wh(".wh.a"), dir("a/"), file("a/z", "z")))
	wantPaths(t, es, "/", "/a", "/a/z", "/keep")
	// A whiteout of a name that does not exist changes nothing.
	es = mustApply(t, l1, layer(t, wh(".wh.nothing")))
	wantPaths(t, es, "/", "/a", "/a/sub", "/a/sub/y", "/a/x", "/keep")
}

func TestOpaqueDirectory(t *testing.T) {
	l1 := layer(t, dir("d/"), file("d/x", "x"), dir("d/sub/"), file("d/sub/y", "y"), file("d2", "other"))
	for name, l2 := range map[string][]byte{
		"marker first": layer(t, dir("d/"), wh("d/.wh..wh..opq"), file("d/new", "n"), dir("d/sub/"), file("d/sub/z", "z")),
		"marker last":  layer(t, dir("d/"), file("d/new", "n"), dir("d/sub/"), file("d/sub/z", "z"), wh("d/.wh..wh..opq")),
	} {
		t.Run(name, func(t *testing.T) {
			es := mustApply(t, l1, l2)
			wantPaths(t, es, "/", "/d", "/d/new", "/d/sub", "/d/sub/z", "/d2")
		})
	}
	// AUFS bookkeeping names are skipped, not applied.
	es := mustApply(t, l1, layer(t, wh("d/.wh..wh.plnk")))
	wantPaths(t, es, "/", "/d", "/d/sub", "/d/sub/y", "/d/x", "/d2")
}

// TestOpaqueRepeated: a marker repeated in one layer, or in a directory
// beneath one already emptied, changes nothing more; in the next layer it
// applies again.
func TestOpaqueRepeated(t *testing.T) {
	l1 := layer(t, dir("d/"), file("d/x", "x"), dir("d/sub/"), file("d/sub/y", "y"))
	l2 := layer(t, wh("d/.wh..wh..opq"), file("d/new", "n"), dir("d/sub/"), wh("d/sub/.wh..wh..opq"),
		file("d/sub/z", "z"), wh("d/.wh..wh..opq"), wh("d/sub/.wh..wh..opq"))
	wantPaths(t, mustApply(t, l1, l2), "/", "/d", "/d/new", "/d/sub", "/d/sub/z")
	l3 := layer(t, dir("d/"), file("d/last", "l"), wh("d/.wh..wh..opq"))
	wantPaths(t, mustApply(t, l1, l2, l3), "/", "/d", "/d/last")
}

// BenchmarkOpaqueRepeated: a layer of 20,000 files in one directory and
// as many opaque markers for it. Each marker walked the directory again
// before dropLower remembered the layer it ran for: 14.8 s, against 0.8 s
// since (quadratic: 200,000 of each, a 200 MB layer, took ~25 minutes).
func BenchmarkOpaqueRepeated(b *testing.B) {
	const n = 20000
	items := []item{dir("d/")}
	for i := range n {
		items = append(items, file(fmt.Sprintf("d/f%d", i), ""))
	}
	for range n {
		items = append(items, wh("d/.wh..wh..opq"))
	}
	l := layer(b, items...)
	b.ResetTimer()
	for range b.N {
		mustApply(b, l)
	}
}

func TestHardLinks(t *testing.T) {
	t.Run("target deleted by a later layer", func(t *testing.T) {
		es := mustApply(t,
			layer(t, file("f", "abc"), hardlink("g", "f")),
			layer(t, wh(".wh.f")))
		wantPaths(t, es, "/", "/g")
		g := es["/g"]
		if g.Type != attr.TypeRegular || g.Size != 3 || !bytes.Equal(g.Hash, sum("abc")) {
			t.Errorf("/g = %+v, want the content of the deleted target", g)
		}
	})
	t.Run("target replaced by a later layer", func(t *testing.T) {
		es := mustApply(t,
			layer(t, file("f", "old"), hardlink("g", "f")),
			layer(t, file("f", "new!")))
		if !bytes.Equal(es["/g"].Hash, sum("old")) || !bytes.Equal(es["/f"].Hash, sum("new!")) {
			t.Errorf("f %x g %x: a new file is a new inode, the link keeps the old one", es["/f"].Hash, es["/g"].Hash)
		}
	})
	t.Run("across layers", func(t *testing.T) {
		tr, err := applyAll(t, nil, Limits{},
			layer(t, dir("bin/"), file("bin/a", "binary")),
			layer(t, item{name: "bin/b", typ: tar.TypeLink, link: "bin/a", mode: 0o755}))
		if err != nil {
			t.Fatal(err)
		}
		es := entries(t, tr)
		a, b := es["/bin/a"], es["/bin/b"]
		if !bytes.Equal(a.Hash, b.Hash) || a.Mode != 0o755 || b.Mode != 0o755 || b.Size != 6 {
			t.Errorf("a %+v\nb %+v: a link shares the object, and sets its mode", a, b)
		}
	})
	for name, l := range map[string][]byte{
		"to a directory":    layer(t, dir("d/"), hardlink("l", "d")),
		"with ..":           layer(t, file("f", "x"), hardlink("l", "../f")),
		"absolute":          layer(t, file("f", "x"), hardlink("l", "/f")),
		"through a symlink": layer(t, dir("d/"), file("d/f", "x"), symlink("s", "d"), hardlink("l", "s/f")),
		"to the root":       layer(t, hardlink("l", "./")),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := applyAll(t, nil, Limits{}, l); !errors.Is(err, ErrUnsafe) {
				t.Fatalf("err = %v, want ErrUnsafe", err)
			}
		})
	}
	t.Run("to a symlink", func(t *testing.T) {
		es := mustApply(t, layer(t, symlink("s", "target"), item{name: "l", typ: tar.TypeLink, link: "s", mode: 0o644}))
		if e := es["/l"]; e.Type != attr.TypeSymlink || e.Target != "target" || e.Mode != 0o777 {
			t.Errorf("/l %+v: a link to a symlink is the symlink, mode 0777", e)
		}
	})
	if _, err := applyAll(t, nil, Limits{}, layer(t, hardlink("l", "missing"))); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("link to a missing target: err = %v", err)
	}
}

func TestPAXRecords(t *testing.T) {
	caps := string([]byte{0, 0, 0, 2, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // v2, cap_net_bind_service
	// user::rwx user:1000:r-x group::r-x mask::r-x other::---, as 0750 says.
	acl := aclValue(t, [][3]uint32{{aclUserObj, 7, 0}, {aclUser, 5, 1000}, {aclGroupObj, 5, 0}, {aclMask, 5, 0}, {aclOther, 0, 0}})
	minimal := aclValue(t, [][3]uint32{{aclUserObj, 7, 0}, {aclGroupObj, 5, 0}, {aclOther, 5, 0}})
	mtime := time.Unix(1_600_000_000, 987654321)
	es := mustApply(t, layer(t,
		item{name: "ping", body: "p", mode: 0o750, mtime: mtime, pax: map[string]string{
			"SCHILY.xattr.security.capability":      caps,
			"SCHILY.xattr.user.note":                "hi",
			"SCHILY.xattr." + aclAccess:             acl,
			"SCHILY.xattr.system.posix_acl_default": minimal,
		}},
		item{name: "plain", body: "q", mode: 0o755, pax: map[string]string{"SCHILY.xattr." + aclAccess: minimal}},
		// The ACL says 0750, the mode 0700: containerd and podman disagree.
		item{name: "odd", body: "o", mode: 0o700, pax: map[string]string{"SCHILY.xattr." + aclAccess: acl}},
	))
	p := es["/ping"]
	if p.Mtime != mtime.UnixNano() || p.Mode != 0o750 {
		t.Errorf("mtime %d mode %o, want %d (nanoseconds from PAX), 0750", p.Mtime, p.Mode, mtime.UnixNano())
	}
	got := p.XattrMap()
	if string(got["security.capability"]) != caps || string(got["user.note"]) != "hi" {
		t.Errorf("xattrs %q", got)
	}
	// Read back, entries without an id have ACL_UNDEFINED_ID.
	want := aclValue(t, [][3]uint32{{aclUserObj, 7, aclUndefined}, {aclUser, 5, 1000}, {aclGroupObj, 5, aclUndefined}, {aclMask, 5, aclUndefined}, {aclOther, 0, aclUndefined}})
	if string(got[aclAccess]) != want {
		t.Errorf("access ACL %x, want %x", got[aclAccess], want)
	}
	if string(got["system.posix_acl_default"]) != minimal {
		t.Errorf("default ACL changed: %x", got["system.posix_acl_default"])
	}
	// An access ACL that says no more than the mode is not stored.
	if x := es["/plain"].Xattrs; len(x) != 0 || es["/plain"].Mode != 0o755 {
		t.Errorf("/plain %+v, want no xattrs (a minimal ACL is the mode)", es["/plain"])
	}
	if o := es["/odd"]; o.Attrs.Any(attr.Mode|attr.Xattrs) || !o.Attrs.Has(attr.SHA256) {
		t.Errorf("/odd records %s: runtimes disagree on its mode and ACL", o.Attrs)
	}
}

func aclValue(t *testing.T, entries [][3]uint32) string {
	t.Helper()
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return string(b)
}

func TestOddNames(t *testing.T) {
	names := []string{"dir/new\nline", "dir/\xff\xfeinvalid", "dir/tab\there", "dir/ space", "dir/-dash", "dir/\x1b[31mred"}
	items := []item{dir("dir/")}
	for _, n := range names {
		items = append(items, file(n, n))
	}
	es := mustApply(t, layer(t, items...))
	for _, n := range names {
		e, ok := es["/"+n]
		if !ok || !bytes.Equal(e.Hash, sum(n)) {
			t.Errorf("%q: %+v, %v", n, e, ok)
		}
	}
}

func TestHostileNames(t *testing.T) {
	long := strings.Repeat("x", 256)
	for name, l := range map[string][]byte{
		"absolute":                   layer(t, file("/etc/passwd", "x")),
		"dotdot":                     layer(t, file("../x", "x")),
		"dotdot inside":              layer(t, dir("a/"), file("a/../../x", "x")),
		"dot inside":                 layer(t, file("a/./x", "x")),
		"empty component":            layer(t, file("a//x", "x")),
		"through a symlink":          layer(t, symlink("etc", "/etc"), file("etc/passwd", "x")),
		"through a rel link":         layer(t, dir("d/"), symlink("s", "../.."), file("s/x", "x")),
		"overlong component":         layer(t, file(long, "x")),
		"overlong path":              layer(t, file(strings.Repeat("d/", 2049)+"f", "x")),
		"whiteout of ..":             layer(t, wh("a/.wh..."), dir("a/")),
		"whiteout through a symlink": layer(t, symlink("s", "/"), wh("s/.wh.etc")),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := applyAll(t, nil, Limits{}, l)
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("err = %v, want ErrUnsafe", err)
			}
			if !strings.Contains(err.Error(), "layer 1") {
				t.Errorf("err = %v, want it to name the layer", err)
			}
		})
	}
	if _, err := splitName("a\x00b"); !errors.Is(err, ErrUnsafe) {
		t.Errorf("NUL: err = %v", err)
	}
	// A file under what a lower layer made a regular file.
	if _, err := applyAll(t, nil, Limits{}, layer(t, file("f", "x")), layer(t, file("f/x", "y"))); err == nil {
		t.Error("a file beneath a file was applied")
	}
	// A symlink is never followed, but may be replaced.
	es := mustApply(t, layer(t, symlink("etc", "/host/etc")), layer(t, dir("etc/"), file("etc/passwd", "root")))
	if es["/etc"].Type != attr.TypeDir || !bytes.Equal(es["/etc/passwd"].Hash, sum("root")) {
		t.Errorf("replacing a symlink by a directory: %+v", es["/etc"])
	}
}

func TestNULInPAXPath(t *testing.T) {
	// tar.Writer writes no PAX header by hand: build the blocks.
	rec := "12 path=a\x00b\n"
	var buf bytes.Buffer
	buf.Write(rawHeader("PaxHeaders/f", tar.TypeXHeader, len(rec)))
	buf.Write(pad([]byte(rec)))
	buf.Write(rawHeader("f", tar.TypeReg, 0))
	buf.Write(make([]byte, 1024))
	_, err := applyAll(t, nil, Limits{}, buf.Bytes())
	if err == nil {
		t.Fatal("a NUL in a PAX path was applied")
	}
	t.Log(err)
	// Without the NUL the same blocks are applied: the NUL is what fails.
	buf.Reset()
	rec = "11 path=ab\n"
	buf.Write(rawHeader("PaxHeaders/f", tar.TypeXHeader, len(rec)))
	buf.Write(pad([]byte(rec)))
	buf.Write(rawHeader("f", tar.TypeReg, 0))
	buf.Write(make([]byte, 1024))
	if _, err := applyAll(t, nil, Limits{}, buf.Bytes()); err != nil {
		t.Fatalf("the same layer without the NUL: %v", err)
	}
}

// rawHeader returns a ustar header block.
func rawHeader(name string, typ byte, size int) []byte {
	b := make([]byte, 512)
	copy(b, name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typ
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ")
	var chk int
	for _, c := range b {
		chk += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", chk))
	return b
}

func pad(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }

func TestSparseRefused(t *testing.T) {
	// A PAX 0.1 sparse file of 1 TiB from 1 byte of data (tar.Writer
	// writes no sparse files: build the blocks).
	var rec string
	for _, kv := range [][2]string{
		{"GNU.sparse.major", "0"}, {"GNU.sparse.minor", "1"}, {"GNU.sparse.name", "big"},
		{"GNU.sparse.size", "1099511627776"}, {"GNU.sparse.numblocks", "1"}, {"GNU.sparse.map", "0,1"},
	} {
		rec += paxRecord(kv[0], kv[1])
	}
	var buf bytes.Buffer
	buf.Write(rawHeader("PaxHeaders/big", tar.TypeXHeader, len(rec)))
	buf.Write(pad([]byte(rec)))
	buf.Write(rawHeader("big", tar.TypeReg, 1))
	buf.Write(pad([]byte("x")))
	buf.Write(make([]byte, 1024))
	if _, err := applyAll(t, nil, Limits{}, buf.Bytes()); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "sparse") {
		t.Fatalf("a sparse file: err = %v, want ErrUnsupported", err)
	}
}

// paxRecord returns one PAX record, its length included.
func paxRecord(k, v string) string {
	body := " " + k + "=" + v + "\n"
	n := len(body) + 1
	for len(fmt.Sprint(n))+len(body) != n {
		n++
	}
	return fmt.Sprint(n) + body
}

func TestTypes(t *testing.T) {
	es := mustApply(t, layer(t,
		dir("dev/"),
		item{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3, mode: 0o666},
		item{name: "dev/sda", typ: tar.TypeBlock, major: 8, minor: 0, mode: 0o660, gid: 6},
		item{name: "fifo", typ: tar.TypeFifo, mode: 0o600},
		symlink("lnk", "/etc/shadow"),
	))
	if e := es["/dev/null"]; e.Type != attr.TypeChar || e.Rdev != 0x103 || e.Mode != 0o666 {
		t.Errorf("/dev/null %+v", e)
	}
	if e := es["/dev/sda"]; e.Type != attr.TypeBlock || e.Rdev != 0x800 || e.GID != 6 {
		t.Errorf("/dev/sda %+v", e)
	}
	if e := es["/fifo"]; e.Type != attr.TypeFIFO || e.Mode != 0o600 || e.Hash != nil {
		t.Errorf("/fifo %+v", e)
	}
	if e := es["/lnk"]; e.Type != attr.TypeSymlink || e.Target != "/etc/shadow" || e.Size != 11 || e.Mode != 0o777 {
		t.Errorf("/lnk %+v", e)
	}
	if e := es["/"]; e.Attrs != attr.Type || e.Type != attr.TypeDir {
		t.Errorf("root %+v: only its type is the image's", e)
	}
	for p, e := range es {
		if e.Attrs.Any(attr.Inode | attr.Nlink | attr.Ctime) {
			t.Errorf("%q records %s: not from an image", p, e.Attrs)
		}
	}
}

func TestImpliedDirectories(t *testing.T) {
	es := mustApply(t,
		layer(t, item{name: "a/", typ: tar.TypeDir, mode: 0o700, uid: 5}, file("a/f", "f")),
		layer(t, file("a/b/c", "c")))
	// /a/b was created by the runtime: 0755 root, at unpack time.
	if e := es["/a/b"]; e.Mode != 0o755 || e.UID != 0 || e.Attrs.Has(attr.Mtime) || !e.Attrs.Has(attr.Mode) {
		t.Errorf("/a/b %+v", e)
	}
	// /a was reached into by layer 2 without an entry: runtimes disagree
	// about its mode, owner and time.
	if e := es["/a"]; e.Attrs.Any(attr.Mode|attr.UID|attr.Mtime) || !e.Attrs.Has(attr.GID) {
		t.Errorf("/a %+v (%s)", e, e.Attrs)
	}
	// Listed again by layer 2, it is the image's again.
	es = mustApply(t,
		layer(t, item{name: "a/", typ: tar.TypeDir, mode: 0o700, uid: 5}, file("a/f", "f")),
		layer(t, item{name: "a/", typ: tar.TypeDir, mode: 0o700, uid: 5}, file("a/b", "b")))
	if e := es["/a"]; e.Mode != 0o700 || e.UID != 5 || e.Mtime != epoch.UnixNano() {
		t.Errorf("/a %+v", e)
	}
}

func TestLimits(t *testing.T) {
	l := layer(t, dir("a/"), file("a/1", "1"), file("a/2", "2"), file("a/3", "3"))
	if _, err := applyAll(t, nil, Limits{MaxFiles: 3}, l); !errors.Is(err, scan.ErrLimit) {
		t.Errorf("MaxFiles: err = %v", err)
	}
	// Entries removed by a whiteout no longer count.
	if _, err := applyAll(t, nil, Limits{MaxFiles: 4}, l, layer(t, wh(".wh.a")), layer(t, file("b", "b"), file("c", "c"))); err != nil {
		t.Errorf("MaxFiles after a whiteout: %v", err)
	}
	tr, err := applyAll(t, nil, Limits{MaxFileBytes: 2}, layer(t, file("small", "ab"), file("big", "abc")))
	if err != nil {
		t.Fatal(err)
	}
	es := entries(t, tr)
	if es["/big"].Hash != nil || es["/big"].Attrs.Any(attr.Hashes) || es["/small"].Hash == nil || es["/big"].Size != 3 {
		t.Errorf("big %+v small %+v", es["/big"], es["/small"])
	}
	if w := tr.Warnings(); len(w) != 1 || w[0].Path != "/big" || !errors.Is(w[0], scan.ErrLimit) {
		t.Errorf("warnings %v", w)
	}
	tr, err = applyAll(t, nil, Limits{MaxDepth: 1}, layer(t, dir("a/"), dir("a/b/"), file("a/b/c", "c"), file("a/f", "f")))
	if err != nil {
		t.Fatal(err)
	}
	wantPaths(t, entries(t, tr), "/", "/a", "/a/b", "/a/f")
	if w := tr.Warnings(); len(w) != 1 || w[0].Path != "/a/b" {
		t.Errorf("warnings %v", w)
	}
}

func TestPolicy(t *testing.T) {
	m, err := policy.Default().Compile()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := applyAll(t, m, Limits{}, layer(t,
		dir("etc/"), file("etc/passwd", "root"), file("etc/hosts", "127.0.0.1"),
		dir("tmp/"), file("tmp/x", "x"), dir("proc/"), file("proc/y", "y"),
		dir("var/"), dir("var/log/"), file("var/log/app.log", "log"),
		hardlink("etc/p2", "tmp/x"),
	))
	if err != nil {
		t.Fatal(err)
	}
	es := entries(t, tr)
	// The image's /etc/hosts is recorded: the one the runtime mounts over
	// it is told apart by the container's mount table (package origin).
	wantPaths(t, es, "/", "/etc", "/etc/hosts", "/etc/p2", "/etc/passwd", "/var", "/var/log", "/var/log/app.log")
	if !es["/var/log/app.log"].Attrs.Has(attr.Growing) {
		t.Errorf("/var/log/app.log %s: the policy makes it growing", es["/var/log/app.log"].Attrs)
	}
	// A link to a file in content the policy does not keep is recorded
	// without its content (hash, size), with a warning.
	if e := es["/etc/p2"]; e.Hash != nil || e.Attrs.Any(attr.Hashes|attr.Size) || !e.Attrs.Has(attr.Mode) {
		t.Errorf("/etc/p2 %+v (%s)", e, e.Attrs)
	}
	if w := tr.Warnings(); len(w) != 1 || w[0].Path != "/etc/p2" || w[0].Op != "link" {
		t.Errorf("warnings %v", w)
	}
}

func TestLayerIndexAndReplacement(t *testing.T) {
	tr, err := applyAll(t, nil, Limits{},
		layer(t, dir("a/"), file("a/f", "1"), file("g", "g")),
		layer(t, dir("a/"), file("a/f", "2")),
		layer(t, dir("g/"), file("g/h", "h")))
	if err != nil {
		t.Fatal(err)
	}
	layers := map[string]uint16{}
	walkNodes(tr, func(p string, n *node) { layers[p] = n.layer })
	want := map[string]uint16{"/a": 2, "/a/f": 2, "/g": 3, "/g/h": 3}
	for p, l := range want {
		if layers[p] != l {
			t.Errorf("%s from layer %d, want %d", p, layers[p], l)
		}
	}
	es := entries(t, tr)
	if es["/g"].Type != attr.TypeDir || !bytes.Equal(es["/a/f"].Hash, sum("2")) {
		t.Errorf("/g %+v /a/f %+v", es["/g"], es["/a/f"])
	}
	if tr.live != len(es)-1 {
		t.Errorf("live %d, entries %d", tr.live, len(es))
	}
}

func walkNodes(tr *Tree, f func(string, *node)) {
	tr.walk(func(p string, _ attr.Set, n *node) { f(p, n) })
}

func TestDeterministic(t *testing.T) {
	ls := [][]byte{
		layer(t, dir("a/"), file("a/z", "z"), file("a/b", "b"), dir("c/"), file("c/x", "x")),
		layer(t, wh("a/.wh.z"), file("c/y", "y")),
	}
	first := mustApply(t, ls...)
	for range 5 {
		if again := mustApply(t, ls...); !equalEntries(first, again) {
			t.Fatal("the same layers gave different entries")
		}
	}
}

func equalEntries(a, b map[string]attr.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for p, x := range a {
		y, ok := b[p]
		if !ok || x.Attrs != y.Attrs || x.Mode != y.Mode || x.Mtime != y.Mtime || !bytes.Equal(x.Hash, y.Hash) {
			return false
		}
	}
	return true
}

func TestXattrLimits(t *testing.T) {
	big := strings.Repeat("v", attr.MaxXattrValueBytes)
	pax := map[string]string{"SCHILY.xattr.security.capability": "c"}
	for i := range 5 {
		pax[fmt.Sprintf("SCHILY.xattr.user.%d", i)] = big // 5 x 64 KiB: over 256 KiB
	}
	tr, err := applyAll(t, nil, Limits{}, layer(t, item{name: "f", body: "x", pax: pax}))
	if err != nil {
		t.Fatal(err)
	}
	x := entries(t, tr)["/f"].Xattrs
	// Kept in name order while they fit, as a scan keeps them.
	if len(x) != 4 || x[0].Name != "security.capability" || x[3].Name != "user.2" {
		t.Errorf("kept %d xattrs, first %q", len(x), x[0].Name)
	}
	if w := tr.Warnings(); len(w) != 1 || w[0].Op != "xattr" || !errors.Is(w[0], scan.ErrXattrLimit) {
		t.Errorf("warnings %v", w)
	}
	pax = map[string]string{"SCHILY.xattr.user.huge": big + "v"}
	if _, err := applyAll(t, nil, Limits{}, layer(t, item{name: "f", body: "x", pax: pax})); !errors.Is(err, ErrUnsafe) {
		t.Errorf("a value no kernel sets: %v", err)
	}
}
