package baseline

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/podfim/podfim/internal/attr"
)

// Read reads a baseline from r. It checks, in this order, the magic, the
// version, the sizes against the limits, the payload digest and the
// signature, and only then decompresses and decodes the payload, so that
// nothing unauthenticated reaches the decompressor or the decoder when a
// key is required. Nothing may follow the payload. When r has a Len method
// (bytes.Reader, bytes.Buffer, strings.Reader) it must return the number of
// unread bytes: Read uses it to check the size before reading.
//
// Errors wrap ErrFormat, ErrVersion, ErrDigest or ErrSignature, except for
// invalid options and errors of r itself.
func Read(r io.Reader, opts ReadOptions) (*Baseline, error) {
	size := int64(-1)
	if l, ok := r.(interface{ Len() int }); ok {
		// bytes.Reader, bytes.Buffer, strings.Reader: the input is in
		// memory and its size known.
		size = int64(l.Len())
	}
	return read(r, opts, size)
}

// read is Read with the size of the input when it is known (size >= 0),
// which lets a truncated or padded file fail before the payload is read and
// lets the payload buffer be allocated once.
func read(r io.Reader, opts ReadOptions, size int64) (*Baseline, error) {
	maxSize, maxEntries, err := opts.limits()
	if err != nil {
		return nil, err
	}
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
	payload, err := readPayload(r, h.payloadLen, size >= 0)
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(payload) != h.digest {
		return nil, errorf(ErrDigest, "baseline payload does not match its digest: the file is corrupt or was modified")
	}
	if err := verify(h, opts.VerifyKey); err != nil {
		return nil, err
	}
	b, err := decompress(payload, maxSize, maxEntries)
	if err != nil {
		return nil, err
	}
	b.setStored(h)
	return b, nil
}

// readHeader reads the header up to the payload.
func readHeader(r io.Reader) (*header, error) {
	var buf [maxHeaderSize]byte
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
	rest := buf[preambleSize:h.size()]
	if _, err := io.ReadFull(r, rest); err != nil {
		return nil, truncated(err, "header")
	}
	if h.signed() {
		h.publicKey, rest = rest[:32], rest[32:]
		h.signature, rest = rest[:64], rest[64:]
	}
	h.payloadLen = binary.BigEndian.Uint64(rest)
	copy(h.digest[:], rest[8:])
	if h.payloadLen > 1<<62 {
		return nil, formatErrorf("baseline payload length %d is impossible", h.payloadLen)
	}
	return h, nil
}

// truncated turns an unexpected end of input into ErrFormat and passes other
// read errors through: a failing disk is not a corrupt baseline.
func truncated(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return formatErrorf("baseline is truncated in the %s", what)
	}
	return fmt.Errorf("failed to read baseline %s: %w", what, err)
}

// readPayload reads exactly n bytes and checks that nothing follows them.
// Unless the input size was checked against n already (exact), the buffer
// grows with what actually arrives instead of trusting n.
func readPayload(r io.Reader, n uint64, exact bool) ([]byte, error) {
	var payload []byte
	if exact {
		payload = make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return nil, truncated(err, "payload")
		}
	} else {
		var buf bytes.Buffer
		buf.Grow(int(min(n, 1<<20)))
		got, err := buf.ReadFrom(io.LimitReader(r, int64(n)))
		if err != nil {
			return nil, truncated(err, "payload")
		}
		if uint64(got) < n {
			return nil, formatErrorf("baseline is truncated in the payload: %d of %d bytes", got, n)
		}
		payload = buf.Bytes()
	}
	var one [1]byte
	switch m, err := io.ReadFull(r, one[:]); {
	case m > 0:
		return nil, formatErrorf("baseline has trailing garbage after the payload")
	case err != io.EOF:
		return nil, fmt.Errorf("failed to read baseline: %w", err)
	}
	return payload, nil
}

// decompress decodes an authenticated payload.
func decompress(payload []byte, maxBody int64, maxEntries uint64) (*Baseline, error) {
	src := bytes.NewReader(payload)
	zr, err := gzip.NewReader(src)
	if err != nil {
		return nil, formatErrorf("baseline payload is not gzip: %w", err)
	}
	// One member only: anything after it is trailing garbage.
	zr.Multistream(false)
	b, err := decodeBody(zr, maxBody, maxEntries, uint64(len(payload)))
	if err != nil {
		return nil, err
	}
	if src.Len() != 0 {
		return nil, formatErrorf("baseline payload has %d bytes after the gzip stream", src.Len())
	}
	return b, nil
}

// decodeBody decodes a whole decompressed body of at most maxBody bytes
// from r. sizeHint is the compressed size, used to bound the first
// allocation.
func decodeBody(r io.Reader, maxBody int64, maxEntries, sizeHint uint64) (*Baseline, error) {
	d := newDecoder(r, maxBody)
	b, err := d.body(maxEntries, sizeHint)
	if err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return b, nil
}

