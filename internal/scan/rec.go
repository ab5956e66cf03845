package scan

import (
	"math"
	"unsafe"

	"github.com/podfim/podfim/internal/attr"
)

// rec is the compact form (88 bytes) in which workers keep entries until
// merge expands them into attr.Entry (160 bytes) in their final order. At the
// end of a scan every entry exists twice, once per form: keeping the first
// one small is what holds peak memory down (100,000 files: 9 MB, not 16).
type rec struct {
	path    string
	hash    *byte     // hashLen bytes in a worker's slab
	extra   *recExtra // the rare fields, nil when all are zero
	size    int64
	ino     uint64
	mtime   int64
	ctime   int64
	uid     uint32
	gid     uint32
	attrs   attr.Set
	nlink   uint32 // see extra.nlink
	mode    uint16
	typ     attr.FileType
	hashLen uint8
	racy    bool
}

type recExtra struct {
	target string
	xattrs []attr.Xattr
	rdev   uint64
	nlink  uint64 // when it does not fit rec.nlink
	prefix *attr.Prefix
}

func makeRec(e *attr.Entry) rec {
	r := rec{
		path: e.Path, size: e.Size, ino: e.Inode, mtime: e.Mtime, ctime: e.Ctime,
		uid: e.UID, gid: e.GID, attrs: e.Attrs, mode: uint16(e.Mode), typ: e.Type, racy: e.Racy,
	}
	if len(e.Hash) > 0 && len(e.Hash) <= math.MaxUint8 {
		r.hash, r.hashLen = &e.Hash[0], uint8(len(e.Hash))
	}
	if e.Nlink <= math.MaxUint32 {
		r.nlink = uint32(e.Nlink)
	}
	if e.Target != "" || e.Xattrs != nil || e.Rdev != 0 || e.Nlink > math.MaxUint32 || e.Prefix != nil {
		r.extra = &recExtra{target: e.Target, xattrs: e.Xattrs, rdev: e.Rdev, prefix: e.Prefix}
		if e.Nlink > math.MaxUint32 {
			r.extra.nlink = e.Nlink
		}
	}
	return r
}

func (r *rec) entry() attr.Entry {
	e := attr.Entry{
		Path: r.path, Attrs: r.attrs, Type: r.typ, Mode: uint32(r.mode), UID: r.uid, GID: r.gid,
		Size: r.size, Inode: r.ino, Nlink: uint64(r.nlink), Mtime: r.mtime, Ctime: r.ctime, Racy: r.racy,
	}
	if r.hash != nil {
		e.Hash = unsafe.Slice(r.hash, r.hashLen)
	}
	if x := r.extra; x != nil {
		e.Target, e.Xattrs, e.Rdev, e.Prefix = x.target, x.xattrs, x.rdev, x.prefix
		if x.nlink != 0 {
			e.Nlink = x.nlink
		}
	}
	return e
}
