package baseline

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/podfim/podfim/internal/attr"
)

// openFile is open for a file of the given size, without holding the
// payload: one pass over the file checks the digest and the signature, and
// the Reader reads the payload again as it decodes (see fileSource).
//
// f is an *os.File but for FuzzRead, which checks that it answers as open
// does for any input.
func openFile(f payloadFile, opts ReadOptions, size int64) (*Reader, error) {
	maxSize, maxEntries, err := opts.limits()
	if err != nil {
		return nil, err
	}
	h, err := readSizedHeader(f, size, maxSize)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	if _, err := io.CopyN(sum, f, int64(h.payloadLen)); err != nil {
		return nil, truncated(err, "payload")
	}
	if err := checkEnd(f); err != nil {
		return nil, err
	}
	src := &fileSource{f: f, off: int64(h.size()), n: int64(h.payloadLen), want: h.digest}
	if !bytes.Equal(sum.Sum(nil), h.digest[:]) {
		return nil, errorf(ErrDigest, "baseline payload does not match its digest: the file is corrupt or was modified")
	}
	if err := verify(h, opts.VerifyKey); err != nil {
		return nil, err
	}
	// Authenticated as it was a moment ago; fileSource checks again that
	// what is decoded is what was authenticated.
	return newReader(h, src, opts.Binding, maxSize, maxEntries)
}

// readSizedHeader reads the header and checks the sizes it claims against
// the limit and, when the input size is known (size >= 0), against it.
func readSizedHeader(r io.Reader, size, maxSize int64) (*header, error) {
	if size > maxSize {
		return nil, formatErrorf("baseline is %d bytes, more than the limit of %d", size, maxSize)
	}
	h, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	total := uint64(h.size()) + h.payloadLen // cannot overflow: payloadLen was checked in readHeader
	if total > uint64(maxSize) {
		return nil, formatErrorf("baseline payload is %d bytes, more than the limit of %d", h.payloadLen, uint64(maxSize)-uint64(h.size()))
	}
	if size >= 0 && uint64(size) != total {
		if uint64(size) < total {
			return nil, formatErrorf("baseline is truncated: %d bytes, header says %d", size, total)
		}
		return nil, formatErrorf("baseline has %d bytes of trailing garbage after the payload", uint64(size)-total)
	}
	return h, nil
}

// readHeader reads the header up to the payload. The header record is read
// but not parsed: that waits until the file is authenticated.
func readHeader(r io.Reader) (*header, error) {
	var buf [minHeaderSize + signatureSize]byte
	if n, err := io.ReadFull(r, buf[:preambleSize]); err != nil {
		switch {
		case err == io.EOF:
			return nil, formatErrorf("not a podfim baseline (empty)")
		case err == io.ErrUnexpectedEOF && !bytes.HasPrefix([]byte(magic), buf[:min(n, len(magic))]):
			return nil, formatErrorf("not a podfim baseline (bad magic)")
		}
		return nil, truncated(err, "header")
	}
	if string(buf[:len(magic)]) != magic {
		return nil, formatErrorf("not a podfim baseline (bad magic)")
	}
	h := &header{
		version: binary.BigEndian.Uint16(buf[len(magic):]),
		flags:   binary.BigEndian.Uint16(buf[len(magic)+2:]),
	}
	switch {
	case h.version > Version:
		return nil, errorf(ErrVersion, "baseline format version %d is newer than this podfim supports (%d); upgrade podfim", h.version, Version)
	case h.version == 0:
		return nil, formatErrorf("invalid baseline format version 0")
	case h.flags&^knownFlags != 0:
		return nil, formatErrorf("unknown baseline flags %#04x", h.flags)
	}
	rest := buf[preambleSize : h.fixedSize()-trailerSize]
	if _, err := io.ReadFull(r, rest); err != nil {
		return nil, truncated(err, "header")
	}
	if h.signed() {
		h.publicKey = bytes.Clone(rest[:ed25519.PublicKeySize])
		h.signature = bytes.Clone(rest[ed25519.PublicKeySize:signatureSize])
	}
	if h.version >= 2 {
		rec, err := readRecord(r)
		if err != nil {
			return nil, err
		}
		h.record = rec
	}
	var t [trailerSize]byte
	trailer := t[:]
	if _, err := io.ReadFull(r, trailer); err != nil {
		return nil, truncated(err, "header")
	}
	h.payloadLen = binary.BigEndian.Uint64(trailer)
	copy(h.digest[:], trailer[8:])
	if h.payloadLen > 1<<62 {
		return nil, formatErrorf("baseline payload length %d is impossible", h.payloadLen)
	}
	return h, nil
}

