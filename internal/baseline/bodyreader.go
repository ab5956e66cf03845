package baseline

import (
	"encoding/binary"
	"errors"
	"io"
)

// bodyBufSize is the decoder's buffer: larger than any single field (the
// largest is an extended attribute value), so that every field can be
// decoded straight from the buffer.
const bodyBufSize = 2 * maxXattrValueLen

// decoder reads a decompressed body strictly: every length is checked
// before anything is allocated for it, and only the canonical encoding of a
// baseline is accepted, so that a body that decodes re-encodes to the same
// bytes. It keeps its own buffer rather than a bufio.Reader because varints
// and short fields decode several times faster from a slice.
type decoder struct {
	src *io.LimitedReader
	buf []byte // buf[pos:] is read but not decoded yet
	pos int
	err error // what ended src, once it has

	knownFlags byte   // the entry flags of the body's version
	layers     uint64 // the most image layers an entry may name
}

func newDecoder(r io.Reader, maxBody int64) *decoder {
	// One byte over the limit tells a body that is too large from one that
	// is exactly at it (which must still reach gzip's EOF and checksum).
	return &decoder{src: &io.LimitedReader{R: r, N: maxBody + 1}, buf: make([]byte, 0, bodyBufSize)}
}

// fill tries to make n bytes (at most bodyBufSize) available at buf[pos:].
// It reports whether it did; if not, d.err says why.
func (d *decoder) fill(n int) bool {
	if len(d.buf)-d.pos >= n {
		return true
	}
	rest := copy(d.buf[:cap(d.buf)], d.buf[d.pos:])
	d.buf, d.pos = d.buf[:rest], 0
	for len(d.buf) < n && d.err == nil {
		m, err := d.src.Read(d.buf[len(d.buf):cap(d.buf)])
		d.buf = d.buf[:len(d.buf)+m]
		d.err = err
	}
	return len(d.buf) >= n
}

// failure turns the end of the stream into a read error.
func (d *decoder) failure() error {
	switch {
	case d.err == nil || errors.Is(d.err, io.EOF) || errors.Is(d.err, io.ErrUnexpectedEOF):
		if d.src.N <= 0 {
			return formatErrorf("baseline body is larger than the size limit")
		}
		return formatErrorf("baseline body is truncated")
	}
	// The stream decompresses from memory, so any other error (a bad
	// checksum, flate.CorruptInputError) is about the payload, not I/O.
	return formatErrorf("baseline payload is corrupt: %w", d.err)
}

// next returns the next n bytes, valid until the next call.
func (d *decoder) next(n int) ([]byte, error) {
	if !d.fill(n) {
		return nil, d.failure()
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b, nil
}

func (d *decoder) byte() (byte, error) {
	if d.pos < len(d.buf) {
		c := d.buf[d.pos]
		d.pos++
		return c, nil
	}
	b, err := d.next(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

// appendBytes appends the next n bytes (n already bounded) to dst.
func (d *decoder) appendBytes(dst []byte, n int) ([]byte, error) {
	b, err := d.next(n)
	if err != nil {
		return nil, err
	}
	return append(dst, b...), nil
}

// uvarint reads a canonical uvarint: at most 64 bits, and no redundant
// trailing zero group (which binary.Uvarint would accept).
func (d *decoder) uvarint(what string) (uint64, error) {
	// Most varints in a baseline are one byte.
	if d.pos < len(d.buf) && d.buf[d.pos] < 0x80 {
		d.pos++
		return uint64(d.buf[d.pos-1]), nil
	}
	if len(d.buf)-d.pos < binary.MaxVarintLen64 {
		// The body may end less than MaxVarintLen64 bytes from here.
		d.fill(binary.MaxVarintLen64)
	}
	b := d.buf[d.pos:]
	var x uint64
	var s uint
	for i, c := range b[:min(len(b), binary.MaxVarintLen64)] {
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			if c == 0 && i > 0 {
				return 0, formatErrorf("%s: non-canonical varint", what)
			}
			d.pos += i + 1
			return x | uint64(c)<<s, nil
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	if len(b) >= binary.MaxVarintLen64 {
		return 0, formatErrorf("%s: varint overflows 64 bits", what)
	}
	return 0, d.failure()
}

// varint reads a zig-zag varint.
func (d *decoder) varint(what string) (int64, error) {
	u, err := d.uvarint(what)
	return int64(u>>1) ^ -int64(u&1), err
}

// bounded reads a uvarint that must be at most max.
func (d *decoder) bounded(max uint64, what string) (uint64, error) {
	v, err := d.uvarint(what)
	if err == nil && v > max {
		err = formatErrorf("%s %d is more than %d", what, v, max)
	}
	return v, err
}

// string reads a length-prefixed string of at most max bytes.
func (d *decoder) string(max uint64, what string) (string, error) {
	n, err := d.bounded(max, what+" length")
	if err != nil || n == 0 {
		return "", err
	}
	b, err := d.next(int(n))
	return string(b), err
}

// end checks that the body ends where the decoder stopped. Reading on to
// EOF also makes gzip check its CRC and length.
func (d *decoder) end() error {
	if d.fill(1) {
		return formatErrorf("baseline body has data after the end marker")
	}
	if d.err != io.EOF || d.src.N <= 0 {
		return d.failure()
	}
	return nil
}
