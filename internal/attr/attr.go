// Package attr owns podfim's vocabulary of file attributes: which attributes
// exist, how a set of them is written, and the Entry record that a scan
// produces, a baseline stores and a comparison reads.
//
// It has no dependencies on the rest of podfim so that every stage of the data
// flow (policy -> scan -> baseline -> compare -> report) can share it.
package attr

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Set is a set of attributes, one bit each. The bit values are part of the
// baseline format: never renumber, only append.
type Set uint32

// Attributes. atime is deliberately absent: reading a file changes it, so it
// can never be an integrity attribute.
const (
	Type    Set = 1 << iota // file type (regular, dir, symlink, fifo, device, socket) and device number
	Mode                    // permission bits including setuid, setgid and sticky (07777)
	UID                     // owner
	GID                     // group
	Size                    // size in bytes
	Inode                   // inode number
	Nlink                   // hard link count
	Target                  // symlink target
	Mtime                   // modification time, nanoseconds
	Ctime                   // inode change time, nanoseconds
	Xattrs                  // every extended attribute (POSIX ACLs, file capabilities, SELinux labels...)
	SHA256                  // content hash
	SHA512                  // content hash
	BLAKE3                  // content hash
	Growing                 // modifier: size may grow (never shrink); hash, mtime and ctime may change

	// Hashes is the set of all content hashes.
	Hashes = SHA256 | SHA512 | BLAKE3
	// All is every attribute (with sha256 as the hash) and no modifier.
	All = Type | Mode | UID | GID | Size | Inode | Nlink | Target | Mtime | Ctime | Xattrs | SHA256
	// known is every defined bit.
	known = All | SHA512 | BLAKE3 | Growing

	// ImageStable is what a container image fixes about its files and an
	// unpacked container keeps: a check against a baseline made from an
	// image compares these only. Inode, link count and ctime come from the
	// file system the runtime unpacks the image onto, never from the image.
	ImageStable = Type | Mode | UID | GID | Size | Target | Mtime | Xattrs | Hashes
)

// names maps every single-bit attribute to its name, in report order.
var names = []struct {
	bit  Set
	name string
}{
	{Type, "type"},
	{Mode, "mode"},
	{UID, "uid"},
	{GID, "gid"},
	{Size, "size"},
	{Inode, "inode"},
	{Nlink, "nlink"},
	{Target, "target"},
	{Mtime, "mtime"},
	{Ctime, "ctime"},
	{Xattrs, "xattrs"},
	{SHA256, "sha256"},
	{SHA512, "sha512"},
	{BLAKE3, "blake3"},
	{Growing, "growing"},
}

// Has reports whether every bit of o is in s.
func (s Set) Has(o Set) bool { return s&o == o }

// Any reports whether any bit of o is in s.
func (s Set) Any(o Set) bool { return s&o != 0 }

// Valid reports whether s only holds defined bits.
func (s Set) Valid() bool { return s&^known == 0 }

// Names returns the names of the attributes in s, in canonical order.
func (s Set) Names() []string {
	var out []string
	for _, n := range names {
		if s.Has(n.bit) {
			out = append(out, n.name)
		}
	}
	return out
}

// String returns the names joined with "+", or "none".
func (s Set) String() string {
	if s == 0 {
		return "none"
	}
	return strings.Join(s.Names(), "+")
}

// Parse returns the attribute with the given name.
func Parse(name string) (Set, error) {
	for _, n := range names {
		if n.name == name {
			return n.bit, nil
		}
	}
	return 0, fmt.Errorf("unknown attribute %q (known: %s)", name, strings.Join(AllNames(), ", "))
}

// AllNames lists every attribute name in canonical order.
func AllNames() []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, n.name)
	}
	return out
}

// FileType is the type of a file system object.
type FileType uint8

// File types. The values are part of the baseline format.
const (
	TypeUnknown FileType = iota
	TypeRegular
	TypeDir
	TypeSymlink
	TypeFIFO
	TypeChar
	TypeBlock
	TypeSocket
)

var typeNames = [...]string{"unknown", "file", "dir", "symlink", "fifo", "chardev", "blockdev", "socket"}

func (t FileType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", t)
}

