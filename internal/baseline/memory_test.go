package baseline

// Reading and writing baselines in memory: what the tests need, and
// nothing that runs in podfim, which reads and writes files only
// (OpenFile, ReadFile, CreateFile, WriteFile). Read and Open make the
// checks OpenFile makes, on a payload held in memory; Write gives the
// bytes WriteFile and a Writer give.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
)

// Read reads a whole baseline from r: Open, then every entry from Next.
// It checks, in this order, the magic, the version, the sizes against the
// limits, the payload digest and the signature, and only then decompresses
// and decodes the payload, so that nothing unauthenticated reaches the
// decompressor or the decoder when a key is required. Nothing may follow
// the payload. When r has a Len method (bytes.Reader, bytes.Buffer,
// strings.Reader) it must return the number of unread bytes: Read uses it
// to check the size before reading.
//
// The result holds the entries only: not the payload they were decoded
// from. A caller that looks at each entry once should use Open, which
// never holds them all.
//
// Errors wrap ErrFormat, ErrVersion, ErrDigest or ErrSignature, except for
// invalid options and errors of r itself.
func Read(r io.Reader, opts ReadOptions) (*Baseline, error) {
	rd, err := Open(r, opts)
	if err != nil {
		return nil, err
	}
	return rd.readAll()
}

// open is Open with the size of the input when it is known (size >= 0),
// which lets a truncated or padded file fail before the payload is read and
// lets the payload buffer be allocated once.
func open(r io.Reader, opts ReadOptions, size int64) (*Reader, error) {
	maxSize, maxEntries, err := opts.limits()
	if err != nil {
		return nil, err
	}
	h, err := readSizedHeader(r, size, maxSize)
	if err != nil {
		return nil, err
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
	// Authenticated: from here on the payload may be decompressed.
	return newReader(h, &memSource{payload: payload}, opts.Binding, maxSize, maxEntries)
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
	if err := checkEnd(r); err != nil {
		return nil, err
	}
	return payload, nil
}

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

// encode returns the header and the payload for b.
func encode(b *Baseline, key ed25519.PrivateKey) (*header, []byte, error) {
	if err := checkKey(key); err != nil {
		return nil, nil, err
	}
	if err := validate(b); err != nil {
		return nil, nil, fmt.Errorf("failed to encode baseline: %w", err)
	}
	var out bytes.Buffer
	pw, err := newPayloadWriter(&out)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to encode baseline: %w", err)
	}
	if err := pw.body(b); err != nil {
		return nil, nil, fmt.Errorf("failed to encode baseline: %w", err)
	}
	h, err := pw.close(key, appendRecord(nil, &b.Header))
	if err != nil {
		return nil, nil, fmt.Errorf("failed to encode baseline: %w", err)
	}
	return h, out.Bytes(), nil
}

// body encodes every entry of b.
func (p *payloadWriter) body(b *Baseline) error {
	if err := p.begin(len(b.Entries)); err != nil {
		return err
	}
	for i := range b.Entries {
		if err := p.enc.add(&b.Entries[i]); err != nil {
			return err
		}
	}
	return nil
}

// encodeBody writes the uncompressed body for b with a bodyEncoder, in
// the format version b.Version (0: the current one).
func encodeBody(w io.Writer, hashes func([]byte) error, b *Baseline) error {
	v := b.Version
	if v == 0 {
		v = Version
	}
	e, err := newBodyEncoder(w, hashes, v, b.PolicyDigest, len(b.Entries))
	if err != nil {
		return err
	}
	for i := range b.Entries {
		if err := e.add(&b.Entries[i]); err != nil {
			return err
		}
	}
	return e.close()
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

// memSource is a payload in memory, authenticated by Open.
type memSource struct {
	payload []byte
	r       *bytes.Reader
}

func (s *memSource) open() io.Reader {
	s.r = bytes.NewReader(s.payload)
	return s.r
}

func (s *memSource) finish() (int64, error) { return int64(s.r.Len()), nil }
