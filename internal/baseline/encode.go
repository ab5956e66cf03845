package baseline

import (
	"bytes"
	"compress/flate"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"
	"strings"

	"github.com/podfim/podfim/internal/attr"
)

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

// checkKey reports why key cannot sign a baseline; nil is no key.
func checkKey(key ed25519.PrivateKey) error {
	if key != nil && len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("failed to sign baseline: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	return nil
}

// validate reports why b cannot be written; Read enforces the same rules.
func validate(b *Baseline) error {
	if err := checkStart(b.Version, &b.Header, len(b.Entries)); err != nil {
		return err
	}
	layers := b.layers()
	for i := range b.Entries {
		prev := ""
		if i > 0 {
			prev = b.Entries[i-1].Path
		}
		if err := checkNext(i, prev, &b.Entries[i], layers); err != nil {
			return err
		}
	}
	return nil
}

// layers is the number of image layers an entry may name.
func (h *Header) layers() int {
	if h.Image == nil {
		return 0
	}
	return len(h.Image.Layers)
}

// checkStart reports why a baseline with this header and number of
// entries cannot be written. Whatever version a Baseline was read with,
// it is written with the current one.
func checkStart(version int, h *Header, count int) error {
	if version < 0 || version > Version {
		return fmt.Errorf("cannot write format version %d: %d is the newest", version, Version)
	}
	if err := h.Validate(); err != nil {
		return err
	}
	if count < 0 || count > MaxEntries {
		return fmt.Errorf("%d entries, outside [0, %d]", count, MaxEntries)
	}
	return nil
}

// checkNext reports why e cannot be entry i of a baseline after an entry
// with the path prev ("" for the first), in a baseline whose image has
// the given number of layers.
func checkNext(i int, prev string, e *attr.Entry, layers int) error {
	if !xattrsSorted(e.Xattrs) {
		c := *e
		c.Xattrs = slices.Clone(e.Xattrs)
		c.SortXattrs()
		e = &c
	}
	if err := checkEntry(e); err != nil {
		return fmt.Errorf("entry %d (%q): %w", i, e.Path, err)
	}
	if i > 0 && attr.ComparePaths(prev, e.Path) >= 0 {
		return fmt.Errorf("entry %d (%q): duplicate or out of order after %q", i, e.Path, prev)
	}
	if int(e.Layer) > layers {
		return fmt.Errorf("entry %d (%q): image layer %d, but the header records %d layers", i, e.Path, e.Layer, layers)
	}
	return nil
}

// xattrsSorted reports whether xs are in canonical (name) order.
func xattrsSorted(xs []attr.Xattr) bool {
	return slices.IsSortedFunc(xs, func(a, b attr.Xattr) int { return strings.Compare(a.Name, b.Name) })
}

// payloadWriter writes the gzip payload of a baseline to an io.Writer as
// the body is encoded, and digests what it writes: neither the body nor the
// payload is ever held whole.
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
//
// The compressed bytes do not depend on how the body is cut into writes
// (flate compresses the same stream the same way), so Write, which has
// every entry, and Writer, which gets them one at a time, give the same
// file.
type payloadWriter struct {
	out  *digestWriter
	zw   *flate.Writer
	crc  hash.Hash32
	size uint64 // body bytes, for ISIZE
	enc  *bodyEncoder
}

func newPayloadWriter(w io.Writer) (*payloadWriter, error) {
	out := &digestWriter{w: w, sum: sha256.New()}
	// What gzip.Writer writes for a zero Header: no name, mtime 0, XFL 0,
	// OS unknown. The output depends on the baseline only.
	if _, err := out.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}); err != nil {
		return nil, err
	}
	zw, err := flate.NewWriter(out, gzipLevel)
	if err != nil {
		return nil, err
	}
	return &payloadWriter{out: out, zw: zw, crc: crc32.NewIEEE()}, nil
}

// Write compresses a part of the body.
func (p *payloadWriter) Write(b []byte) (int, error) {
	p.sum(b)
	return p.zw.Write(b)
}

func (p *payloadWriter) sum(b []byte) {
	p.crc.Write(b)
	p.size += uint64(len(b))
}

// hashPart writes the hash part of a group (its length and hash bytes).
func (p *payloadWriter) hashPart(b []byte) error {
	if len(b) < minStoredHashes {
		_, err := p.Write(b)
		return err
	}
	if err := p.zw.Flush(); err != nil {
		return err
	}
	p.sum(b)
	if err := writeStored(p.out, b); err != nil {
		return err
	}
	p.zw.Reset(p.out)
	return nil
}

// begin starts the body: the entry count.
func (p *payloadWriter) begin(count int) error {
	enc, err := newBodyEncoder(p, p.hashPart, Version, "", count)
	p.enc = enc
	return err
}