// Limits of one entry's extended attributes, which a scan records and a
// baseline stores: a file that Linux lets carry more (XFS takes many
// 64 KiB values) is recorded with what fits, in name order (security.*
// and system.* before user.*), and a warning. They bound what a hostile
// tree or baseline can make podfim hold per entry.
const (
	// MaxXattrs is the most extended attributes of one entry.
	MaxXattrs = 1024
	// MaxXattrValueBytes is the largest value (the kernel's XATTR_SIZE_MAX).
	MaxXattrValueBytes = 64 << 10
	// MaxXattrBytes bounds the names and values of one entry together:
	// four times what ext4 fits in an inode and its block, and far above
	// any ACL, capability or security label.
	MaxXattrBytes = 256 << 10
)

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// Entry is what podfim records about one file system object.
//
// Path is relative to the scanned root, starts with "/" and holds the raw
// bytes of the name: it may be invalid UTF-8. Fields not named in Attrs were
// not collected and are zero.
type Entry struct {
	Path   string
	Attrs  Set // attributes collected for this entry (from the matching policy rule)
	Type   FileType
	Mode   uint32 // permission bits, 07777
	UID    uint32
	GID    uint32
	Size   int64
	Inode  uint64
	Nlink  uint64
	Rdev   uint64 // device number of character and block devices
	Target string // symlink target, raw bytes
	Mtime  int64  // nanoseconds since the epoch
	Ctime  int64  // nanoseconds since the epoch
	Xattrs []Xattr
	// Hash is the content digest of a regular file, made with the algorithm
	// in Attrs (at most one of Hashes). Empty for other types.
	Hash []byte
	// Racy is set when the file changed so close to the scan that a later
	// change could leave size, mtime and ctime equal (see docs/design.md);
	// a quick check always re-hashes racy files.
	Racy bool
	// Layer is the image layer the entry came from (the last one that
	// wrote it), counted from 1 = the base layer, for an entry of a
	// baseline made from an image; 0 means not from an image. (uint16
	// fits beside Racy: a scan holds millions of entries.)
	Layer uint16
	// Prefix is set by a scan for a Growing regular file that is larger
	// than its baseline entry: the hash (same algorithm) of its first
	// baseline-size bytes, so that a comparison can tell an append from a
	// rewrite. Never stored in a baseline. A pointer: it is rare, and an
	// entry is held millions of times.
	Prefix *Prefix
}

// Prefix is the hash of the first Size bytes of a file.
type Prefix struct {
	Size int64
	Hash []byte
}

// Clone returns a copy of e that shares no memory with it (strings aside,
// which cannot change): for keeping an entry whose source reuses its
// buffers, such as a baseline being read entry by entry.
func (e *Entry) Clone() Entry {
	c := *e
	c.Hash = bytes.Clone(e.Hash)
	if e.Prefix != nil {
		c.Prefix = &Prefix{Size: e.Prefix.Size, Hash: bytes.Clone(e.Prefix.Hash)}
	}
	if e.Xattrs != nil {
		c.Xattrs = make([]Xattr, len(e.Xattrs))
		for i, x := range e.Xattrs {
			c.Xattrs[i] = Xattr{Name: x.Name, Value: bytes.Clone(x.Value)}
		}
	}
	return c
}

// HashAlg returns the content hash attribute of e, or 0.
func (e *Entry) HashAlg() Set { return e.Attrs & Hashes }

// XattrMap returns the extended attributes as a map.
func (e *Entry) XattrMap() map[string][]byte {
	m := make(map[string][]byte, len(e.Xattrs))
	for _, x := range e.Xattrs {
		m[x.Name] = x.Value
	}
	return m
}

// SortXattrs puts the extended attributes in name order (the canonical order).
func (e *Entry) SortXattrs() {
	slices.SortFunc(e.Xattrs, func(a, b Xattr) int { return strings.Compare(a.Name, b.Name) })
}

// ComparePaths orders paths the way a depth-first walk with sorted directory
// entries visits them: component by component, so "/a/b" sorts before "/a.b"
// (a plain byte comparison would put "/a.b" first because '.' < '/').
// It returns -1, 0 or +1.
func ComparePaths(a, b string) int {
	for {
		if a == b {
			return 0
		}
		ai := strings.IndexByte(a, '/')
		bi := strings.IndexByte(b, '/')
		// Compare the leading components.
		ac, bc := a, b
		if ai >= 0 {
			ac = a[:ai]
		}
		if bi >= 0 {
			bc = b[:bi]
		}
		if c := strings.Compare(ac, bc); c != 0 {
			return c
		}
		// Same component: the shorter path (no more components) comes first.
		if ai < 0 {
			return -1
		}
		if bi < 0 {
			return 1
		}
		a, b = a[ai+1:], b[bi+1:]
	}
}

// XattrLabel names an extended attribute the way reports do: POSIX ACLs are
// "acl", file capabilities "caps", SELinux labels "selinux"; any other
// extended attribute is "xattrs".
func XattrLabel(name string) string {
	switch name {
	case "system.posix_acl_access", "system.posix_acl_default":
		return "acl"
	case "security.capability":
		return "caps"
	case "security.selinux":
		return "selinux"
	}
	return "xattrs"
}
