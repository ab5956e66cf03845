package baseline

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/podfim/podfim/internal/attr"
)

// The file layout; doc.go describes it and must change with it.
const (
	magic      = "PODFIMBL"
	flagSigned = 1 << 0
	knownFlags = flagSigned

	preambleSize  = len(magic) + 2 + 2                            // magic, version, flags
	signatureSize = ed25519.PublicKeySize + ed25519.SignatureSize // present when signed
	recordLenSize = 4                                             // the header record's length (version 2)
	trailerSize   = 8 + sha256.Size                               // payload length, payload digest
	minHeaderSize = preambleSize + trailerSize                    // an unsigned version 1 header

	// gzipLevel is fixed because the compressed bytes are digested and
	// signed: the same baseline must always give the same file.
	gzipLevel = 6
)

// The body layout and its limits; doc.go describes them.
const (
	endMarker = "\x00END"

	maxPolicyDigestLen = 256
	maxPathLen         = 4096 // PATH_MAX
	maxTargetLen       = 4096 // PATH_MAX
	maxXattrs          = MaxXattrs
	maxXattrNameLen    = 255 // XATTR_NAME_MAX
	maxXattrValueLen   = MaxXattrValueBytes
	maxHashLen         = 64 // the largest digest size (sha512)

	// groupSize is the number of entries whose hashes are stored together,
	// in front of them: a reader holds one group's hashes, never all.
	groupSize = 4096
	// maxGroupHashes is the most hash bytes a group can hold.
	maxGroupHashes = groupSize * maxHashLen

	entryRacy           = 1 << 0
	entryCtimeFromMtime = 1 << 1 // ctime is coded against this entry's mtime
	entryLayer          = 1 << 2 // the entry's image layer follows (version 2)
	knownEntryFlagsV1   = entryRacy | entryCtimeFromMtime
	knownEntryFlags     = knownEntryFlagsV1 | entryLayer
)

// header is the part of a baseline file in front of the payload.
type header struct {
	version    uint16
	flags      uint16
	publicKey  []byte // when signed
	signature  []byte // when signed
	record     []byte // the stored Header (version 2); parsed once authenticated
	payloadLen uint64
	digest     [sha256.Size]byte
}

func (h *header) signed() bool { return h.flags&flagSigned != 0 }

// size is the size of the stored header.
func (h *header) size() int {
	n := h.fixedSize()
	if h.version >= 2 {
		n += recordLenSize + len(h.record)
	}
	return n
}

// fixedSize is the size of the header without the record.
func (h *header) fixedSize() int {
	n := minHeaderSize
	if h.signed() {
		n += signatureSize
	}
	return n
}

// marshal appends the header in its stored form to buf.
func (h *header) marshal(buf []byte) []byte {
	buf = append(buf, magic...)
	buf = binary.BigEndian.AppendUint16(buf, h.version)
	buf = binary.BigEndian.AppendUint16(buf, h.flags)
	if h.signed() {
		buf = append(buf, h.publicKey...)
		buf = append(buf, h.signature...)
	}
	if h.version >= 2 {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(h.record)))
		buf = append(buf, h.record...)
	}
	buf = binary.BigEndian.AppendUint64(buf, h.payloadLen)
	return append(buf, h.digest[:]...)
}

// ctimeFromMtime reports whether e's ctime is coded against its own mtime
// rather than the previous ctime: whichever gives the smaller number, and
// mtime on a tie. A file written once has ctime == mtime; files extracted
// from an image share ctimes with their neighbours instead.
func ctimeFromMtime(e *attr.Entry, prevCtime uint64) bool {
	if !e.Attrs.Has(attr.Mtime | attr.Ctime) {
		return false
	}
	c := uint64(e.Ctime)
	return zigzag(c-uint64(e.Mtime)) <= zigzag(c-prevCtime)
}

// zigzag is the zig-zag form of a wrapped difference, the number that
// binary.AppendVarint stores.
func zigzag(v uint64) uint64 { return v<<1 ^ uint64(int64(v)>>63) }

// hashSize is the digest size of a content hash attribute.
func hashSize(alg attr.Set) int {
	switch alg {
	case attr.SHA256, attr.BLAKE3:
		return 32
	case attr.SHA512:
		return 64
	}
	return 0
}

// checkPath reports why p cannot be a baseline path: one that starts with
// "/", has no empty, "." or ".." components and no NUL byte. Anything else
// would let a restore or a comparison address a different file than the one
// that was recorded.
func checkPath(p string) error { return checkPathFrom(p, 0) }

// checkPathFrom is checkPath for a path whose first from bytes are known to
// be whole valid components ending in "/" (from = 0: nothing known). The
// decoder knows that much from the previous path, and long paths in deep
// trees make checking only the new part worth it.
func checkPathFrom(p string, from int) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case len(p) > maxPathLen:
		return fmt.Errorf("path is %d bytes, more than %d", len(p), maxPathLen)
	case p[0] != '/':
		return fmt.Errorf("path %q does not start with /", p)
	case strings.IndexByte(p[from:], 0) >= 0:
		return fmt.Errorf("path %q contains a NUL byte", p)
	case p == "/":
		return nil
	}
	// Each component starts after a "/" and ends before the next "/" or
	// the end of the path.
	start := max(from, 1)
	for i := start; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		if c := p[start:i]; c == "" || c == "." || c == ".." {
			return fmt.Errorf("path %q is not clean (empty, . or .. component)", p)
		}
		start = i + 1
	}
	return nil
}