// close ends the body and the gzip member, and returns the header of the
// file with the header record rec, signed with key unless it is nil.
func (p *payloadWriter) close(key ed25519.PrivateKey, rec []byte) (*header, error) {
	if err := p.enc.close(); err != nil {
		return nil, err
	}
	if err := p.zw.Close(); err != nil {
		return nil, err
	}
	var tail [8]byte
	binary.LittleEndian.PutUint32(tail[:], p.crc.Sum32())
	binary.LittleEndian.PutUint32(tail[4:], uint32(p.size)) // ISIZE is the size mod 2^32
	if _, err := p.out.Write(tail[:]); err != nil {
		return nil, err
	}
	h := &header{version: Version, record: rec, payloadLen: p.out.n}
	copy(h.digest[:], p.out.sum.Sum(nil))
	if key != nil {
		sign(h, key)
	}
	return h, nil
}

// digestWriter passes writes on and digests and counts them.
type digestWriter struct {
	w   io.Writer
	sum hash.Hash
	n   uint64
}

func (d *digestWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.sum.Write(p[:n])
	d.n += uint64(n)
	return n, err
}

// minStoredHashes is the fewest hash bytes a payload stores rather than
// compresses: a flush and a reset cost the compressor about as much.
const minStoredHashes = 256

// writeStored writes p to a deflate stream that is at a byte boundary, as
// non-final stored blocks (RFC 1951, 3.2.4).
func writeStored(out io.Writer, p []byte) error {
	var hdr [5]byte
	for len(p) > 0 {
		n := min(len(p), 0xffff)
		// BFINAL 0 and BTYPE 00 in the first 3 bits, padded to the byte.
		hdr[0] = 0
		binary.LittleEndian.PutUint16(hdr[1:], uint16(n))
		binary.LittleEndian.PutUint16(hdr[3:], ^uint16(n))
		if _, err := out.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := out.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// flushSize is how much encoded body is buffered between writes to the
// compressor: large enough that the per-call cost does not matter, small
// enough that a group's entries are not all held.
const flushSize = 64 << 10

// bodyEncoder writes the uncompressed body one entry at a time: the policy
// digest, count, entries and end marker go to w, except that the hash part
// of each group (its length and its hash bytes) goes to hashes, in one call
// per group. The hashes of a group come before its entries, so it holds
// one group's entries, encoded (about 50 bytes each, since a group's
// hashes must be known before any of its entries is written), and its
// hashes. It does not validate what it encodes, so that tests can build
// invalid bodies with it.
type bodyEncoder struct {
	w      io.Writer
	hashes func([]byte) error
	buf    []byte // the current group's entries, encoded
	hb     []byte // the current group's hash part: room for the length, then the hash bytes
	n      int    // entries in the current group
	prev   entryState
}

// hashLenRoom is the room hb keeps in front of the hash bytes for their
// length (a uvarint of at most maxGroupHashes).
const hashLenRoom = 3

// newBodyEncoder starts a body of the given format version: version 1
// (written by tests only, for old files) starts with the policy digest,
// which version 2 keeps in the header.
func newBodyEncoder(w io.Writer, hashes func([]byte) error, version int, policyDigest string, count int) (*bodyEncoder, error) {
	e := newEncoder(w, hashes)
	var start []byte
	if version == 1 {
		start = appendString(start, policyDigest)
	}
	start = binary.AppendUvarint(start, uint64(count))
	_, err := w.Write(start)
	return e, err
}

// newEncoder returns a bodyEncoder that has written nothing yet.
func newEncoder(w io.Writer, hashes func([]byte) error) *bodyEncoder {
	return &bodyEncoder{w: w, hashes: hashes, buf: make([]byte, 0, flushSize), hb: make([]byte, hashLenRoom, 4096)}
}

// add encodes the next entry.
func (e *bodyEncoder) add(ent *attr.Entry) error {
	if ent.HashAlg() != 0 {
		e.hb = append(e.hb, ent.Hash...)
	}
	// The group's entries wait until its hashes are written; a long
	// group goes into a growing buffer.
	e.buf = appendEntry(e.buf, ent, &e.prev)
	e.n++
	if e.n == groupSize {
		return e.flushGroup()
	}
	return nil
}

// flushGroup writes the current group: its hash part, then its entries.
func (e *bodyEncoder) flushGroup() error {
	if e.n == 0 {
		return nil
	}
	n := uint64(len(e.hb) - hashLenRoom)
	var l [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(l[:], n)
	var part []byte
	if k <= hashLenRoom {
		part = e.hb[hashLenRoom-k:]
		copy(part, l[:k])
	} else {
		// Only a test's invalid group can hold this many hash bytes.
		part = append(l[:k:k], e.hb[hashLenRoom:]...)
	}
	if err := e.hashes(part); err != nil {
		return err
	}
	if _, err := e.w.Write(e.buf); err != nil {
		return err
	}
	e.buf, e.hb, e.n = e.buf[:0], e.hb[:hashLenRoom], 0
	return nil
}

// close writes the last group and the end marker.
func (e *bodyEncoder) close() error {
	if err := e.flushGroup(); err != nil {
		return err
	}
	_, err := e.w.Write([]byte(endMarker))
	return err
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
	if e.Layer != 0 {
		flags |= entryLayer
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
	if e.Layer != 0 {
		buf = binary.AppendUvarint(buf, uint64(e.Layer))
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
