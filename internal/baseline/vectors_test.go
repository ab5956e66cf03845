package baseline

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
)

var update = flag.Bool("update", false, "rewrite the test vectors in testdata/")

// A vector is one file in testdata/ whose name says the expected outcome:
// ok-* reads, err-format-* fails with ErrFormat, err-digest-* with
// ErrDigest, err-version-* with ErrVersion, err-signature-* with
// ErrSignature.
type vector struct {
	name   string
	make   func(t *testing.T) []byte
	verify bool      // read with VerifyKey = key A
	want   *Baseline // for ok-* vectors: the content
}

func vectors() []vector {
	sample := func(t *testing.T) []byte { return encodeFile(t, sampleBaseline(), nil) }
	signedA := func(t *testing.T) []byte { return encodeFile(t, sampleBaseline(), keyA()) }
	hashes := &Baseline{Header: Header{PolicyDigest: strings.Repeat("0", 64)}, Entries: []attr.Entry{
		{Path: "/blake3", Attrs: attr.Type | attr.BLAKE3, Type: attr.TypeRegular, Hash: bytes.Repeat([]byte{3}, 32)},
		{Path: "/sha256", Attrs: attr.Type | attr.SHA256, Type: attr.TypeRegular, Hash: bytes.Repeat([]byte{2}, 32)},
		{Path: "/sha512", Attrs: attr.Type | attr.SHA512, Type: attr.TypeRegular, Hash: bytes.Repeat([]byte{5}, 64)},
	}}
	// Two groups: the first with 16 hashes, in stored blocks, the second
	// with its one hash compressed (see compress). The other entries have
	// none, which keeps the file small.
	groups := &Baseline{Header: Header{PolicyDigest: strings.Repeat("1", 64)}}
	for i := range groupSize + 1 {
		e := attr.Entry{Path: fmt.Sprintf("/f%04d", i), Attrs: attr.Type | attr.Size, Type: attr.TypeRegular, Size: int64(i)}
		if i < 16 || i == groupSize {
			sum := sha256.Sum256(binary.BigEndian.AppendUint32(nil, uint32(i)))
			e.Attrs, e.Hash = e.Attrs|attr.SHA256, sum[:]
		}
		groups.Entries = append(groups.Entries, e)
	}
	// body builds a file around a sample body changed by f.
	body := func(f func(b *Baseline)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			b := sampleBaseline()
			f(b)
			return assemble(gz(t, rawBody(t, b)), Version, 0, nil)
		}
	}
	// rawFile builds a file around a body given byte by byte.
	rawFile := func(parts ...[]byte) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return assemble(gz(t, slices.Concat(parts...)), Version, 0, nil) }
	}
	// patch changes a copy of the sample file.
	patch := func(f func(data []byte) []byte) func(t *testing.T) []byte {
		return func(t *testing.T) []byte { return f(bytes.Clone(sample(t))) }
	}
	// patchBody changes the sample body and wraps it again.
	patchBody := func(f func(body []byte) []byte) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			return assemble(gz(t, f(rawBody(t, sampleBaseline()))), Version, 0, nil)
		}
	}
	countAt := 0 // the body starts with the entry count
	// One entry, no hash bytes in its group, the path "/a".
	oneEntry := []byte{0x01, 0x00, 0x00, 0x02, '/', 'a'}
	image := imageBaseline()
	imageFile := func(t *testing.T) []byte { return encodeFile(t, imageBaseline(), nil) }
	// withRecord builds a file around the image baseline's body under
	// another header record.
	withRecord := func(f func(rec []byte) []byte) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			b := imageBaseline()
			return assembleWith(gz(t, rawBody(t, b)), Version, 0, nil, f(appendRecord(nil, &b.Header)))
		}
	}
	// imageBody builds a file around the image baseline changed by f.
	imageBody := func(f func(b *Baseline)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			b := imageBaseline()
			f(b)
			return assembleWith(gz(t, rawBody(t, b)), Version, 0, nil, appendRecord(nil, &b.Header))
		}
	}
	return []vector{
		{name: "ok-unsigned", make: sample, want: sampleBaseline()},
		{name: "ok-image", make: imageFile, want: image},
		{name: "ok-image-signed", verify: true, make: func(t *testing.T) []byte { return encodeFile(t, imageBaseline(), keyA()) }, want: image},
		{name: "err-format-header-trailing", make: withRecord(func(r []byte) []byte { return append(r, 0) })},
		{name: "err-format-header-truncated", make: withRecord(func(r []byte) []byte { return r[:len(r)-1] })},
		{name: "err-format-header-bad-digest", make: imageBody(func(b *Baseline) { b.Image.Config = "sha256:" + strings.Repeat("G", 64) })},
		{name: "err-format-header-no-manifest", make: imageBody(func(b *Baseline) { b.Image.Manifest = "" })},
		{name: "err-format-header-bad-platform", make: imageBody(func(b *Baseline) { b.Image.Platform = "linux/AMD64\n" })},
		{name: "err-format-header-subject-escape", make: imageBody(func(b *Baseline) { b.Subject = "web\x1b[2J" })},
		{name: "err-format-header-image-flag", make: withRecord(func([]byte) []byte {
			// The record of a header without an image, its image flag 2.
			b := imageBaseline()
			b.Image = nil
			r := appendRecord(nil, &b.Header)
			r[len(r)-1] = 2
			return r
		})},
		{name: "err-format-header-huge", make: func(t *testing.T) []byte {
			d := imageFile(t)
			h, _, _ := splitFile(d)
			at := h.fixedSize() - trailerSize
			binary.BigEndian.PutUint32(d[at:], maxRecordLen+1)
			return d
		}},
		{name: "err-format-layer-out-of-range", make: imageBody(func(b *Baseline) { b.Entries[1].Layer = 4 })},
		{name: "err-format-layer-without-image", make: imageBody(func(b *Baseline) { b.Image = nil })},
		{name: "err-format-layer-in-version-1", make: func(t *testing.T) []byte {
			b := imageBaseline()
			b.Version = 1
			return assemble(gz(t, rawBody(t, b)), 1, 0, nil)
		}},
		{name: "err-format-layer-zero", make: func(t *testing.T) []byte {
			b := imageBaseline()
			body := rawBody(t, b)
			// The last entry ends with its layer (1): store 0 instead,
			// which the flag says is not stored.
			i := len(body) - len(endMarker) - 1
			if body[i] != 1 {
				t.Fatalf("the last entry does not end with layer 1: %x", body[i-4:])
			}
			body[i] = 0
			return assembleWith(gz(t, body), Version, 0, nil, appendRecord(nil, &b.Header))
		}},
		{name: "err-signature-subject-swapped", verify: true, make: func(t *testing.T) []byte {
			// A signed baseline of one subject relabelled as another:
			// the digest still matches, the signature must not.
			b := imageBaseline()
			d := encodeFile(t, b, keyA())
			h, payload, _ := splitFile(d)
			b.Subject = "web/other"
			h.record = appendRecord(nil, &b.Header)
			return append(h.marshal(nil), payload...)
		}},
		{name: "err-signature-serial-rolled-back", verify: true, make: func(t *testing.T) []byte {
			b := imageBaseline()
			d := encodeFile(t, b, keyA())
			h, payload, _ := splitFile(d)
			b.Serial--
			h.record = appendRecord(nil, &b.Header)
			return append(h.marshal(nil), payload...)
		}},
		{name: "ok-signed", make: signedA, verify: true, want: sampleBaseline()},
		{name: "ok-empty", make: func(t *testing.T) []byte { return encodeFile(t, &Baseline{}, nil) }, want: &Baseline{}},
		{name: "ok-hashes", make: func(t *testing.T) []byte { return encodeFile(t, hashes, nil) }, want: hashes},
		{name: "ok-groups", make: func(t *testing.T) []byte { return encodeFile(t, groups, nil) }, want: groups},

		{name: "err-format-empty", make: func(*testing.T) []byte { return nil }},
		{name: "err-format-not-baseline", make: func(*testing.T) []byte { return []byte("/etc/passwd 0644 root root\n") }},
		{name: "err-format-magic", make: patch(func(d []byte) []byte { d[7] = 'X'; return d })},
		{name: "err-format-truncated-magic", make: patch(func(d []byte) []byte { return d[:5] })},
		{name: "err-format-truncated-header", make: patch(func(d []byte) []byte { return d[:30] })},
		{name: "err-format-truncated-payload", make: patch(func(d []byte) []byte { return d[:len(d)-1] })},
		{name: "err-format-trailing-garbage", make: patch(func(d []byte) []byte { return append(d, '\n') })},
		{name: "err-format-version-zero", make: patch(func(d []byte) []byte { d[8], d[9] = 0, 0; return d })},
		{name: "err-format-unknown-flags", make: patch(func(d []byte) []byte { d[11] |= 0x80; return d })},
		{name: "err-format-huge-payload-length", make: patch(func(d []byte) []byte {
			binary.BigEndian.PutUint64(d[headerLen(d)-trailerSize:], 1<<60)
			return d
		})},
		{name: "err-format-not-gzip", make: func(t *testing.T) []byte { return assemble(rawBody(t, sampleBaseline()), Version, 0, nil) }},
		{name: "err-format-gzip-checksum", make: func(t *testing.T) []byte {
			p := gz(t, rawBody(t, sampleBaseline()))
			p[len(p)-5] ^= 1 // the CRC-32 in the gzip trailer
			return assemble(p, Version, 0, nil)
		}},
		{name: "err-format-gzip-truncated", make: func(t *testing.T) []byte {
			p := gz(t, rawBody(t, sampleBaseline()))
			return assemble(p[:len(p)-9], Version, 0, nil)
		}},
		{name: "err-format-gzip-trailing", make: func(t *testing.T) []byte {
			p := gz(t, rawBody(t, sampleBaseline()))
			return assemble(append(p, gz(t, nil)...), Version, 0, nil)
		}},
		{name: "err-format-body-trailing", make: patchBody(func(b []byte) []byte { return append(b, 0) })},
		{name: "err-format-body-truncated", make: patchBody(func(b []byte) []byte { return b[:len(b)/2] })},
		{name: "err-format-no-end-marker", make: patchBody(func(b []byte) []byte { return b[:len(b)-len(endMarker)] })},
		{name: "err-format-count-too-small", make: patchBody(func(b []byte) []byte { b[countAt]--; return b })},
		{name: "err-format-count-too-large", make: patchBody(func(b []byte) []byte { b[countAt]++; return b })},
		{name: "err-format-count-huge", make: patchBody(func(b []byte) []byte {
			return slices.Concat(b[:countAt], binary.AppendUvarint(nil, 1<<60), b[countAt+1:])
		})},
		{name: "err-format-noncanonical-varint", make: patchBody(func(b []byte) []byte {
			return slices.Concat(b[:countAt], []byte{b[countAt] | 0x80, 0}, b[countAt+1:])
		})},
		{name: "err-format-unsorted", make: body(func(b *Baseline) { b.Entries[3], b.Entries[4] = b.Entries[4], b.Entries[3] })},
		{name: "err-format-duplicate", make: body(func(b *Baseline) { b.Entries[4].Path = b.Entries[3].Path })},
		{name: "err-format-relative-path", make: body(func(b *Baseline) { b.Entries[0].Path = "etc" })},
		{name: "err-format-dotdot-path", make: body(func(b *Baseline) { b.Entries[17].Path = "/var/log/zz/.." })},
		{name: "err-format-nul-in-path", make: body(func(b *Baseline) { b.Entries[17].Path = "/var/log/x\x00y" })},
		{name: "err-format-unknown-attr", make: body(func(b *Baseline) { b.Entries[2].Attrs |= 1 << 20 })},
		{name: "err-format-two-hashes", make: body(func(b *Baseline) { b.Entries[6].Attrs |= attr.BLAKE3 })},
		{name: "err-format-unknown-type", make: body(func(b *Baseline) { b.Entries[2].Type = 9 })},
		{name: "err-format-bad-mode", make: body(func(b *Baseline) { b.Entries[2].Mode = 0o17777 })},
		{name: "err-format-bad-hash-length", make: body(func(b *Baseline) { b.Entries[6].Hash = b.Entries[6].Hash[:31] })},
		{name: "err-format-hash-on-dir", make: body(func(b *Baseline) {
			b.Entries[0].Attrs |= attr.SHA256
			b.Entries[0].Hash = make([]byte, 32)
		})},
		{name: "err-format-duplicate-xattr", make: body(func(b *Baseline) {
			b.Entries[6].Xattrs = []attr.Xattr{{Name: "user.a"}, {Name: "user.a"}}
		})},
		{name: "err-format-unsorted-xattrs", make: rawFile(oneEntry, []byte{0x80, 0x08, 0x01, 0x00, 0x02, 0x01, 'b', 0x00, 0x01, 'a', 0x00}, []byte(endMarker))},
		{name: "err-format-xattr-too-large", make: rawFile(oneEntry, []byte{0x80, 0x08, 0x01, 0x00, 0x01, 0x01, 'a', 0x81, 0x80, 0x04}, make([]byte, 65537), []byte(endMarker))},
		// mtime 5 and ctime 5 with ctime coded against the previous
		// ctime (0) rather than mtime: right value, wrong encoding.
		{name: "err-format-ctime-base", make: rawFile(oneEntry, []byte{0x80, 0x06, 0x01, 0x00, 0x0a, 0x0a}, []byte(endMarker))},
		{name: "err-format-entry-flags", make: rawFile(oneEntry, []byte{0x00, 0x01, 0x80}, []byte(endMarker))},
		// A hash byte in the group of an entry that has no hash.
		{name: "err-format-stray-hash-bytes", make: rawFile([]byte{0x01, 0x01, 0xaa, 0x00, 0x02, '/', 'a', 0x00, 0x00, 0x00}, []byte(endMarker))},
		// A sha256 entry in the second group with its hash in the first.
		{name: "err-format-hash-in-other-group", make: func(t *testing.T) []byte {
			var buf bytes.Buffer
			// Zero hashes keep the file small: only their lengths count.
			shift := func(p []byte) error {
				if n, _ := binary.Uvarint(p); n == 32 { // the second group: no hash
					p = []byte{0}
				} else { // the first group: 32 bytes more
					p = binary.AppendUvarint(nil, n+32)
					p = append(p, make([]byte, n+32)...)
				}
				_, err := buf.Write(p)
				return err
			}
			if err := encodeBody(&buf, shift, groups); err != nil {
				t.Fatal(err)
			}
			return assemble(gz(t, buf.Bytes()), Version, 0, nil)
		}},

		{name: "err-digest-flipped-bit", make: patch(func(d []byte) []byte { d[len(d)-100] ^= 0x10; return d })},
		{name: "err-digest-header", make: patch(func(d []byte) []byte { d[headerLen(d)-1] ^= 1; return d })},

		{name: "err-version-newer", make: patch(func(d []byte) []byte { d[9] = Version + 1; return d })},
		{name: "err-version-max", make: patch(func(d []byte) []byte { d[8], d[9] = 0xff, 0xff; return d })},

		{name: "err-signature-forged", verify: true, make: func(t *testing.T) []byte {
			// The payload of another baseline with its digest, under the
			// original signature.
			d := signedA(t)
			other := sampleBaseline()
			other.Entries[6].Mode = 0o777
			h, payload, _ := splitFile(encodeFile(t, other, nil))
			return slices.Concat(d[:headerLen(d)-trailerSize], binary.BigEndian.AppendUint64(nil, h.payloadLen), h.digest[:], payload)
		}},
		{name: "err-signature-wrong-key", verify: true, make: func(t *testing.T) []byte { return encodeFile(t, sampleBaseline(), keyB()) }},
		{name: "err-signature-required", verify: true, make: sample},
		{name: "err-signature-bad-unverified", make: func(t *testing.T) []byte {
			d := signedA(t)
			d[preambleSize+ed25519.PublicKeySize] ^= 1
			return d
		}},
		{name: "err-signature-key-swapped", make: func(t *testing.T) []byte {
			d := signedA(t)
			copy(d[preambleSize:], pubOf(keyB()))
			return d
		}},
	}
}

