package scan

import (
	"cmp"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
)

// fileType maps st_mode to the attr file type.
func fileType(mode uint32) attr.FileType {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return attr.TypeRegular
	case unix.S_IFDIR:
		return attr.TypeDir
	case unix.S_IFLNK:
		return attr.TypeSymlink
	case unix.S_IFIFO:
		return attr.TypeFIFO
	case unix.S_IFCHR:
		return attr.TypeChar
	case unix.S_IFBLK:
		return attr.TypeBlock
	case unix.S_IFSOCK:
		return attr.TypeSocket
	}
	return attr.TypeUnknown
}

// normalize returns the attributes an entry records: what the policy asked
// for, plus the type (always collected), with at most one hash (the lowest
// bit, should a policy name several: an entry has one Hash).
func normalize(attrs attr.Set) attr.Set {
	attrs |= attr.Type
	if h := attrs & attr.Hashes; h&(h-1) != 0 {
		attrs = attrs&^attr.Hashes | h&-h
	}
	return attrs
}

// fill sets the stat-derived fields of e that attrs asks for. It leaves Hash,
// Target and Xattrs alone.
func fill(e *attr.Entry, st *unix.Stat_t, racyNs int64) {
	a := e.Attrs
	e.Type = fileType(st.Mode)
	e.Mode, e.UID, e.GID, e.Size, e.Inode, e.Nlink, e.Rdev, e.Mtime, e.Ctime = 0, 0, 0, 0, 0, 0, 0, 0, 0
	if a.Has(attr.Mode) {
		e.Mode = st.Mode & 0o7777
	}
	if a.Has(attr.UID) {
		e.UID = st.Uid
	}
	if a.Has(attr.GID) {
		e.GID = st.Gid
	}
	if a.Has(attr.Size) {
		e.Size = st.Size
	}
	if a.Has(attr.Inode) {
		e.Inode = st.Ino
	}
	if a.Has(attr.Nlink) {
		e.Nlink = uint64(st.Nlink)
	}
	if e.Type == attr.TypeChar || e.Type == attr.TypeBlock {
		e.Rdev = uint64(st.Rdev) // part of the type
	}
	mtime, ctime := st.Mtim.Nano(), st.Ctim.Nano()
	if a.Has(attr.Mtime) {
		e.Mtime = mtime
	}
	if a.Has(attr.Ctime) {
		e.Ctime = ctime
	}
	e.Racy = mtime >= racyNs || ctime >= racyNs
}

// sameContent reports whether two fstats of one open file show no change of
// identity, size or timestamps: the content read between them is one version.
func sameContent(a, b *unix.Stat_t) bool {
	return a.Dev == b.Dev && a.Ino == b.Ino && a.Size == b.Size &&
		a.Mtim == b.Mtim && a.Ctim == b.Ctim && a.Mode&unix.S_IFMT == b.Mode&unix.S_IFMT
}

// comparePaths orders paths exactly like attr.ComparePaths, faster: comparing
// component by component is comparing bytes with '/' ranked below every other
// byte (names hold no NUL and no empty components), so one pass over the
// common prefix decides.
func comparePaths(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	if i == n {
		return cmp.Compare(len(a), len(b))
	}
	switch ca, cb := a[i], b[i]; {
	case ca == '/':
		return -1
	case cb == '/':
		return 1
	case ca < cb:
		return -1
	default:
		return 1
	}
}

// joinPath returns parent + "/" + name with one allocation.
func joinPath(parent string, name []byte) string {
	if parent == "/" {
		parent = ""
	}
	b := make([]byte, len(parent)+1+len(name))
	copy(b, parent)
	b[len(parent)] = '/'
	copy(b[len(parent)+1:], name)
	return unsafeString(b)
}

// nameOf returns the last component of path, a child of parent.
func nameOf(parent, path string) string {
	if parent == "/" {
		return path[1:]
	}
	return path[len(parent)+1:]
}
