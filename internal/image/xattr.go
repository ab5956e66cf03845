package image

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/podfim/podfim/internal/attr"
)

// paxXattr prefixes the PAX records that carry extended attributes (the
// form GNU tar, Go's archive/tar and every image builder write).
const paxXattr = "SCHILY.xattr."

// maxXattrName is the kernel's XATTR_NAME_MAX.
const maxXattrName = 255

// headerXattrs returns the extended attributes of a tar entry, sorted by
// name, and whether some were left out. One that no kernel would set is
// an error. Beyond what an entry holds (attr.MaxXattrs, attr.MaxXattrBytes)
// the rest are left out, in name order, exactly as a scan of the unpacked
// tree leaves them out: security.*, system.* and trusted.* before user.*.
func headerXattrs(hdr *tar.Header) ([]attr.Xattr, bool, error) {
	var out []attr.Xattr
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok {
			continue
		}
		switch {
		case name == "" || len(name) > maxXattrName || strings.IndexByte(name, 0) >= 0:
			return nil, false, fmt.Errorf("extended attribute name %q is empty, longer than %d bytes or holds a NUL byte", name, maxXattrName)
		case len(v) > attr.MaxXattrValueBytes:
			return nil, false, fmt.Errorf("extended attribute %q is %d bytes, more than %d", name, len(v), attr.MaxXattrValueBytes)
		}
		out = append(out, attr.Xattr{Name: name, Value: []byte(v)})
	}
	slices.SortFunc(out, func(a, b attr.Xattr) int { return strings.Compare(a.Name, b.Name) })
	total := 0
	for i, x := range out {
		if total += len(x.Name) + len(x.Value); i == attr.MaxXattrs || total > attr.MaxXattrBytes {
			return out[:i:i], true, nil
		}
	}
	return out, false, nil
}

// mergeXattrs returns old with every attribute of set set on it, sorted:
// what setxattr(2) of each gives (a runtime never removes one).
func mergeXattrs(old, set []attr.Xattr) []attr.Xattr {
	out := slices.Clone(old)
	for _, x := range set {
		i, found := slices.BinarySearchFunc(out, x.Name, func(a attr.Xattr, n string) int { return strings.Compare(a.Name, n) })
		if found {
			out[i] = x
		} else {
			out = slices.Insert(out, i, x)
		}
	}
	return out
}

// POSIX ACL xattr encoding (linux/posix_acl_xattr.h): a 4-byte version,
// then 8-byte entries of tag, permissions and id, little-endian.
const (
	aclAccess    = "system.posix_acl_access"
	aclVersion   = 2
	aclUserObj   = 0x01
	aclUser      = 0x02
	aclGroupObj  = 0x04
	aclGroup     = 0x08
	aclMask      = 0x10
	aclOther     = 0x20
	aclUndefined = 0xffffffff
)

// applyMode returns xs as the kernel shows them once a runtime has set
// them and the mode, and whether the runtimes agree on the result. An
// access ACL that says no more than the mode is not stored at all; ids of
// the entries that have none read back as ACL_UNDEFINED_ID. But runtimes
// set the two in different orders: containerd sets the xattrs and then
// chmods (which rewrites the ACL's owner, mask or group, and other
// permissions), podman's storage chmods first and then sets the ACL (which
// rewrites the mode). They agree only when the ACL's permissions are the
// mode's, as in every layer made from a real file system; otherwise agree
// is false and neither mode nor xattrs can be recorded. An ACL the kernel
// would refuse is kept as it is: the runtime fails on it.
func applyMode(xs []attr.Xattr, mode uint32) (out []attr.Xattr, agree bool) {
	i := slices.IndexFunc(xs, func(x attr.Xattr) bool { return x.Name == aclAccess })
	if i < 0 {
		return xs, true
	}
	v := bytes.Clone(xs[i].Value)
	if len(v) < 4 || (len(v)-4)%8 != 0 || binary.LittleEndian.Uint32(v) != aclVersion {
		return xs, true
	}
	minimal, hasMask := true, false
	for e := v[4:]; len(e) > 0; e = e[8:] {
		switch binary.LittleEndian.Uint16(e) {
		case aclUser, aclGroup:
			minimal = false
		case aclMask:
			minimal, hasMask = false, true
		}
	}
	agree = true
	for e := v[4:]; len(e) > 0; e = e[8:] {
		tag, perm := binary.LittleEndian.Uint16(e), uint32(binary.LittleEndian.Uint16(e[2:]))
		switch {
		case tag == aclUserObj:
			agree = agree && perm == mode>>6&7
		case tag == aclMask || (tag == aclGroupObj && !hasMask):
			agree = agree && perm == mode>>3&7
		case tag == aclOther:
			agree = agree && perm == mode&7
		}
		if tag != aclUser && tag != aclGroup {
			binary.LittleEndian.PutUint32(e[4:], aclUndefined)
		}
	}
	xs = slices.Clone(xs)
	if minimal {
		return slices.Delete(xs, i, i+1), agree
	}
	xs[i].Value = v
	return xs, agree
}
