package baseline

import (
	"bufio"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/podfim/podfim/internal/attr"
)

// Reader reads a baseline entry by entry, holding one group of entries'
// hashes at a time instead of every entry: with it, a comparison needs
// memory for the stored (compressed) file (Open), or for neither (OpenFile),
// not for the decoded baseline.
//
// Open and OpenFile have authenticated the whole file before they return a
// Reader, so every entry Next returns comes from a file with a good digest
// and, when one was required or present, a good signature; OpenFile's
// Reader reads the file again and checks its digest again at the end. What
// Next may still find is a file that is authentic but malformed (a buggy or
// hostile writer that holds the key, or an unsigned file whose digest was
// recomputed), or for OpenFile a file changed since it was authenticated
// (ErrDigest): the entries before the bad one were then returned already.
// A caller must not act on a comparison until Next has returned io.EOF.
type Reader struct {
	Header                      // subject, time, serial, policy, image
	Version   int               // format version of the file
	Count     int               // the number of entries the file announces
	Digest    [32]byte          // sha256 of the compressed payload
	Signed    bool              // the file carries a valid signature
	KeyID     string            // KeyID of PublicKey, when signed
	PublicKey ed25519.PublicKey // the key that signed the file, when signed

	name       string // the file, for error messages (OpenFile)
	payloadLen uint64
	src        payloadSource // the payload; nil once Next has ended (for OpenFile: once Close was called)
	body       *bodyStream   // nil once Next has ended
	closer     io.Closer     // the file of a Reader from OpenFile
	format     bodyFormat
	maxBody    int64
	maxEntries uint64
	decoded    int   // entries Next returned
	err        error // what Next ended with: io.EOF or the error
}

// newReader returns a Reader over the authenticated payload in src, with
// the header h, authenticated too, and reads the start of its body.
func newReader(h *header, src payloadSource, bind Binding, maxBody int64, maxEntries uint64) (*Reader, error) {
	rd := &Reader{payloadLen: h.payloadLen, src: src, maxBody: maxBody, maxEntries: maxEntries}
	rd.Version, rd.Digest, rd.Signed, rd.KeyID, rd.PublicKey = stored(h)
	if h.version >= 2 {
		meta, err := parseRecord(h.record)
		if err != nil {
			return nil, err
		}
		rd.Header = *meta
	}
	if err := bind.Check(&rd.Header); err != nil {
		return nil, err
	}
	rd.format = bodyFormat{version: h.version, layers: rd.layers()}
	if err := rd.start(); err != nil {
		return nil, err
	}
	return rd, nil
}

// start starts decoding the payload from its first byte.
func (r *Reader) start() error {
	zr, err := gzip.NewReader(r.src.open())
	if err != nil {
		return r.fail(formatErrorf("baseline payload is not gzip: %w", err))
	}
	// One member only: anything after it is trailing garbage.
	zr.Multistream(false)
	body, policy, err := newBodyStream(zr, r.format, r.maxBody, r.maxEntries)
	if err != nil {
		return r.fail(err)
	}
	if r.format.version == 1 {
		r.PolicyDigest = policy
	}
	r.body, r.Count, r.decoded, r.err = body, int(body.count), 0, nil
	return nil
}

// fail returns the error to report for a decoding error: ErrDigest instead
// when the payload read is not the one that was authenticated (a file
// changed since Open).
func (r *Reader) fail(err error) error {
	if fs, ok := r.src.(*fileSource); ok {
		if _, ferr := fs.finish(); errors.Is(ferr, ErrDigest) {
			return ferr
		}
	}
	return err
}

// Next returns the next entry, in path order (strictly increasing by
// attr.ComparePaths). After the last entry it returns io.EOF, once it has
// checked that the body ends as it must: the announced number of entries,
// the end marker, the gzip checksum and nothing after the gzip member. Any
// other error is the reason the file is invalid (wrapping ErrFormat), and
// Next returns it again on every later call.
//
// Every entry passes the checks Read makes: order, limits and canonical
// encoding.
//
// The entry and its Hash are overwritten by the next call: a caller that
// keeps an entry keeps a copy (attr.Entry.Clone). Its strings and Xattrs
// are its own, never overwritten. Once Next has returned an error or
// io.EOF, the Reader no longer holds the payload.
func (r *Reader) Next() (*attr.Entry, error) {
	if r.err != nil {
		return nil, r.err
	}
	e, err := r.body.next()
	if err == nil {
		r.decoded++
		return e, nil
	}
	if err == io.EOF {
		// The end of the gzip member must be the end of the payload,
		// and a file must still be what was authenticated.
		switch n, ferr := r.src.finish(); {
		case ferr != nil:
			err = ferr
		case n != 0:
			err = formatErrorf("baseline payload has %d bytes after the gzip stream", n)
		}
	} else {
		err = r.fail(err)
	}
	if err != io.EOF && r.name != "" {
		err = fmt.Errorf("failed to read baseline %q: %w", r.name, err)
	}
	r.err = err
	// Done: let the payload (or the file's buffer), the decompressor and
	// the buffers go.
	r.body = nil
	if fs, ok := r.src.(*fileSource); ok {
		fs.release()
	} else {
		r.src = nil
	}
	return nil, err
}

