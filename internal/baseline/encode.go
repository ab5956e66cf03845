package baseline

import (
	"bytes"
	"compress/flate"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"

	"github.com/podfim/podfim/internal/attr"
)

// Write writes b to w, signed with key unless key is nil. On success it sets
// b.Version, b.Digest, b.Signed, b.KeyID and b.PublicKey to what was written.
//
// b must be valid: entries sorted strictly by attr.ComparePaths, fields that
// were not collected zero (see checkEntry). Extended attributes may be in any
// order; they are stored sorted by name, so the same baseline always gives
// the same bytes.
func Write(w io.Writer, b *Baseline, key ed25519.PrivateKey) error {
	h, payload, err := encode(b, key)
	if err != nil {
		return err
	}
	if err := writeTo(w, h, payload); err != nil {
		return fmt.Errorf("failed to write baseline: %w", err)
	}
	b.setStored(h)
	return nil
}

// writeTo writes the file for h and payload.
func writeTo(w io.Writer, h *header, payload []byte) error {
	if _, err := w.Write(h.marshal(nil)); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// setStored records in b what the header h says about the stored file.
func (b *Baseline) setStored(h *header) {
	b.Version, b.Digest, b.Signed, b.KeyID, b.PublicKey = stored(h)
}

// stored returns what the header h says about the stored file.
func stored(h *header) (version int, digest [32]byte, signed bool, keyID string, pub ed25519.PublicKey) {
	if h.signed() {
		pub = ed25519.PublicKey(bytes.Clone(h.publicKey))
		keyID = KeyID(pub)
	}
	return int(h.version), h.digest, h.signed(), keyID, pub
}

// encode returns the header and the payload for b.
func encode(b *Baseline, key ed25519.PrivateKey) (*header, []byte, error) {
	if key != nil && len(key) != ed25519.PrivateKeySize {
		return nil, nil, fmt.Errorf("failed to sign baseline: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	if err := validate(b); err != nil {
		return nil, nil, fmt.Errorf("failed to encode baseline: %w", err)
	}
	payload, err := compress(b)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to encode baseline: %w", err)
	}
	h := &header{version: Version, payloadLen: uint64(len(payload)), digest: sha256.Sum256(payload)}
	if key != nil {
		sign(h, key)
	}
	return h, payload, nil
}

// validate reports why b cannot be written; Read enforces the same rules.
func validate(b *Baseline) error {
	switch {
	case b.Version != 0 && b.Version != Version:
		return fmt.Errorf("cannot write format version %d, only %d", b.Version, Version)
	case len(b.PolicyDigest) > maxPolicyDigestLen:
		return fmt.Errorf("policy digest is %d bytes, more than %d", len(b.PolicyDigest), maxPolicyDigestLen)
	case len(b.Entries) > MaxEntries:
		return fmt.Errorf("%d entries, more than %d", len(b.Entries), MaxEntries)
	}
	for i := range b.Entries {
		e := &b.Entries[i]
		if !xattrsSorted(e.Xattrs) {
			c := *e
			c.Xattrs = slices.Clone(e.Xattrs)
			c.SortXattrs()
			e = &c
		}
		if err := checkEntry(e); err != nil {
			return fmt.Errorf("entry %d (%q): %w", i, b.Entries[i].Path, err)
		}
		if i > 0 && attr.ComparePaths(b.Entries[i-1].Path, e.Path) >= 0 {
			return fmt.Errorf("entry %d (%q): duplicate or out of order after %q", i, e.Path, b.Entries[i-1].Path)
		}
	}
	return nil
}

// xattrsSorted reports whether xs are in canonical (name) order.
func xattrsSorted(xs []attr.Xattr) bool {
	return slices.IsSortedFunc(xs, func(a, b attr.Xattr) int { return strings.Compare(a.Name, b.Name) })
}

// compress returns the gzip payload for a validated b.
//
// The gzip member is one deflate stream put together by hand: the body is
// compressed at gzipLevel, except for the hash bytes of each group, which
// go in stored blocks. Hashes are random bytes except for duplicate files;
// compressing those few duplicates would save about 5% of them but make
// every hash cost a Huffman decode, and hashes among the Huffman-coded
// metadata cost more than their own size (TestSize100k's synthetic set:
// 50.6 bytes per entry with each hash compressed after its entry, 47.7
// with the groups' hashes stored).
//
// Before a group's stored hashes the compressor is flushed (a sync flush
// ends its output on a byte boundary without a final block); after them it
// is reset, so that no back-reference of the compressed part reaches into
// bytes it did not see. Groups with few hash bytes (a directory listing,
// say) are not worth a flush and a reset: their hashes are compressed.
func compress(b *Baseline) ([]byte, error) {
	var out bytes.Buffer
	// What gzip.Writer writes for a zero Header: no name, mtime 0, XFL 0,
	// OS unknown. The output depends on the baseline only.
	out.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255})
	zw, err := flate.NewWriter(&out, gzipLevel)
	if err != nil {
		return nil, err
	}
	crc := crc32.NewIEEE()
	var size uint64
	sum := func(p []byte) {
		crc.Write(p)
		size += uint64(len(p))
	}
	compressed := writerFunc(func(p []byte) (int, error) {
		sum(p)
		return zw.Write(p)
	})
	hashPart := func(p []byte) error {
		if len(p) < minStoredHashes {
			_, err := compressed.Write(p)
			return err
		}
		if err := zw.Flush(); err != nil {
			return err
		}
		sum(p)
		writeStored(&out, p)
		zw.Reset(&out)
		return nil
	}
	if err := encodeBody(compressed, hashPart, b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	out.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32()))
	out.Write(binary.LittleEndian.AppendUint32(nil, uint32(size))) // ISIZE is the size mod 2^32
	return out.Bytes(), nil
}