func (d *decoder) body(maxEntries, payloadLen uint64) (*Baseline, error) {
	policy, err := d.string(maxPolicyDigestLen, "policy digest")
	if err != nil {
		return nil, err
	}
	count, err := d.bounded(maxEntries, "entry count")
	if err != nil {
		return nil, err
	}
	// The count is not trusted for the allocation: a stored entry takes
	// more than 32 compressed bytes when it has a hash, so a larger count
	// than the payload can hold only grows the slice as entries arrive.
	b := &Baseline{PolicyDigest: policy, Entries: make([]attr.Entry, 0, min(count, payloadLen/32+64))}
	var prev entryState
	var path []byte
	for i := uint64(0); i < count; i++ {
		b.Entries = append(b.Entries, attr.Entry{})
		e := &b.Entries[i]
		after := prev.path
		if path, err = d.entry(e, path, &prev); err != nil {
			if e.Path == "" {
				return nil, fmt.Errorf("baseline entry %d (after %q): %w", i, after, err)
			}
			return nil, fmt.Errorf("baseline entry %d (%q): %w", i, e.Path, err)
		}
	}
	if err := d.hashes(b.Entries); err != nil {
		return nil, err
	}
	end, err := d.next(len(endMarker))
	if err != nil {
		return nil, err
	}
	if string(end) != endMarker {
		return nil, formatErrorf("baseline body has no end marker after %d entries (wrong entry count?)", count)
	}
	return b, nil
}

// entry decodes one entry into e. path holds the previous path on entry and
// e.Path's bytes on return, so front coding needs no extra copies.
func (d *decoder) entry(e *attr.Entry, path []byte, prev *entryState) ([]byte, error) {
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
	if flags&^knownEntryFlags != 0 {
		return nil, formatErrorf("unknown entry flags %#02x", flags)
	}
	e.Racy = flags&entryRacy != 0
	if err := d.fields(e, prev, flags&entryCtimeFromMtime != 0); err != nil {
		return nil, err
	}
	// Everything was read within bounds; the rules shared with Write
	// decide the rest.
	if err := checkFields(e); err != nil {
		return nil, formatErrorf("%w", err)
	}
	return path, nil
}

// fields decodes the fields that e.Attrs says are stored.
func (d *decoder) fields(e *attr.Entry, prev *entryState, fromMtime bool) error {
	a := e.Attrs
	u32 := func(what string) (uint32, error) {
		v, err := d.bounded(uint64(^uint32(0)), what)
		return uint32(v), err
	}
	var err error
	if a.Has(attr.Mode) {
		if e.Mode, err = u32("mode"); err != nil {
			return err
		}
	}
	if a.Has(attr.UID) {
		if e.UID, err = u32("uid"); err != nil {
			return err
		}
	}
	if a.Has(attr.GID) {
		if e.GID, err = u32("gid"); err != nil {
			return err
		}
	}
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
	if a.Has(attr.Xattrs) {
		n, err := d.bounded(maxXattrs, "extended attribute count")
		if err != nil {
			return err
		}
		if n > 0 {
			e.Xattrs = make([]attr.Xattr, n)
		}
		for i := range e.Xattrs {
			x := &e.Xattrs[i]
			if x.Name, err = d.string(maxXattrNameLen, "extended attribute name"); err != nil {
				return err
			}
			vn, err := d.bounded(maxXattrValueLen, "extended attribute value length")
			if err != nil {
				return err
			}
			if vn > 0 {
				if x.Value, err = d.appendBytes(nil, int(vn)); err != nil {
					return err
				}
			}
		}
	}
	if alg := e.HashAlg(); alg != 0 {
		n, err := d.bounded(uint64(len(d.placeholder)), "hash length")
		if err != nil {
			return err
		}
		// The bytes come in the hash block after the entries; until then
		// a placeholder of the right length lets checkEntry judge it.
		if n > 0 {
			e.Hash = d.placeholder[:n:n]
			d.hashBytes += n
		}
	}
	return nil
}

// hashes reads the hash block into the entries that have a hash.
func (d *decoder) hashes(es []attr.Entry) error {
	// hashBytes is bounded by the entries already in memory, so this
	// allocation is too.
	arena := make([]byte, d.hashBytes)
	for rest := arena; len(rest) > 0; {
		b, err := d.next(min(len(rest), bodyBufSize))
		if err != nil {
			return fmt.Errorf("baseline hash block: %w", err)
		}
		rest = rest[copy(rest, b):]
	}
	for i := range es {
		if n := len(es[i].Hash); n > 0 {
			es[i].Hash, arena = arena[:n:n], arena[n:]
		}
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
