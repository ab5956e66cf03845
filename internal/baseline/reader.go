package baseline

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/podfim/podfim/internal/attr"
)

// Reader reads a baseline entry by entry, holding one group of entries'
// hashes at a time instead of every entry: with it, a comparison needs
// memory for the stored (compressed) file, not for the decoded baseline.
//
// Open has authenticated the whole file before it returns a Reader, so
// every entry Next returns comes from a file with a good digest and, when
// one was required or present, a good signature. What Next may still find
// is a file that is authentic but malformed (a buggy or hostile writer that
// holds the key, or an unsigned file whose digest was recomputed): the
// entries before the bad one were then returned already. A caller must not
// act on a comparison until Next has returned io.EOF.
type Reader struct {
	Version      int               // format version of the file
	PolicyDigest string            // hex sha256 of the policy used (opaque to this package)
	Count        int               // the number of entries the file announces
	Digest       [32]byte          // sha256 of the compressed payload
	Signed       bool              // the file carries a valid signature
	KeyID        string            // KeyID of PublicKey, when signed
	PublicKey    ed25519.PublicKey // the key that signed the file, when signed

	name       string // the file, for error messages (OpenFile)
	payloadLen uint64
	src        *bytes.Reader // the rest of the payload; nil once Next has ended
	body       *bodyStream
	decoded    int   // entries Next returned
	err        error // what Next ended with: io.EOF or the error
}

// Open reads the header and the payload of a baseline from r and checks
// them exactly as Read does (magic, version, sizes against the limits,
// digest, signature, nothing after the payload), then reads the start of the
// body: the policy digest and the entry count. The entries are left to Next.
//
// The Reader holds the payload (the compressed file), not r: r is not used
// after Open returns.
func Open(r io.Reader, opts ReadOptions) (*Reader, error) {
	size := int64(-1)
	if l, ok := r.(interface{ Len() int }); ok {
		// bytes.Reader, bytes.Buffer, strings.Reader: the input is in
		// memory and its size known.
		size = int64(l.Len())
	}
	return open(r, opts, size)
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
	if err == io.EOF && r.src.Len() != 0 {
		err = formatErrorf("baseline payload has %d bytes after the gzip stream", r.src.Len())
	}
	if err != io.EOF && r.name != "" {
		err = fmt.Errorf("failed to read baseline %q: %w", r.name, err)
	}
	r.err = err
	// Done: let the payload, the decompressor and the buffers go.
	r.src, r.body = nil, nil
	return nil, err
}

// Decoded returns how many entries Next has returned. Once Next has
// returned io.EOF, it is Count.
func (r *Reader) Decoded() int { return r.decoded }

// DigestHex returns Digest in hex, the form reports and logs use.
func (r *Reader) DigestHex() string { return hex.EncodeToString(r.Digest[:]) }

// hashSlab is the size of the blocks readAll copies hashes into.
const hashSlab = 64 << 10

// readAll reads the rest of the entries into a Baseline.
func (r *Reader) readAll() (*Baseline, error) {
	b := &Baseline{Version: r.Version, PolicyDigest: r.PolicyDigest, Digest: r.Digest,
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