// minStoredHashes is the fewest hash bytes compress stores rather than
// compresses: a flush and a reset cost the compressor about as much.
const minStoredHashes = 256

// writeStored appends p to a deflate stream that is at a byte boundary, as
// non-final stored blocks (RFC 1951, 3.2.4).
func writeStored(out *bytes.Buffer, p []byte) {
	for len(p) > 0 {
		n := min(len(p), 0xffff)
		// BFINAL 0 and BTYPE 00 in the first 3 bits, padded to the byte.
		out.WriteByte(0)
		out.Write(binary.LittleEndian.AppendUint16(nil, uint16(n)))
		out.Write(binary.LittleEndian.AppendUint16(nil, ^uint16(n)))
		out.Write(p[:n])
		p = p[n:]
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// flushSize is how much encoded body is buffered between writes to the
// compressor: large enough that the per-call cost does not matter, small
// enough that the body never sits in memory whole.
const flushSize = 64 << 10

// encodeBody writes the uncompressed body for b: the policy digest, count,
// entries and end marker to w, except that the hash part of each group
// (its length and its hash bytes) goes to hashes, in one call per group. It
// does not validate b, so that tests can build invalid bodies with it.
func encodeBody(w io.Writer, hashes func([]byte) error, b *Baseline) error {
	buf := make([]byte, 0, 2*flushSize)
	buf = appendString(buf, b.PolicyDigest)
	buf = binary.AppendUvarint(buf, uint64(len(b.Entries)))
	flush := func(min int) error {
		if len(buf) < min || len(buf) == 0 {
			return nil
		}
		_, err := w.Write(buf)
		buf = buf[:0]
		return err
	}
	var prev entryState
	var hb []byte
	for start := 0; start < len(b.Entries); start += groupSize {
		group := b.Entries[start:min(start+groupSize, len(b.Entries))]
		// The group's hashes come first, so that a reader has each
		// entry's hash when it decodes the entry.
		n := 0
		for i := range group {
			if group[i].HashAlg() != 0 {
				n += len(group[i].Hash)
			}
		}
		hb = binary.AppendUvarint(hb[:0], uint64(n))
		for i := range group {
			if group[i].HashAlg() != 0 {
				hb = append(hb, group[i].Hash...)
			}
		}
		if err := flush(0); err != nil {
			return err
		}
		if err := hashes(hb); err != nil {
			return err
		}
		for i := range group {
			buf = appendEntry(buf, &group[i], &prev)
			if err := flush(flushSize); err != nil {
				return err
			}
		}
	}
	buf = append(buf, endMarker...)
	return flush(0)
}

// entryState is what an entry is coded against: the previous path, and the
// previous value of each delta-coded field (of the last entry that had it).
type entryState struct {
	path                string
	inode, mtime, ctime uint64
}

// appendDelta appends the zig-zag varint of cur-*prev, wrapping, and makes
// cur the new *prev. Wrapping makes every uint64 pair codable, and the
// coding a bijection, which keeps decoding canonical.
func appendDelta(buf []byte, cur uint64, prev *uint64) []byte {
	buf = binary.AppendVarint(buf, int64(cur-*prev))
	*prev = cur
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

func appendEntry(buf []byte, e *attr.Entry, prev *entryState) []byte {
	shared := commonPrefix(prev.path, e.Path)
	buf = binary.AppendUvarint(buf, uint64(shared))
	buf = appendString(buf, e.Path[shared:])
	prev.path = e.Path

	a := e.Attrs
	buf = binary.AppendUvarint(buf, uint64(a))
	buf = append(buf, byte(e.Type))
	var flags byte
	if e.Racy {
		flags |= entryRacy
	}
	fromMtime := ctimeFromMtime(e, prev.ctime)
	if fromMtime {
		flags |= entryCtimeFromMtime
	}
	buf = append(buf, flags)
	if a.Has(attr.Mode) {
		buf = binary.AppendUvarint(buf, uint64(e.Mode))
	}
	if a.Has(attr.UID) {
		buf = binary.AppendUvarint(buf, uint64(e.UID))
	}
	if a.Has(attr.GID) {
		buf = binary.AppendUvarint(buf, uint64(e.GID))
	}
	if a.Has(attr.Size) {
		buf = binary.AppendUvarint(buf, uint64(e.Size))
	}
	if a.Has(attr.Inode) {
		buf = appendDelta(buf, e.Inode, &prev.inode)
	}
	if a.Has(attr.Nlink) {
		buf = binary.AppendUvarint(buf, e.Nlink)
	}
	if hasRdev(e) {
		buf = binary.AppendUvarint(buf, e.Rdev)
	}
	if hasTarget(e) {
		buf = appendString(buf, e.Target)
	}
	if a.Has(attr.Mtime) {
		buf = appendDelta(buf, uint64(e.Mtime), &prev.mtime)
	}
	if a.Has(attr.Ctime) {
		base := prev.ctime
		if fromMtime {
			base = uint64(e.Mtime)
		}
		buf = binary.AppendVarint(buf, int64(uint64(e.Ctime)-base))
		prev.ctime = uint64(e.Ctime)
	}
	if a.Has(attr.Xattrs) {
		xs := e.Xattrs
		if !xattrsSorted(xs) {
			xs = slices.Clone(xs)
			slices.SortFunc(xs, func(a, b attr.Xattr) int { return strings.Compare(a.Name, b.Name) })
		}
		buf = binary.AppendUvarint(buf, uint64(len(xs)))
		for _, x := range xs {
			buf = appendString(buf, x.Name)
			buf = binary.AppendUvarint(buf, uint64(len(x.Value)))
			buf = append(buf, x.Value...)
		}
	}
	if e.HashAlg() != 0 {
		// The bytes are in the group's hashes, in front of the entries.
		buf = binary.AppendUvarint(buf, uint64(len(e.Hash)))
	}
	return buf
}

// commonPrefix returns the length of the longest common prefix of a and b.
func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