// readRecord reads the length-prefixed header record. The buffer grows with
// the bytes that arrive, up to maxRecordLen, instead of trusting the length.
func readRecord(r io.Reader) ([]byte, error) {
	var l [recordLenSize]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, truncated(err, "header")
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > maxRecordLen {
		return nil, formatErrorf("baseline header record is %d bytes, more than %d", n, maxRecordLen)
	}
	var rec bytes.Buffer
	rec.Grow(int(min(n, 4096)))
	if got, err := rec.ReadFrom(io.LimitReader(r, int64(n))); err != nil {
		return nil, truncated(err, "header record")
	} else if got < int64(n) {
		return nil, formatErrorf("baseline is truncated in the header record")
	}
	return rec.Bytes(), nil
}

// truncated turns an unexpected end of input into ErrFormat and passes other
// read errors through: a failing disk is not a corrupt baseline.
func truncated(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return formatErrorf("baseline is truncated in the %s", what)
	}
	return fmt.Errorf("failed to read baseline %s: %w", what, err)
}

// checkEnd checks that r, just past the payload, has nothing more.
func checkEnd(r io.Reader) error {
	var one [1]byte
	switch m, err := io.ReadFull(r, one[:]); {
	case m > 0:
		return formatErrorf("baseline has trailing garbage after the payload")
	case err != io.EOF:
		return fmt.Errorf("failed to read baseline: %w", err)
	}
	return nil
}

// bodyStream decodes a decompressed body entry by entry.
type bodyStream struct {
	d     *decoder
	count uint64 // entries announced
	done  uint64 // entries decoded
	prev  entryState
	path  []byte // the bytes of prev.path, for front coding
	// hashes holds the hash bytes of the current group that its entries
	// have not taken yet; it is a part of hashBuf, which each group reuses.
	hashes, hashBuf []byte
	cur             attr.Entry // the entry next returned last
}

// bodyFormat is what decoding a body depends on besides the body: the
// format version, and the number of image layers an entry may name.
type bodyFormat struct {
	version uint16
	layers  int
}

// newBodyStream reads the start of the body from r, a body of at most
// maxBody bytes: the policy digest (version 1 only; "" otherwise) and the
// entry count.
func newBodyStream(r io.Reader, f bodyFormat, maxBody int64, maxEntries uint64) (*bodyStream, string, error) {
	d := newDecoder(r, maxBody)
	d.knownFlags, d.layers = knownEntryFlags, uint64(f.layers)
	var policy string
	if f.version == 1 {
		d.knownFlags = knownEntryFlagsV1
		var err error
		if policy, err = d.string(maxPolicyDigestLen, "policy digest"); err != nil {
			return nil, "", err
		}
		if !printable(policy) {
			return nil, "", formatErrorf("policy digest %q is not printable UTF-8", policy)
		}
	}
	count, err := d.bounded(maxEntries, "entry count")
	if err != nil {
		return nil, "", err
	}
	return &bodyStream{d: d, count: count}, policy, nil
}

// next decodes the next entry into s.cur and returns it, or returns io.EOF
// once the body has ended as it must: the end marker after the announced
// number of entries, and the end of the stream.
func (s *bodyStream) next() (*attr.Entry, error) {
	d := s.d
	if s.done == s.count {
		end, err := d.next(len(endMarker))
		if err != nil {
			return nil, err
		}
		if string(end) != endMarker {
			return nil, formatErrorf("baseline body has no end marker after %d entries (wrong entry count?)", s.count)
		}
		if err := d.end(); err != nil {
			return nil, err
		}
		return nil, io.EOF
	}
	if s.done%groupSize == 0 {
		if err := s.group(); err != nil {
			return nil, err
		}
	}
	e := &s.cur
	*e = attr.Entry{}
	after := s.prev.path
	var err error
	if s.path, err = d.entry(e, s.path, &s.prev, &s.hashes); err != nil {
		if e.Path == "" {
			return nil, fmt.Errorf("baseline entry %d (after %q): %w", s.done, after, err)
		}
		return nil, fmt.Errorf("baseline entry %d (%q): %w", s.done, e.Path, err)
	}
	s.done++
	if (s.done%groupSize == 0 || s.done == s.count) && len(s.hashes) > 0 {
		return nil, formatErrorf("baseline entries %d to %d: their group holds %d hash bytes more than they take",
			(s.done-1)/groupSize*groupSize, s.done-1, len(s.hashes))
	}
	return e, nil
}

