package baseline

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
)

// Test keys are derived from fixed seeds so that the test vectors and the
// fuzz corpus stay valid across runs.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func keyA() ed25519.PrivateKey { return testKey(0xA1) }
func keyB() ed25519.PrivateKey { return testKey(0xB2) }

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// sampleEntries covers every file type with realistic attributes, a
// non-UTF-8 path, binary xattr values and all three hash sizes.
func sampleEntries() []attr.Entry {
	h := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	std := attr.Type | attr.Mode | attr.UID | attr.GID | attr.Size | attr.Inode | attr.Nlink | attr.Mtime | attr.Ctime | attr.Xattrs
	es := []attr.Entry{
		{Path: "/", Attrs: std, Type: attr.TypeDir, Mode: 0o755, Size: 4096, Inode: 2, Nlink: 19, Mtime: 1700000000123456789, Ctime: 1700000000123456789},
		{Path: "/bin", Attrs: std | attr.Target, Type: attr.TypeSymlink, Mode: 0o777, Size: 7, Inode: 12, Nlink: 1, Target: "usr/bin", Mtime: 1690000000000000000, Ctime: 1700000001000000000},
		{Path: "/dev", Attrs: std, Type: attr.TypeDir, Mode: 0o755, Size: 4096, Inode: 13, Nlink: 4, Mtime: -1, Ctime: 0},
		{Path: "/dev/null", Attrs: std, Type: attr.TypeChar, Mode: 0o666, Inode: 14, Nlink: 1, Rdev: 0x103, Mtime: 1, Ctime: 2},
		{Path: "/dev/sda", Attrs: std, Type: attr.TypeBlock, Mode: 0o660, GID: 6, Inode: 15, Nlink: 1, Rdev: math.MaxUint64, Mtime: math.MinInt64, Ctime: math.MaxInt64},
		{Path: "/etc", Attrs: std, Type: attr.TypeDir, Mode: 0o755, Inode: 16, Nlink: 40},
		{Path: "/etc/passwd", Attrs: std | attr.SHA256, Type: attr.TypeRegular, Mode: 0o644, Size: 1234, Inode: 17, Nlink: 1,
			Mtime: 1700000000999999999, Ctime: 1700000000999999999, Hash: h(32, 0x11),
			Xattrs: []attr.Xattr{{Name: "security.selinux", Value: []byte("system_u:object_r:passwd_file_t:s0\x00")}}},
		{Path: "/etc/shadow", Attrs: std | attr.SHA512, Type: attr.TypeRegular, Mode: 0o640, GID: 42, Size: 800, Inode: 18, Nlink: 1, Hash: h(64, 0x22)},
		{Path: "/run", Attrs: attr.Type, Type: attr.TypeDir},
		{Path: "/run/app.sock", Attrs: std, Type: attr.TypeSocket, Mode: 0o600, UID: math.MaxUint32, GID: math.MaxUint32, Inode: math.MaxUint64, Nlink: 1},
		{Path: "/run/fifo", Attrs: std, Type: attr.TypeFIFO, Mode: 0o7777, Inode: 1, Nlink: 1},
		{Path: "/usr", Attrs: std, Type: attr.TypeDir, Mode: 0o755, Inode: 20, Nlink: 3},
		{Path: "/usr/bin", Attrs: std, Type: attr.TypeDir, Mode: 0o755, Inode: 21, Nlink: 2},
		{Path: "/usr/bin/ping", Attrs: std | attr.BLAKE3, Type: attr.TypeRegular, Mode: 0o4755, Size: math.MaxInt64, Inode: 22, Nlink: 1, Hash: h(32, 0x33),
			Xattrs: []attr.Xattr{
				{Name: "security.capability", Value: []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
				{Name: "user.\xff\xfe", Value: []byte{0, 0xff, 0}},
				{Name: "user.empty"},
			}},
		{Path: "/usr/bin/unhashed", Attrs: std | attr.SHA256, Type: attr.TypeRegular, Mode: 0o755, Inode: 23, Nlink: 1},
		{Path: "/var/log/app.log", Attrs: attr.Type | attr.Size | attr.Growing | attr.SHA256, Type: attr.TypeRegular, Size: 99, Hash: h(32, 0x44), Racy: true},
		{Path: "/var/log/caf\xe9", Attrs: attr.Type | attr.Inode, Type: attr.TypeRegular, Inode: 5},
		{Path: "/var/log/unknown", Attrs: 0, Type: attr.TypeUnknown},
	}
	return es
}

// imageBaseline is a baseline as one made from an image looks: every
// header field set, entries from three layers.
func imageBaseline() *Baseline {
	im := testImage(3)
	b := &Baseline{Header: Header{
		Subject:      im.Manifest,
		Created:      time.Date(2026, 12, 3, 8, 30, 0, 123456789, time.UTC),
		Serial:       7,
		PolicyDigest: fmt.Sprintf("%x", sha256.Sum256([]byte("policy"))),
		Policy:       []byte(`{"version":1,"rules":[{"path":"/","preset":"ReadOnly"}]}`),
		Compared:     attr.ImageStable,
		Image:        im,
	}}
	stable := attr.ImageStable &^ attr.Hashes
	b.Entries = []attr.Entry{
		{Path: "/", Attrs: stable, Type: attr.TypeDir, Mode: 0o755, Mtime: 1700000000000000000, Layer: 1},
		{Path: "/bin", Attrs: stable, Type: attr.TypeSymlink, Mode: 0o777, Size: 7, Target: "usr/bin", Mtime: 1700000000000000000, Layer: 1},
		{Path: "/etc", Attrs: stable, Type: attr.TypeDir, Mode: 0o755, Mtime: 1700000001000000000, Layer: 3},
		{Path: "/etc/passwd", Attrs: stable | attr.SHA256, Type: attr.TypeRegular, Mode: 0o644, Size: 1234, Mtime: 1700000001000000000,
			Hash: bytes.Repeat([]byte{0x11}, 32), Layer: 3},
		{Path: "/usr/bin/ping", Attrs: stable | attr.SHA256, Type: attr.TypeRegular, Mode: 0o755, Size: 9, Mtime: 1700000000000000000,
			Hash: bytes.Repeat([]byte{0x22}, 32), Layer: 2, Xattrs: []attr.Xattr{{Name: "security.capability", Value: []byte{1, 0, 0, 2}}}},
		{Path: "/www", Attrs: stable, Type: attr.TypeDir, Mode: 0o755, UID: 65532, GID: 65532, Mtime: 1700000002000000000, Layer: 1},
	}
	return b
}

func sampleBaseline() *Baseline {
	return &Baseline{Header: Header{PolicyDigest: fmt.Sprintf("%x", sha256.Sum256([]byte("policy")))}, Entries: sampleEntries()}
}

// combinationEntries has one entry for every file type and every
// combination of attributes (at most one hash), with random values in the
// fields that were collected.
func combinationEntries() []attr.Entry {
	rng := rand.New(rand.NewPCG(1, 2))
	nonHash := []attr.Set{attr.Type, attr.Mode, attr.UID, attr.GID, attr.Size, attr.Inode, attr.Nlink, attr.Target, attr.Mtime, attr.Ctime, attr.Xattrs, attr.Growing}
	hashes := []attr.Set{0, attr.SHA256, attr.SHA512, attr.BLAKE3}
	var es []attr.Entry
	for t := attr.TypeUnknown; t <= attr.TypeSocket; t++ {
		for mask := range 1 << len(nonHash) {
			for _, hs := range hashes {
				var a attr.Set
				for i, bit := range nonHash {
					if mask&(1<<i) != 0 {
						a |= bit
					}
				}
				a |= hs
				e := attr.Entry{Path: fmt.Sprintf("/t%d/\x01\xff%05x", t, uint32(a)), Attrs: a, Type: t, Racy: rng.IntN(2) == 0}
				fill(&e, rng)
				es = append(es, e)
			}
		}
	}
	return es
}

// fill sets random values in the fields e.Attrs says were collected.
func fill(e *attr.Entry, rng *rand.Rand) {
	a := e.Attrs
	big := func() uint64 { return rng.Uint64() >> rng.IntN(64) }
	if a.Has(attr.Mode) {
		e.Mode = rng.Uint32N(0o10000)
	}
	if a.Has(attr.UID) {
		e.UID = uint32(big())
	}
	if a.Has(attr.GID) {
		e.GID = uint32(big())
	}
	if a.Has(attr.Size) {
		e.Size = int64(big() >> 1)
	}
	if a.Has(attr.Inode) {
		e.Inode = big()
	}
	if a.Has(attr.Nlink) {
		e.Nlink = big()
	}
	if hasRdev(e) {
		e.Rdev = big()
	}
	if hasTarget(e) {
		e.Target = string([]byte{'.', '.', '/', byte(rng.IntN(255) + 1), 0xff})
	}
	if a.Has(attr.Mtime) {
		e.Mtime = int64(big())
	}
	if a.Has(attr.Ctime) {
		e.Ctime = -int64(big() >> 1)
	}
	if a.Has(attr.Xattrs) {
		for i := range rng.IntN(3) {
			v := make([]byte, rng.IntN(40))
			for j := range v {
				v[j] = byte(rng.Uint32())
			}
			e.Xattrs = append(e.Xattrs, attr.Xattr{Name: fmt.Sprintf("user.%d\xfe", i), Value: v})
		}
	}
	if alg := e.HashAlg(); alg != 0 && e.Type == attr.TypeRegular && rng.IntN(4) != 0 {
		e.Hash = make([]byte, hashSize(alg))
		for j := range e.Hash {
			e.Hash[j] = byte(rng.Uint32())
		}
	}
}

// normalize makes empty slices nil, the way Read returns them, so that
// reflect.DeepEqual compares meaning.
func normalize(es []attr.Entry) []attr.Entry {
	out := make([]attr.Entry, len(es))
	for i, e := range es {
		if len(e.Xattrs) == 0 {
			e.Xattrs = nil
		} else {
			xs := make([]attr.Xattr, len(e.Xattrs))
			for j, x := range e.Xattrs {
				if len(x.Value) == 0 {
					x.Value = nil
				}
				xs[j] = x
			}
			e.Xattrs = xs
			e.SortXattrs()
		}
		if len(e.Hash) == 0 {
			e.Hash = nil
		}
		out[i] = e
	}
	return out
}

func assertSameEntries(t testing.TB, got, want []attr.Entry) {
	t.Helper()
	g, w := normalize(got), normalize(want)
	if len(g) != len(w) {
		t.Fatalf("got %d entries, want %d", len(g), len(w))
	}
	for i := range g {
		if !reflect.DeepEqual(g[i], w[i]) {
			t.Fatalf("entry %d:\n got %#v\nwant %#v", i, g[i], w[i])
		}
	}
}

// encodeFile writes b, failing the test on error.
func encodeFile(t testing.TB, b *Baseline, key ed25519.PrivateKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, b, key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawBody encodes b's body without validating it.
func rawBody(t testing.TB, b *Baseline) []byte {
	t.Helper()
	var buf bytes.Buffer
	hashes := func(p []byte) error { _, err := buf.Write(p); return err }
	if err := encodeBody(&buf, hashes, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gz compresses body the way Write does.
func gz(t testing.TB, body []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzipLevel)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// assemble builds a file around any payload, with a correct digest and,
// when key is non-nil, a correct signature.
// From version 2 on, the header record is that of a zero Header.
func assemble(payload []byte, version, flags uint16, key ed25519.PrivateKey) []byte {
	return assembleWith(payload, version, flags, key, appendRecord(nil, &Header{}))
}

// assembleWith is assemble with the header record rec (version 2 on).
func assembleWith(payload []byte, version, flags uint16, key ed25519.PrivateKey, rec []byte) []byte {
	h := &header{version: version, flags: flags, payloadLen: uint64(len(payload)), digest: sha256.Sum256(payload)}
	if version >= 2 {
		h.record = rec
	}
	if key != nil {
		sign(h, key)
	}
	return append(h.marshal(nil), payload...)
}

// splitFile returns the header and the payload of a file whose header is
// well formed, or ok=false.
func splitFile(data []byte) (h *header, payload []byte, ok bool) {
	h, err := readHeader(bytes.NewReader(data))
	if err != nil || len(data) < h.size() {
		return nil, nil, false
	}
	return h, data[h.size():], true
}

// decodeBody decodes a whole decompressed body of the current version of
// at most maxBody bytes from r, without gzip and a file around it.
func decodeBody(r io.Reader, maxBody int64, maxEntries uint64) (*Baseline, error) {
	return decodeBodyOf(r, bodyFormat{version: Version}, maxBody, maxEntries)
}

// decodeBodyOf is decodeBody for a body of the format f. The Baseline has
// an image with f.layers layers, so that it passes validate.
func decodeBodyOf(r io.Reader, f bodyFormat, maxBody int64, maxEntries uint64) (*Baseline, error) {
	s, policy, err := newBodyStream(r, f, maxBody, maxEntries)
	if err != nil {
		return nil, err
	}
	b := &Baseline{Header: Header{PolicyDigest: policy}, Version: int(f.version)}
	if f.layers > 0 {
		b.Image = testImage(f.layers)
	}
	for {
		e, err := s.next()
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		c := *e
		c.Hash = bytes.Clone(e.Hash)
		b.Entries = append(b.Entries, c)
	}
}

// testImage returns a valid image record with n layers.
func testImage(n int) *Image {
	d := func(s string) string { return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s))) }
	im := &Image{Manifest: d("manifest"), Config: d("config"), Index: d("index"), Platform: "linux/amd64"}
	for i := range n {
		im.Layers = append(im.Layers, d(fmt.Sprint("layer", i)))
	}
	return im
}