// Rewind starts reading the entries again from the first, for a caller
// that needs two passes (a quick check builds its index in the first).
// Only a Reader from OpenFile can rewind: it reads the file again, and
// checks its digest again at the end.
func (r *Reader) Rewind() error {
	if _, ok := r.src.(*fileSource); !ok {
		return errors.New("baseline: Rewind needs a Reader from OpenFile that is not closed")
	}
	if err := r.start(); err != nil {
		if r.name != "" {
			err = fmt.Errorf("failed to read baseline %q: %w", r.name, err)
		}
		r.err, r.body = err, nil
		return err
	}
	return nil
}

// Close releases the file of a Reader from OpenFile; for other Readers it
// does nothing. Next fails after Close.
func (r *Reader) Close() error {
	r.src, r.body = nil, nil
	if r.err == nil || r.err == io.EOF {
		r.err = errors.New("baseline: Reader is closed")
	}
	if c := r.closer; c != nil {
		r.closer = nil
		return c.Close()
	}
	return nil
}

// Decoded returns how many entries Next has returned. Once Next has
// returned io.EOF, it is Count.
func (r *Reader) Decoded() int { return r.decoded }

// hashSlab is the size of the blocks readAll copies hashes into.
const hashSlab = 64 << 10

// readAll reads the rest of the entries into a Baseline.
func (r *Reader) readAll() (*Baseline, error) {
	b := &Baseline{Header: r.Header, Version: r.Version, Digest: r.Digest,
		Signed: r.Signed, KeyID: r.KeyID, PublicKey: r.PublicKey}
	// The count is not trusted for the allocation: a stored entry takes
	// more than 32 compressed bytes when it has a hash, so a larger count
	// than the payload can hold only grows the slice as entries arrive.
	b.Entries = make([]attr.Entry, 0, min(uint64(r.Count), r.payloadLen/32+64))
	// The hashes are copied out of the Reader's buffer into slabs: one
	// allocation per 2,000 or so hashes rather than one per hash.
	var slab []byte
	for {
		e, err := r.Next()
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		b.Entries = append(b.Entries, *e)
		if n := len(e.Hash); n > 0 {
			if cap(slab)-len(slab) < n {
				slab = make([]byte, 0, hashSlab)
			}
			slab = append(slab, e.Hash...)
			b.Entries[len(b.Entries)-1].Hash = slab[len(slab)-n : len(slab) : len(slab)]
		}
	}
}

// payloadFile is what OpenFile needs of a file: it reads the header and the
// payload in order once, then reads the payload again at its offset.
type payloadFile interface {
	io.Reader
	io.ReaderAt
}

// payloadSource is where a Reader gets the payload from.
type payloadSource interface {
	// open returns a reader of the payload from its first byte. It is an
	// io.ByteReader, so that gzip reads no further than its member.
	open() io.Reader
	// finish returns the number of payload bytes after what open's reader
	// has consumed, and, for a file, checks the digest of the payload.
	finish() (int64, error)
}

// fileSource reads the payload from the file OpenFile authenticated,
// without holding it: what is read is digested on the way, and finish
// compares that digest with the one checked at open. Between the two, the
// bytes of a file replaced in place reach the decompressor and the
// decoder, which are built for hostile input (FuzzRead); no result
// survives it, since the last Next fails with ErrDigest instead of io.EOF.
type fileSource struct {
	f    io.ReaderAt
	off  int64 // the payload's offset in f
	n    int64 // its length
	want [sha256.Size]byte
	sum  hash.Hash
	sec  *io.SectionReader
	br   *bufio.Reader
	done bool // finish has run for this pass
}

func (s *fileSource) open() io.Reader {
	if s.sum == nil {
		s.sum = sha256.New()
	}
	s.sum.Reset()
	s.sec = io.NewSectionReader(s.f, s.off, s.n)
	s.br = bufio.NewReaderSize(io.TeeReader(s.sec, s.sum), 32<<10)
	s.done = false
	return s.br
}

// finish digests the rest of the payload and compares the digest.
func (s *fileSource) finish() (int64, error) {
	if s.done || s.br == nil {
		return 0, nil
	}
	s.done = true
	rest := int64(s.br.Buffered())
	m, err := io.Copy(s.sum, s.sec)
	rest += m
	if err != nil {
		return rest, fmt.Errorf("failed to read baseline payload: %w", err)
	}
	var got [sha256.Size]byte
	s.sum.Sum(got[:0])
	if got != s.want {
		return rest, errorf(ErrDigest, "baseline changed while it was read: the payload no longer matches its digest")
	}
	return rest, nil
}

// release lets the pass's buffer go; open starts a new pass.
func (s *fileSource) release() { s.br, s.sec = nil, nil }