// group reads the hash bytes of the group that starts at entry s.done.
func (s *bodyStream) group() error {
	limit := min(s.count-s.done, groupSize) * maxHashLen
	n, err := s.d.bounded(limit, "group hash length")
	if err != nil {
		return fmt.Errorf("baseline group at entry %d: %w", s.done, err)
	}
	// The buffer grows with the bytes that arrive, up to n, which is
	// bounded by maxGroupHashes.
	s.hashBuf = s.hashBuf[:0]
	for rest := int(n); rest > 0; {
		b, err := s.d.next(min(rest, bodyBufSize))
		if err != nil {
			return err
		}
		s.hashBuf = append(s.hashBuf, b...)
		rest -= len(b)
	}
	s.hashes = s.hashBuf
	return nil
}

// entry decodes one entry into e. path holds the previous path on entry and
// e.Path's bytes on return, so front coding needs no extra copies. The hash,
// if any, is taken from the front of hashes, the group's hash bytes.
func (d *decoder) entry(e *attr.Entry, path []byte, prev *entryState, hashes *[]byte) ([]byte, error) {
	shared, err := d.bounded(uint64(len(prev.path)), "shared path prefix")
	if err != nil {
		return nil, err
	}
	n, err := d.bounded(maxPathLen-shared, "path suffix length")
	if err != nil {
		return nil, err
	}
	if path, err = d.appendBytes(path[:shared], int(n)); err != nil {
		return nil, err
	}
	e.Path = string(path)
	// Canonical front coding shares the longest common prefix.
	if int(shared) < len(prev.path) && int(shared) < len(e.Path) && prev.path[shared] == e.Path[shared] {
		return nil, formatErrorf("path shares a shorter prefix than it could (non-canonical)")
	}
	// The components the path shares whole with the previous one (up to
	// its last "/" in the shared prefix) were checked with it, and decide
	// nothing about the order: only the rest needs looking at.
	after, known := prev.path, 0
	if shared > 0 {
		known = strings.LastIndexByte(prev.path[:shared], '/') + 1
	}
	if err := checkPathFrom(e.Path, known); err != nil {
		return nil, formatErrorf("%w", err)
	}
	if known > 0 && attr.ComparePaths(after[known:], e.Path[known:]) >= 0 {
		return nil, formatErrorf("duplicate or out of order after %q", after)
	}
	prev.path = e.Path

	a, err := d.bounded(uint64(^uint32(0)), "attribute set")
	if err != nil {
		return nil, err
	}
	e.Attrs = attr.Set(a)
	if !e.Attrs.Valid() {
		return nil, formatErrorf("unknown attribute bits %#x", a)
	}
	t, err := d.byte()
	if err != nil {
		return nil, err
	}
	if t > byte(attr.TypeSocket) {
		return nil, formatErrorf("unknown file type %d", t)
	}
	e.Type = attr.FileType(t)
	flags, err := d.byte()
	if err != nil {
		return nil, err
	}
	if flags&^d.knownFlags != 0 {
		return nil, formatErrorf("unknown entry flags %#02x", flags)
	}
	e.Racy = flags&entryRacy != 0
	if err := d.fields(e, prev, flags, hashes); err != nil {
		return nil, err
	}
	// Everything was read within bounds; the rules shared with Write
	// decide the rest.
	if err := checkFields(e); err != nil {
		return nil, formatErrorf("%w", err)
	}
	return path, nil
}

// fields decodes the fields that e.Attrs (and, for the layer, flags) say
// are stored.
func (d *decoder) fields(e *attr.Entry, prev *entryState, flags byte, hashes *[]byte) error {
	if err := d.inodeFields(e, prev); err != nil {
		return err
	}
	if err := d.times(e, prev, flags&entryCtimeFromMtime != 0); err != nil {
		return err
	}
	if e.Attrs.Has(attr.Xattrs) {
		if err := d.xattrs(e); err != nil {
			return err
		}
	}
	if err := d.hash(e, hashes); err != nil {
		return err
	}
	if flags&entryLayer != 0 {
		n, err := d.bounded(d.layers, "image layer")
		if err != nil {
			return err
		}
		if n == 0 {
			return formatErrorf("image layer 0 is stored (non-canonical: 0 is not stored)")
		}
		e.Layer = uint16(n)
	}
	return nil
}

