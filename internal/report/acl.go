package report

import (
	"encoding/binary"
	"strconv"
	"strings"
)

// POSIX ACL xattr format (linux/posix_acl_xattr.h): a little-endian u32
// version (2), then entries of {u16 tag, u16 perm, u32 id}.
const (
	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// DecodeACL renders a system.posix_acl_* value the way getfacl does
// ("user::rw-,user:1000:r--,group::r--,mask::r--,other::---").
func DecodeACL(v []byte) (string, bool) {
	if len(v) < 4 || (len(v)-4)%8 != 0 || binary.LittleEndian.Uint32(v) != aclVersion {
		return "", false
	}
	var parts []string
	for p := v[4:]; len(p) > 0; p = p[8:] {
		tag := binary.LittleEndian.Uint16(p)
		perm := binary.LittleEndian.Uint16(p[2:])
		id := binary.LittleEndian.Uint32(p[4:])
		var who string
		switch tag {
		case aclUserObj:
			who = "user::"
		case aclUser:
			who = "user:" + strconv.FormatUint(uint64(id), 10) + ":"
		case aclGroupObj:
			who = "group::"
		case aclGroup:
			who = "group:" + strconv.FormatUint(uint64(id), 10) + ":"
		case aclMask:
			who = "mask::"
		case aclOther:
			who = "other::"
		default:
			return "", false
		}
		rwx := []byte("---")
		if perm&4 != 0 {
			rwx[0] = 'r'
		}
		if perm&2 != 0 {
			rwx[1] = 'w'
		}
		if perm&1 != 0 {
			rwx[2] = 'x'
		}
		parts = append(parts, who+string(rwx))
	}
	return strings.Join(parts, ","), true
}

// EncodeACL is the inverse of DecodeACL for the entries given as
// {tag, perm, id} triples; tests use it to grant ACLs without setfacl.
func EncodeACL(entries ...[3]uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(e[0]))
		b = binary.LittleEndian.AppendUint16(b, uint16(e[1]))
		b = binary.LittleEndian.AppendUint32(b, e[2])
	}
	return b
}
