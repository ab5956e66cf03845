package baseline

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzRead checks that Read never panics, fails only with the package's
// sentinel errors, and that what it accepts writes back to a file that
// reads the same; for a file from Write it writes back the same bytes.
//
// The payload digest would stop almost every mutation at ErrDigest, so
// each input is also tried with its digest (and, for the test keys, its
// signature) recomputed: that lets the fuzzer reach the decompressor and
// the decoder.
func FuzzRead(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.pfb")
	v1, _ := filepath.Glob("testdata/v1/*.pfb")
	seeds = append(seeds, v1...)
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRead(t, data, true)
		if fixed := fixDigest(data); fixed != nil {
			checkRead(t, fixed, false)
		}
	})
}

func checkRead(t *testing.T, data []byte, identical bool) {
	b, err := Read(bytes.NewReader(data), ReadOptions{})
	// OpenFile's way (authenticate in one pass, decode in another) must
	// answer as Read does.
	fb, ferr := readAsFile(data)
	switch {
	case (err == nil) != (ferr == nil):
		t.Fatalf("Read says %v, the file reader %v", err, ferr)
	case err != nil:
		for _, kind := range []error{ErrFormat, ErrVersion, ErrDigest, ErrSignature} {
			if errors.Is(err, kind) != errors.Is(ferr, kind) {
				t.Fatalf("Read says %v, the file reader %v", err, ferr)
			}
		}
	default:
		assertSameEntries(t, fb.Entries, b.Entries)
	}
	if err != nil {
		if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrDigest) && !errors.Is(err, ErrSignature) {
			t.Fatalf("error of no known kind: %v", err)
		}
		return
	}
	// The same input as a stream must give the same answer.
	if _, err := Read(onlyReader{bytes.NewReader(data)}, ReadOptions{}); err != nil {
		t.Fatalf("reads from memory but not as a stream: %v", err)
	}
	key := testKeyFor(b.PublicKey)
	if b.Version != Version {
		// An old file is written back in the current version.
		identical = false
	}
	if b.Signed && key == nil {
		// Signed by a key the test does not have: it cannot re-sign, so
		// it checks an unsigned copy instead.
		identical = false
	}
	// The body as the encoder writes it in the file's own version, for
	// the canonical check below (Write sets b.Version to the current one).
	canonical := rawBody(t, b)
	var buf bytes.Buffer
	if err := Write(&buf, b, key); err != nil {
		t.Fatalf("Read accepted what Write rejects: %v", err)
	}
	again, err := Read(bytes.NewReader(buf.Bytes()), ReadOptions{})
	if err != nil {
		t.Fatalf("re-encoded baseline does not read: %v", err)
	}
	if !reflect.DeepEqual(again.Header, b.Header) {
		t.Fatalf("header %+v, re-read %+v", b.Header, again.Header)
	}
	assertSameEntries(t, again.Entries, b.Entries)
	if identical && !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("Write(Read(x)) != x")
	}
	// The body decoder accepts only canonical bodies, so even when the
	// gzip stream is someone else's, the body must re-encode exactly.
	_, payload, _ := splitFile(data)
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(canonical, body) {
		t.Fatalf("body is not canonical")
	}
}

// testKeyFor returns the test private key for pub, if it is one.
func testKeyFor(pub ed25519.PublicKey) ed25519.PrivateKey {
	for _, k := range []ed25519.PrivateKey{keyA(), keyB()} {
		if pub != nil && pubOf(k).Equal(pub) {
			return k
		}
	}
	return nil
}

// fixDigest returns data with the payload length and digest made to match
// what follows the header, re-signed when the embedded key is a test key,
// or nil if the header is not well formed.
func fixDigest(data []byte) []byte {
	h, payload, ok := splitFile(data)
	if !ok {
		return nil
	}
	h.payloadLen = uint64(len(payload))
	h.digest = sha256.Sum256(payload)
	if key := testKeyFor(h.publicKey); key != nil {
		h.flags &^= flagSigned
		sign(h, key)
	}
	out := h.marshal(nil)
	return append(out, payload...)
}

// FuzzDecodeBody fuzzes the body decoder directly, without gzip and the
// digest in the way: it must not panic, and what it accepts must be the
// canonical encoding of what it returns.
func FuzzDecodeBody(f *testing.F) {
	for _, b := range []*Baseline{sampleBaseline(), {}, syntheticBaseline(300, false), imageBaseline()} {
		f.Add(rawBody(f, b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		// Three image layers, as imageBaseline has.
		b, err := decodeBodyOf(bytes.NewReader(body), bodyFormat{version: Version, layers: 3}, 1<<20, MaxEntries)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if err := validate(b); err != nil {
			t.Fatalf("decoded a baseline Write rejects: %v", err)
		}
		if again := rawBody(t, b); !bytes.Equal(again, body) {
			t.Fatalf("re-encoded body differs:\n got %x\nwant %x", again, body)
		}
	})
}

// readAsFile reads data as OpenFile reads a file.
func readAsFile(data []byte) (*Baseline, error) {
	r, err := openFile(bytes.NewReader(data), ReadOptions{}, int64(len(data)))
	if err != nil {
		return nil, err
	}
	return r.readAll()
}

// FuzzHeaderRecord fuzzes the header record parser on its own: it must not
// panic, fail only with ErrFormat, and accept only the canonical encoding
// of a valid Header (so a record that parses re-encodes to itself).
func FuzzHeaderRecord(f *testing.F) {
	for _, h := range []*Header{{}, &imageBaseline().Header, &sampleBaseline().Header} {
		f.Add(appendRecord(nil, h))
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		h, err := parseRecord(rec)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("parsed a header Validate rejects: %v", err)
		}
		if again := appendRecord(nil, h); !bytes.Equal(again, rec) {
			t.Fatalf("re-encoded record differs:\n got %x\nwant %x", again, rec)
		}
	})
}