// inodeFields decodes mode to link target.
func (d *decoder) inodeFields(e *attr.Entry, prev *entryState) error {
	a := e.Attrs
	u32 := func(dst *uint32, bit attr.Set, what string) error {
		if !a.Has(bit) {
			return nil
		}
		v, err := d.bounded(uint64(^uint32(0)), what)
		*dst = uint32(v)
		return err
	}
	if err := u32(&e.Mode, attr.Mode, "mode"); err != nil {
		return err
	}
	if err := u32(&e.UID, attr.UID, "uid"); err != nil {
		return err
	}
	if err := u32(&e.GID, attr.GID, "gid"); err != nil {
		return err
	}
	var err error
	if a.Has(attr.Size) {
		v, err := d.bounded(1<<63-1, "size")
		if err != nil {
			return err
		}
		e.Size = int64(v)
	}
	if a.Has(attr.Inode) {
		if e.Inode, err = d.delta(&prev.inode, "inode"); err != nil {
			return err
		}
	}
	if a.Has(attr.Nlink) {
		if e.Nlink, err = d.uvarint("nlink"); err != nil {
			return err
		}
	}
	if hasRdev(e) {
		if e.Rdev, err = d.uvarint("device number"); err != nil {
			return err
		}
	}
	if hasTarget(e) {
		if e.Target, err = d.string(maxTargetLen, "link target"); err != nil {
			return err
		}
	}
	return nil
}

// times decodes mtime and ctime.
func (d *decoder) times(e *attr.Entry, prev *entryState, fromMtime bool) error {
	a := e.Attrs
	if a.Has(attr.Mtime) {
		v, err := d.delta(&prev.mtime, "mtime")
		if err != nil {
			return err
		}
		e.Mtime = int64(v)
	}
	if a.Has(attr.Ctime) {
		v, err := d.varint("ctime")
		if err != nil {
			return err
		}
		base := prev.ctime
		if fromMtime {
			base = uint64(e.Mtime)
		}
		e.Ctime = int64(base + uint64(v))
	}
	// The flag must be the encoder's choice, or the same entry would have
	// two encodings.
	if ctimeFromMtime(e, prev.ctime) != fromMtime {
		return formatErrorf("ctime is coded against the wrong base (non-canonical)")
	}
	if a.Has(attr.Ctime) {
		prev.ctime = uint64(e.Ctime)
	}
	return nil
}

// xattrs decodes the extended attributes.
func (d *decoder) xattrs(e *attr.Entry) error {
	n, err := d.bounded(maxXattrs, "extended attribute count")
	if err != nil {
		return err
	}
	if n > 0 {
		e.Xattrs = make([]attr.Xattr, n)
	}
	// The total is checked before each value is allocated: 1,024 values
	// of 64 KiB are 64 MiB an entry, which a 1 MB file can claim fifteen
	// times over.
	total := uint64(0)
	for i := range e.Xattrs {
		x := &e.Xattrs[i]
		if x.Name, err = d.string(maxXattrNameLen, "extended attribute name"); err != nil {
			return err
		}
		vn, err := d.bounded(maxXattrValueLen, "extended attribute value length")
		if err != nil {
			return err
		}
		if total += uint64(len(x.Name)) + vn; total > MaxXattrBytes {
			return formatErrorf("extended attributes take more than %d bytes", MaxXattrBytes)
		}
		if vn > 0 {
			if x.Value, err = d.appendBytes(nil, int(vn)); err != nil {
				return err
			}
		}
	}
	return nil
}

// hash takes the entry's hash from the front of the group's hash bytes.
func (d *decoder) hash(e *attr.Entry, hashes *[]byte) error {
	if e.HashAlg() == 0 {
		return nil
	}
	n, err := d.bounded(maxHashLen, "hash length")
	if err != nil {
		return err
	}
	if n > uint64(len(*hashes)) {
		return formatErrorf("hash length %d is more than the %d hash bytes left in the group", n, len(*hashes))
	}
	if n > 0 {
		e.Hash, *hashes = (*hashes)[:n:n], (*hashes)[n:]
	}
	return nil
}

// delta reads a delta-coded field (see appendDelta).
func (d *decoder) delta(prev *uint64, what string) (uint64, error) {
	v, err := d.varint(what)
	if err != nil {
		return 0, err
	}
	*prev += uint64(v)
	return *prev, nil
}