// checkEntry reports why e cannot be stored: both Write and Read apply it,
// so that everything Read accepts can be written again and vice versa.
func checkEntry(e *attr.Entry) error {
	if err := checkPath(e.Path); err != nil {
		return err
	}
	return checkFields(e)
}

// checkFields is checkEntry without the path. Fields that Attrs says were
// not collected must be zero because the format does not store them:
// keeping them would make a round trip lossy. The extended attributes are
// checked in the order given; Write sorts them first.
func checkFields(e *attr.Entry) error {
	a := e.Attrs
	switch {
	case !a.Valid():
		return fmt.Errorf("unknown attribute bits %#x", uint32(a))
	case a&attr.Hashes != 0 && hashSize(a&attr.Hashes) == 0:
		return fmt.Errorf("more than one content hash (%s)", a&attr.Hashes)
	case e.Type > attr.TypeSocket:
		return fmt.Errorf("unknown file type %d", e.Type)
	case e.Mode > 0o7777:
		return fmt.Errorf("mode %#o has bits outside 07777", e.Mode)
	case e.Size < 0:
		return fmt.Errorf("negative size %d", e.Size)
	}
	if name := uncollected(e); name != "" {
		return fmt.Errorf("%s is set but not in the collected attributes %s", name, a)
	}
	if e.Rdev != 0 && !hasRdev(e) {
		return fmt.Errorf("device number is set but the entry is not a device with the type attribute")
	}
	if e.Target != "" {
		switch {
		case !hasTarget(e):
			return fmt.Errorf("link target is set but the entry is not a symlink with the target attribute")
		case len(e.Target) > maxTargetLen:
			return fmt.Errorf("link target is %d bytes, more than %d", len(e.Target), maxTargetLen)
		case strings.IndexByte(e.Target, 0) >= 0:
			return fmt.Errorf("link target %q contains a NUL byte", e.Target)
		}
	}
	if len(e.Xattrs) > maxXattrs {
		return fmt.Errorf("%d extended attributes, more than %d", len(e.Xattrs), maxXattrs)
	}
	if n := xattrBytes(e.Xattrs); n > MaxXattrBytes {
		return fmt.Errorf("extended attributes take %d bytes, more than %d", n, MaxXattrBytes)
	}
	for i, x := range e.Xattrs {
		switch {
		case x.Name == "":
			return fmt.Errorf("extended attribute with an empty name")
		case len(x.Name) > maxXattrNameLen:
			return fmt.Errorf("extended attribute name is %d bytes, more than %d", len(x.Name), maxXattrNameLen)
		case strings.IndexByte(x.Name, 0) >= 0:
			return fmt.Errorf("extended attribute name %q contains a NUL byte", x.Name)
		case len(x.Value) > maxXattrValueLen:
			return fmt.Errorf("extended attribute %q is %d bytes, more than %d", x.Name, len(x.Value), maxXattrValueLen)
		case i > 0 && e.Xattrs[i-1].Name >= x.Name:
			return fmt.Errorf("extended attribute %q is duplicate or out of order after %q", x.Name, e.Xattrs[i-1].Name)
		}
	}
	if len(e.Hash) != 0 {
		alg := e.HashAlg()
		switch {
		case alg == 0:
			return fmt.Errorf("hash is set but no hash attribute was collected")
		case e.Type != attr.TypeRegular:
			return fmt.Errorf("hash is set on a %s; only regular files are hashed", e.Type)
		case len(e.Hash) != hashSize(alg):
			return fmt.Errorf("%s hash is %d bytes, want %d", alg, len(e.Hash), hashSize(alg))
		}
	}
	return nil
}

// uncollected returns the name of a field of e that is set although
// e.Attrs says it was not collected, or "".
func uncollected(e *attr.Entry) string {
	a := e.Attrs
	switch {
	case e.Mode != 0 && !a.Has(attr.Mode):
		return "mode"
	case e.UID != 0 && !a.Has(attr.UID):
		return "uid"
	case e.GID != 0 && !a.Has(attr.GID):
		return "gid"
	case e.Size != 0 && !a.Has(attr.Size):
		return "size"
	case e.Inode != 0 && !a.Has(attr.Inode):
		return "inode"
	case e.Nlink != 0 && !a.Has(attr.Nlink):
		return "nlink"
	case e.Mtime != 0 && !a.Has(attr.Mtime):
		return "mtime"
	case e.Ctime != 0 && !a.Has(attr.Ctime):
		return "ctime"
	case len(e.Xattrs) != 0 && !a.Has(attr.Xattrs):
		return "xattrs"
	}
	return ""
}

// hasRdev reports whether the format stores e's device number.
func hasRdev(e *attr.Entry) bool {
	return e.Attrs.Has(attr.Type) && (e.Type == attr.TypeChar || e.Type == attr.TypeBlock)
}

// hasTarget reports whether the format stores e's link target.
func hasTarget(e *attr.Entry) bool {
	return e.Attrs.Has(attr.Target) && e.Type == attr.TypeSymlink
}

// xattrBytes is what xs count against MaxXattrBytes: names and values.
func xattrBytes(xs []attr.Xattr) int {
	n := 0
	for _, x := range xs {
		n += len(x.Name) + len(x.Value)
	}
	return n
}