func wantKind(name string) error {
	for prefix, kind := range map[string]error{
		"err-format-": ErrFormat, "err-digest-": ErrDigest, "err-version-": ErrVersion, "err-signature-": ErrSignature,
	} {
		if strings.HasPrefix(name, prefix) {
			return kind
		}
	}
	return nil
}

func TestVectors(t *testing.T) {
	vs := vectors()
	if *update {
		old, _ := filepath.Glob("testdata/*.pfb")
		for _, f := range old {
			os.Remove(f)
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if err := os.WriteFile(filepath.Join("testdata", v.name+".pfb"), v.make(t), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, err := filepath.Glob("testdata/*.pfb")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(vs) {
		t.Errorf("testdata has %d vectors, the table %d: run go test -run TestVectors -update", len(files), len(vs))
	}
	checkVectors(t, files, vs, Version)
}

// TestVersion1Vectors reads the vectors that podfim wrote in format
// version 1, kept as they were: old baselines must keep reading, with the
// same outcome and content. (-update never rewrites them.)
func TestVersion1Vectors(t *testing.T) {
	files, err := filepath.Glob("testdata/v1/*.pfb")
	if err != nil || len(files) < 40 {
		t.Fatalf("testdata/v1 holds %d vectors (%v), want the 40 or more of version 1", len(files), err)
	}
	checkVectors(t, files, vectors(), 1)
}

// checkVectors reads each file and checks the outcome its name announces
// and, for ok-* files, the content the table vs gives for that name.
func checkVectors(t *testing.T, files []string, vs []vector, version int) {
	byName := map[string]vector{}
	for _, v := range vs {
		byName[v.name+".pfb"] = v
	}
	for _, f := range files {
		v, ok := byName[filepath.Base(f)]
		if !ok {
			t.Errorf("%s is not in the vector table", f)
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			opts := ReadOptions{}
			if v.verify {
				opts.VerifyKey = pubOf(keyA())
			}
			b, err := ReadFile(f, opts)
			if kind := wantKind(v.name); kind != nil {
				checkKind(t, err, kind)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Version != version {
				t.Errorf("version %d, want %d", b.Version, version)
			}
			assertSameEntries(t, b.Entries, v.want.Entries)
			if !reflect.DeepEqual(b.Header, v.want.Header) {
				t.Errorf("header %+v, want %+v", b.Header, v.want.Header)
			}
			data, _ := os.ReadFile(f)
			if b.Digest != sha256.Sum256(payloadOf(data)) {
				t.Error("digest is not the payload's sha256")
			}
		})
	}
}

// checkKind checks that err is of kind and of no other.
func checkKind(t *testing.T, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want %v", err, kind)
	}
	for _, other := range []error{ErrFormat, ErrDigest, ErrVersion, ErrSignature} {
		if other != kind && errors.Is(err, other) {
			t.Errorf("err = %v is also %v", err, other)
		}
	}
	t.Log(err)
}

// TestTruncations cuts valid files at every length, at the file, payload
// (digest fixed) and body (re-compressed) levels: each must fail with
// ErrFormat, never pass and never panic.
func TestTruncations(t *testing.T) {
	for _, key := range []ed25519.PrivateKey{nil, keyA()} {
		var flags uint16
		opts := ReadOptions{}
		if key != nil {
			flags, opts.VerifyKey = flagSigned, pubOf(key)
		}
		data := encodeFile(t, sampleBaseline(), key)
		for _, n := range sampleOf(t, len(data), 256, 8) {
			// With and without a known input size.
			if _, err := Read(bytes.NewReader(data[:n]), opts); !errors.Is(err, ErrFormat) {
				t.Fatalf("file cut to %d of %d bytes: err = %v", n, len(data), err)
			}
			if _, err := Read(onlyReader{bytes.NewReader(data[:n])}, opts); !errors.Is(err, ErrFormat) {
				t.Fatalf("stream cut to %d of %d bytes: err = %v", n, len(data), err)
			}
		}
		_, payload, _ := splitFile(data)
		for _, n := range sampleOf(t, len(payload), 64, 8) {
			if _, err := Read(bytes.NewReader(assemble(payload[:n], Version, flags, key)), opts); !errors.Is(err, ErrFormat) {
				t.Fatalf("payload cut to %d of %d bytes: err = %v", n, len(payload), err)
			}
		}
	}
	body := rawBody(t, sampleBaseline())
	for _, n := range sampleOf(t, len(body), 64, 8) {
		if _, err := Read(bytes.NewReader(assemble(gz(t, body[:n]), Version, 0, nil)), ReadOptions{}); !errors.Is(err, ErrFormat) {
			t.Fatalf("body cut to %d of %d bytes: err = %v", n, len(body), err)
		}
	}
}

// onlyReader hides every method but Read, so that Read cannot learn the
// input size.
type onlyReader struct{ r *bytes.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }
