// Package baselinetest writes hostile baseline files for tests: files that
// are valid up to the point where a reader must stop them, and small on
// disk however much they claim.
//
// It encodes the format of internal/baseline/doc.go by hand, on purpose: a
// second encoder that does not share the package's code, so that the files
// are what an attacker would write, not what the writer allows.
package baselinetest

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// File is the payload of a hostile baseline; Write puts a header in front.
type File struct{ s *stream }

// Write writes the baseline under a header that names policyDigest (so
// that a check takes it for its own policy's).
func (f *File) Write(w io.Writer, policyDigest string) error { return f.s.finish(w, policyDigest) }

// XattrBomb is the baseline of issue 11 item 4: entries entries, each with
// xattrs extended attributes of valueBytes zero bytes (the issue: 15,
// 1,024, 65,536: 960 MiB decompressed, 1.1 MB stored by the issue, 1.5 MB
// here).
func XattrBomb(entries, xattrs, valueBytes int) (*File, error) {
	// Every value is the same run of zeros: it is compressed once, as a
	// deflate part of its own (a fresh compressor ended with a sync flush:
	// byte aligned, not final, no reference outside it), and repeated;
	// the bytes between values go in stored blocks. The body is the one
	// a single compressor would get, its compression a little worse
	// (1.5 MB for the 960 MiB instead of 1.1 MB), and it takes
	// milliseconds instead of compressing 64 MiB (half a minute under
	// the race detector).
	zero := make([]byte, valueBytes)
	zeros, err := deflatePart(zero)
	if err != nil {
		return nil, err
	}
	z := &stream{}
	prev := ""
	var head []byte
	head = binary.AppendUvarint(head, uint64(entries)) // entry count
	for i := range entries {
		if i%4096 == 0 {
			head = append(head, 0) // a group without hashes
		}
		path := fmt.Sprintf("/f%06d", i)
		shared := commonPrefix(prev, path)
		head = binary.AppendUvarint(head, uint64(shared))
		head = binary.AppendUvarint(head, uint64(len(path)-shared))
		head = append(head, path[shared:]...)
		head = binary.AppendUvarint(head, 1<<10) // attr.Xattrs
		head = append(head, 0, 0)                // type unknown, no flags
		head = binary.AppendUvarint(head, uint64(xattrs))
		prev = path
		for j := range xattrs {
			name := fmt.Sprintf("user.%04d", j)
			head = binary.AppendUvarint(head, uint64(len(name)))
			head = append(head, name...)
			head = binary.AppendUvarint(head, uint64(valueBytes))
			z.stored(head)
			head = head[:0]
			z.addCompressed(zero, zeros)
		}
	}
	z.stored([]byte("\x00END"))
	z.end()
	return &File{z}, nil
}

// ManyEntries is a baseline of n entries that record nothing but their
// path (issue 11 item 4: 3M entries in about 150 KB).
func ManyEntries(n int) (*File, error) {
	var body bytes.Buffer
	body.Write(binary.AppendUvarint(nil, uint64(n)))
	prev := ""
	var b []byte
	for i := range n {
		b = b[:0]
		if i%4096 == 0 {
			b = append(b, 0)
		}
		path := fmt.Sprintf("/d/%07d", i)
		shared := commonPrefix(prev, path)
		b = binary.AppendUvarint(b, uint64(shared))
		b = binary.AppendUvarint(b, uint64(len(path)-shared))
		b = append(b, path[shared:]...)
		b = append(b, 0, 0, 0) // no attributes, type unknown, no flags
		body.Write(b)
		prev = path
	}
	body.WriteString("\x00END")
	z := &stream{}
	var part bytes.Buffer
	fw, err := flate.NewWriter(&part, flate.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := fw.Write(body.Bytes()); err != nil {
		return nil, err
	}
	if err := fw.Flush(); err != nil {
		return nil, err
	}
	z.addCompressed(body.Bytes(), part.Bytes())
	z.end()
	return &File{z}, nil
}

// stream is a gzip member put together from deflate parts.
type stream struct {
	deflate bytes.Buffer
	crc     uint32
	size    uint32 // ISIZE: the body's size mod 2^32
}

// stored appends body as a stored block (RFC 1951, 3.2.4): not final,
// byte aligned, at most 65,535 bytes.
func (s *stream) stored(body []byte) {
	var h [5]byte
	binary.LittleEndian.PutUint16(h[1:], uint16(len(body)))
	binary.LittleEndian.PutUint16(h[3:], ^uint16(len(body)))
	s.addCompressed(body, append(h[:], body...))
}

// addCompressed appends part, the deflate part of body.
func (s *stream) addCompressed(body, part []byte) {
	s.deflate.Write(part)
	s.crc = crc32.Update(s.crc, crc32.IEEETable, body)
	s.size += uint32(len(body))
}

// end ends the deflate stream.
func (s *stream) end() {
	s.deflate.Write([]byte{0x03, 0x00}) // an empty final fixed-Huffman block
}

// finish writes the file: the header (format version 2, unsigned, a
// header record naming policyDigest), then the gzip member.
func (s *stream) finish(w io.Writer, policyDigest string) error {
	var payload bytes.Buffer
	payload.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255})
	payload.Write(s.deflate.Bytes())
	payload.Write(binary.LittleEndian.AppendUint32(nil, s.crc))
	payload.Write(binary.LittleEndian.AppendUint32(nil, s.size))

	// subject, created, serial; policy digest; policy, compared, no image
	rec := []byte{0, 0, 0}
	rec = binary.AppendUvarint(rec, uint64(len(policyDigest)))
	rec = append(rec, policyDigest...)
	rec = append(rec, 0, 0, 0)

	var h []byte
	h = append(h, "PODFIMBL"...)
	h = binary.BigEndian.AppendUint16(h, 2)
	h = binary.BigEndian.AppendUint16(h, 0)
	h = binary.BigEndian.AppendUint32(h, uint32(len(rec)))
	h = append(h, rec...)
	h = binary.BigEndian.AppendUint64(h, uint64(payload.Len()))
	sum := sha256.Sum256(payload.Bytes())
	h = append(h, sum[:]...)
	if _, err := w.Write(h); err != nil {
		return err
	}
	_, err := w.Write(payload.Bytes())
	return err
}

// deflatePart compresses body into a deflate part: a fresh stream ended by
// a sync flush.
func deflatePart(body []byte) ([]byte, error) {
	var out bytes.Buffer
	fw, err := flate.NewWriter(&out, flate.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := fw.Write(body); err != nil {
		return nil, err
	}
	if err := fw.Flush(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
