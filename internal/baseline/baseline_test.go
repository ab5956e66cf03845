package baseline

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline/baselinetest"
)

func TestRoundTrip(t *testing.T) {
	all := combinationEntries()
	combos := &Baseline{Header: Header{PolicyDigest: "p"}}
	for _, i := range sampleOf(t, len(all), 64, 16) {
		combos.Entries = append(combos.Entries, all[i])
	}
	combos.Sort()
	for name, b := range map[string]*Baseline{
		"sample":       sampleBaseline(),
		"combinations": combos,
		"empty":        {},
		"root only":    {Entries: []attr.Entry{{Path: "/", Attrs: attr.All, Type: attr.TypeDir}}},
	} {
		for _, signed := range []bool{false, true} {
			if signed && name == "combinations" {
				continue // signing does not depend on the content
			}
			t.Run(name+map[bool]string{false: "/unsigned", true: "/signed"}[signed], func(t *testing.T) {
				key, opts := keyA(), ReadOptions{VerifyKey: pubOf(keyA())}
				if !signed {
					key, opts = nil, ReadOptions{}
				}
				data := encodeFile(t, b, key)
				got, err := Read(bytes.NewReader(data), opts)
				if err != nil {
					t.Fatal(err)
				}
				if got.PolicyDigest != b.PolicyDigest || got.Version != Version || got.Signed != signed {
					t.Errorf("got policy %q version %d signed %v", got.PolicyDigest, got.Version, got.Signed)
				}
				if got.Digest != b.Digest || got.KeyID != b.KeyID || !got.PublicKey.Equal(b.PublicKey) {
					t.Errorf("Read says digest %x key %q, Write said %x key %q", got.Digest, got.KeyID, b.Digest, b.KeyID)
				}
				if got.Digest != sha256.Sum256(payloadOf(data)) {
					t.Errorf("digest is not the sha256 of the payload")
				}
				if signed && got.KeyID != KeyID(pubOf(keyA())) {
					t.Errorf("KeyID = %q, want %q", got.KeyID, KeyID(pubOf(keyA())))
				}
				assertSameEntries(t, got.Entries, b.Entries)
			})
		}
	}
}

// payloadOf returns the payload of a file whose header is well formed.
func payloadOf(data []byte) []byte {
	_, p, _ := splitFile(data)
	return p
}

// headerLen returns the size of the header of a file whose header is well
// formed.
func headerLen(data []byte) int {
	h, _, _ := splitFile(data)
	return h.size()
}

func TestDeterministic(t *testing.T) {
	b := sampleBaseline()
	first := encodeFile(t, b, keyA())
	// Unsorted xattrs are stored sorted, so the order a scan found them in
	// does not change the bytes; the caller's slice is left alone.
	c := sampleBaseline()
	xs := c.Entries[13].Xattrs
	xs[0], xs[2] = xs[2], xs[0]
	second := encodeFile(t, c, keyA())
	if !bytes.Equal(first, second) {
		t.Fatal("two writes of the same baseline differ")
	}
	if xs[0].Name != "user.empty" {
		t.Error("Write reordered the caller's xattrs")
	}
	// And reading then writing gives the same bytes back.
	got, err := Read(bytes.NewReader(first), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if third := encodeFile(t, got, keyA()); !bytes.Equal(first, third) {
		t.Fatal("Write(Read(x)) != x")
	}
}

func TestLookup(t *testing.T) {
	b := sampleBaseline()
	for _, e := range b.Entries {
		got, ok := b.Lookup(e.Path)
		if !ok || got.Path != e.Path {
			t.Errorf("Lookup(%q) = %v, %v", e.Path, got, ok)
		}
	}
	for _, p := range []string{"", "/a", "/etc/pass", "/etc/passwd/x", "/zzz", "/usr/bin/pin"} {
		if got, ok := b.Lookup(p); ok {
			t.Errorf("Lookup(%q) = %q, want none", p, got.Path)
		}
	}
	got, _ := b.Lookup("/etc/passwd")
	got.Mode = 0o600
	if b.Entries[6].Mode != 0o600 {
		t.Error("Lookup does not return a pointer into Entries")
	}
}

func TestSort(t *testing.T) {
	b := sampleBaseline()
	want := sampleBaseline()
	for i, j := 0, len(b.Entries)-1; i < j; i, j = i+1, j-1 {
		b.Entries[i], b.Entries[j] = b.Entries[j], b.Entries[i]
	}
	b.Sort()
	assertSameEntries(t, b.Entries, want.Entries)
}

func TestWriteRejectsInvalid(t *testing.T) {
	for name, mutate := range map[string]func(b *Baseline){
		"version":           func(b *Baseline) { b.Version = Version + 1 },
		"subject escape":    func(b *Baseline) { b.Subject = "a\x1b[8m" },
		"subject invalid":   func(b *Baseline) { b.Subject = "caf\xe9" },
		"subject too long":  func(b *Baseline) { b.Subject = strings.Repeat("s", MaxSubjectBytes+1) },
		"created before":    func(b *Baseline) { b.Created = time.Unix(-1, 0) },
		"policy too large":  func(b *Baseline) { b.Policy = make([]byte, MaxPolicyBytes+1) },
		"compared unknown":  func(b *Baseline) { b.Compared = 1 << 30 },
		"image no config":   func(b *Baseline) { b.Image = testImage(1); b.Image.Config = "" },
		"image bad index":   func(b *Baseline) { b.Image = testImage(1); b.Image.Index = "md5:00" },
		"image layers":      func(b *Baseline) { b.Image = testImage(MaxLayers + 1) },
		"layer no image":    func(b *Baseline) { b.Entries[3].Layer = 1 },
		"layer over":        func(b *Baseline) { b.Image = testImage(2); b.Entries[3].Layer = 3 },
		"policy too long":   func(b *Baseline) { b.PolicyDigest = strings.Repeat("a", maxPolicyDigestLen+1) },
		"policy escape":     func(b *Baseline) { b.PolicyDigest = "p\n\x1b[2J" },
		"unsorted":          func(b *Baseline) { b.Entries[1], b.Entries[2] = b.Entries[2], b.Entries[1] },
		"duplicate":         func(b *Baseline) { b.Entries[2].Path = b.Entries[1].Path },
		"relative":          func(b *Baseline) { b.Entries[1].Path = "bin" },
		"empty path":        func(b *Baseline) { b.Entries[0].Path = "" },
		"dotdot":            func(b *Baseline) { b.Entries[1].Path = "/bin/.." },
		"dot":               func(b *Baseline) { b.Entries[1].Path = "/./bin" },
		"double slash":      func(b *Baseline) { b.Entries[1].Path = "//bin" },
		"trailing slash":    func(b *Baseline) { b.Entries[1].Path = "/bin/" },
		"nul":               func(b *Baseline) { b.Entries[1].Path = "/b\x00n" },
		"long path":         func(b *Baseline) { b.Entries[17].Path = "/var/" + strings.Repeat("x", maxPathLen) },
		"unknown attr":      func(b *Baseline) { b.Entries[0].Attrs |= 1 << 30 },
		"two hashes":        func(b *Baseline) { b.Entries[6].Attrs |= attr.SHA512 },
		"unknown type":      func(b *Baseline) { b.Entries[0].Type = 8 },
		"mode bits":         func(b *Baseline) { b.Entries[0].Mode = 0o10000 },
		"negative size":     func(b *Baseline) { b.Entries[0].Size = -1 },
		"uncollected mode":  func(b *Baseline) { b.Entries[8].Mode = 0o755 },
		"uncollected mtime": func(b *Baseline) { b.Entries[8].Mtime = 1 },
		"rdev on file":      func(b *Baseline) { b.Entries[6].Rdev = 1 },
		"target on file":    func(b *Baseline) { b.Entries[6].Target = "x" },
		"target nul":        func(b *Baseline) { b.Entries[1].Target = "a\x00b" },
		"target too long":   func(b *Baseline) { b.Entries[1].Target = strings.Repeat("x", maxTargetLen+1) },
		"uncollected xattr": func(b *Baseline) { b.Entries[8].Xattrs = []attr.Xattr{{Name: "user.a"}} },
		"duplicate xattr":   func(b *Baseline) { b.Entries[6].Xattrs = []attr.Xattr{{Name: "user.a"}, {Name: "user.a"}} },
		"empty xattr name":  func(b *Baseline) { b.Entries[6].Xattrs = []attr.Xattr{{Name: ""}} },
		"xattr name nul":    func(b *Baseline) { b.Entries[6].Xattrs = []attr.Xattr{{Name: "a\x00"}} },
		"xattr name long":   func(b *Baseline) { b.Entries[6].Xattrs = []attr.Xattr{{Name: strings.Repeat("n", 256)}} },
		"xattr value long": func(b *Baseline) {
			b.Entries[6].Xattrs = []attr.Xattr{{Name: "n", Value: make([]byte, maxXattrValueLen+1)}}
		},
		"too many xattrs": func(b *Baseline) {
			b.Entries[6].Xattrs = nil
			for i := range maxXattrs + 1 {
				b.Entries[6].Xattrs = append(b.Entries[6].Xattrs, attr.Xattr{Name: string(rune('a'+i%26)) + strings.Repeat("x", i/26)})
			}
		},
		"short hash":        func(b *Baseline) { b.Entries[6].Hash = b.Entries[6].Hash[:31] },
		"long hash":         func(b *Baseline) { b.Entries[6].Hash = append(b.Entries[6].Hash, 0) },
		"hash without attr": func(b *Baseline) { b.Entries[0].Hash = make([]byte, 32) },
		"hash on dir":       func(b *Baseline) { b.Entries[0].Attrs |= attr.SHA256; b.Entries[0].Hash = make([]byte, 32) },
	} {
		t.Run(name, func(t *testing.T) {
			b := sampleBaseline()
			mutate(b)
			if err := Write(io.Discard, b, nil); err == nil {
				t.Fatal("Write accepted an invalid baseline")
			}
			if err := WriteFile(filepath.Join(t.TempDir(), "b.pfb"), b, nil); err == nil {
				t.Fatal("WriteFile accepted an invalid baseline")
			}
		})
	}
	if err := Write(io.Discard, sampleBaseline(), keyA()[:10]); err == nil {
		t.Error("Write accepted a short private key")
	}
}

// TestBodyFieldLimits checks the decoder's bounds and canonical-form
// rules, which the encoder cannot produce and the vectors cover only in
// part. The bodies are of format version 1, which starts with the policy
// digest (the 0x00 in front of each: none); TestBodyV2Fields covers what
// version 2 changed.
func TestBodyFieldLimits(t *testing.T) {
	v1 := bodyFormat{version: 1}
	// What each case's error must say, so that it fails for its own reason.
	bodyErrors := map[string]string{
		"empty":               "truncated",
		"policy too long":     "policy digest length 257",
		"policy escape":       "policy digest \"\\x1b[2J\" is not printable",
		"count over limit":    "entry count 1152921504606846976 is more than",
		"varint overflow":     "overflows",
		"noncanonical count":  "entry count: non-canonical",
		"noncanonical mode":   "mode: non-canonical",
		"missing end":         "truncated",
		"wrong end":           "no end marker",
		"after end":           "after the end marker",
		"shared beyond prev":  "shared path prefix 1 is more than 0",
		"suffix too long":     "path suffix length 4097",
		"attrs over 32 bits":  "attribute set 4294967296",
		"unknown entry flag":  "unknown entry flags 0x04",
		"ctime flag without":  "wrong base",
		"ctime wrong base":    "wrong base",
		"unknown type":        "unknown file type 8",
		"uid over 32 bits":    "uid 4294967296",
		"size over 63 bits":   "size 18446744073709551615",
		"xattr count over":    "extended attribute count 1025",
		"xattr value over":    "extended attribute value length 65537",
		"hash length over 64": "hash length 65",
		"group hashes over":   "group hash length 65 is more than 64",
		"stray hash bytes":    "holds 1 hash bytes more than they take",
		"hash beyond group":   "hash length 32 is more than the 0 hash bytes left",
		"short shared prefix": "shorter prefix",
		"unsorted":            `out of order after "/b"`,
		"duplicate":           `out of order after "/b"`,
	}
	valid := rawBody(t, &Baseline{Version: 1, Entries: []attr.Entry{{Path: "/a", Attrs: attr.Mode, Mode: 0o644}}})
	if _, err := decodeBodyOf(bytes.NewReader(valid), v1, DefaultMaxSize, MaxEntries); err != nil {
		t.Fatalf("valid body: %v", err)
	}
	for name, body := range map[string][]byte{
		"empty":               {},
		"policy too long":     {0x81, 0x02}, // 257
		"policy escape":       {0x04, 0x1b, '[', '2', 'J', 0x00},
		"count over limit":    {0x00, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10}, // 2^60
		"varint overflow":     {0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02},
		"noncanonical count":  {0x00, 0x81, 0x00},
		"noncanonical mode":   {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x02, 0x00, 0x00, 0xa4, 0x83, 0x00, 0x00, 'E', 'N', 'D'},
		"missing end":         valid[:len(valid)-1],
		"wrong end":           append(bytes.Clone(valid[:len(valid)-1]), 'X'),
		"after end":           append(bytes.Clone(valid), 0),
		"shared beyond prev":  {0x00, 0x01, 0x00, 0x01, 0x01, 'a', 0x00, 0x00, 0x00},
		"suffix too long":     {0x00, 0x01, 0x00, 0x00, 0x81, 0x20}, // 4097
		"attrs over 32 bits":  {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x80, 0x80, 0x80, 0x80, 0x10},
		"unknown entry flag":  {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x00, 0x00, 0x04, 0x00, 'E', 'N', 'D'},
		"ctime flag without":  {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x00, 0x00, 0x02, 0x00, 'E', 'N', 'D'},
		"ctime wrong base":    {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x80, 0x06, 0x01, 0x00, 0x0a, 0x0a, 0x00, 'E', 'N', 'D'},
		"unknown type":        {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x00, 0x08, 0x00, 0x00, 'E', 'N', 'D'},
		"uid over 32 bits":    {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x04, 0x00, 0x00, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00, 'E', 'N', 'D'},
		"size over 63 bits":   {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x10, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 'E', 'N', 'D'},
		"xattr count over":    {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x80, 0x08, 0x00, 0x00, 0x81, 0x08}, // 1025
		"xattr value over":    {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x80, 0x08, 0x00, 0x00, 0x01, 0x01, 'n', 0x81, 0x80, 0x04},
		"hash length over 64": {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x80, 0x10, 0x01, 0x00, 0x41},
		// A group of one entry holds at most one sha512.
		"group hashes over": {0x00, 0x01, 0x41},
		// A hash byte in front of an entry without a hash.
		"stray hash bytes": {0x00, 0x01, 0x01, 0xaa, 0x00, 0x02, '/', 'a', 0x00, 0x00, 0x00, 'E', 'N', 'D'},
		// A sha256 entry whose group has no hash bytes.
		"hash beyond group": {0x00, 0x01, 0x00, 0x00, 0x02, '/', 'a', 0x80, 0x10, 0x01, 0x00, 0x20},
		// "/a" then "/ab" coded as "/" + "ab": correct, but not canonical.
		"short shared prefix": {0x00, 0x02, 0x00, 0x00, 0x02, '/', 'a', 0x00, 0x00, 0x00, 0x01, 0x02, 'a', 'b', 0x00, 0x00, 0x00, 0x00, 'E', 'N', 'D'},
		"unsorted":            {0x00, 0x02, 0x00, 0x00, 0x02, '/', 'b', 0x00, 0x00, 0x00, 0x01, 0x01, 'a', 0x00, 0x00, 0x00, 0x00, 'E', 'N', 'D'},
		"duplicate":           {0x00, 0x02, 0x00, 0x00, 0x02, '/', 'b', 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 'E', 'N', 'D'},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeBodyOf(bytes.NewReader(body), v1, DefaultMaxSize, MaxEntries)
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
			if want, ok := bodyErrors[name]; !ok || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want one saying %q", err, want)
			}
		})
	}
}

// TestBodyV2Fields checks what version 2 changed in the body: no policy
// digest in front, and the image layer behind an entry flag.
func TestBodyV2Fields(t *testing.T) {
	two := bodyFormat{version: 2, layers: 2}
	// "/a" with no attributes, flags as given, then the end marker.
	one := func(flags byte, tail ...byte) []byte {
		b := append([]byte{0x01, 0x00, 0x00, 0x02, '/', 'a', 0x00, 0x00, flags}, tail...)
		return append(b, endMarker...)
	}
	b, err := decodeBodyOf(bytes.NewReader(one(entryLayer, 0x02)), two, DefaultMaxSize, MaxEntries)
	if err != nil || len(b.Entries) != 1 || b.Entries[0].Layer != 2 {
		t.Fatalf("layer 2 of 2: %v %+v", err, b)
	}
	for name, tc := range map[string]struct {
		body []byte
		want string
	}{
		"unknown entry flag": {one(0x08), "unknown entry flags 0x08"},
		"layer over":         {one(entryLayer, 0x03), "image layer 3 is more than 2"},
		"layer zero":         {one(entryLayer, 0x00), "image layer 0 is stored"},
		"layer truncated":    {[]byte{0x01, 0x00, 0x00, 0x02, '/', 'a', 0x00, 0x00, entryLayer}, "truncated"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeBodyOf(bytes.NewReader(tc.body), two, DefaultMaxSize, MaxEntries)
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrFormat saying %q", err, tc.want)
			}
		})
	}
}

func TestReadLimits(t *testing.T) {
	data := encodeFile(t, sampleBaseline(), nil)
	for name, opts := range map[string]ReadOptions{
		"file over MaxSize":  {MaxSize: int64(len(data) - 1)},
		"body over MaxSize":  {MaxSize: int64(len(data))}, // the body is larger than the file
		"entries over limit": {MaxEntries: len(sampleEntries()) - 1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Read(bytes.NewReader(data), opts); !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
		})
	}
	if _, err := Read(bytes.NewReader(data), ReadOptions{MaxSize: 1 << 20, MaxEntries: len(sampleEntries())}); err != nil {
		t.Errorf("at the limits: %v", err)
	}
	for name, opts := range map[string]ReadOptions{
		"negative size":    {MaxSize: -1},
		"too many entries": {MaxEntries: MaxEntries + 1},
		"short key":        {VerifyKey: pubOf(keyA())[:31]},
	} {
		if _, err := Read(bytes.NewReader(data), opts); err == nil || errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want an options error", name, err)
		}
	}
}

// TestReadBomb checks that a small file whose body decompresses to far more
// than MaxSize fails at the limit instead of filling memory.
func TestReadBomb(t *testing.T) {
	// 64 entries of three 64 KiB values: 12 MiB, each entry within
	// MaxXattrBytes.
	var es []attr.Entry
	for n := range 64 {
		e := attr.Entry{Path: fmt.Sprintf("/a%02d", n), Attrs: attr.Xattrs}
		for i := range 3 {
			e.Xattrs = append(e.Xattrs, attr.Xattr{Name: fmt.Sprintf("user.%04d", i), Value: make([]byte, maxXattrValueLen)})
		}
		es = append(es, e)
	}
	data := assemble(gz(t, rawBody(t, &Baseline{Entries: es})), Version, 0, nil)
	var ms0, ms1 runtimeMem
	ms0.read()
	_, err := Read(bytes.NewReader(data), ReadOptions{MaxSize: 1 << 20})
	ms1.read()
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "size limit") {
		t.Fatalf("err = %v, want the size limit", err)
	}
	if grew := ms1.totalAlloc - ms0.totalAlloc; grew > 4<<20 {
		t.Errorf("a %d-byte file decompressing to 12 MiB allocated %d bytes with a 1 MiB limit", len(data), grew)
	}
	if _, err := Read(bytes.NewReader(data), ReadOptions{MaxSize: 16 << 20}); err != nil {
		t.Errorf("under a large enough limit: %v", err)
	}
}

// TestXattrBomb is issue 11 item 4's input: a 1.1 MB unsigned baseline of
// 15 entries with 1,024 extended attributes of 64 KiB each (960 MiB
// decompressed, under the default 1 GiB limit) made check allocate every
// value and use 1.14 GB. The first entry now fails at MaxXattrBytes,
// having allocated about that much.
func TestXattrBomb(t *testing.T) {
	var buf bytes.Buffer
	bomb, err := baselinetest.XattrBomb(15, MaxXattrs, MaxXattrValueBytes)
	if err == nil {
		err = bomb.Write(&buf, "p")
	}
	if err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	t.Logf("hostile baseline: %d bytes", len(data))
	var ms0, ms1 runtimeMem
	ms0.read()
	_, err = Read(bytes.NewReader(data), ReadOptions{})
	ms1.read()
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "extended attributes take more than 262144 bytes") {
		t.Fatalf("err = %v, want ErrFormat at MaxXattrBytes", err)
	}
	// The payload itself (1 MB), gzip's window and buffers, one entry's
	// values up to the limit.
	if grew := ms1.totalAlloc - ms0.totalAlloc; grew > 8<<20 {
		t.Errorf("reading it allocated %d bytes, want under 8 MiB", grew)
	}
	// The same encoder within the limits gives a file that reads: the
	// refusal above is the limit's, not the encoder's.
	buf.Reset()
	small, err := baselinetest.XattrBomb(3, 3, MaxXattrValueBytes)
	if err == nil {
		err = small.Write(&buf, "p")
	}
	if err != nil {
		t.Fatal(err)
	}
	if b, err := Read(bytes.NewReader(buf.Bytes()), ReadOptions{}); err != nil || len(b.Entries) != 3 || len(b.Entries[2].Xattrs) != 3 {
		t.Fatalf("within the limits: %v", err)
	}
}

// TestReadHugeClaims checks that lengths and counts claimed by a tiny file
// are not trusted for allocations.
func TestReadHugeClaims(t *testing.T) {
	body := binary.AppendUvarint([]byte{0}, MaxEntries-1) // no policy, many entries, none present
	files := map[string][]byte{
		"entry count": assemble(gz(t, body), Version, 0, nil),
		"payload len": func() []byte {
			h := &header{version: Version}
			h.payloadLen = uint64(DefaultMaxSize - h.size())
			return h.marshal(nil)
		}(),
	}
	for name, data := range files {
		t.Run(name, func(t *testing.T) {
			// A reader that does not tell its size, so that nothing but
			// the file's own claims guides Read.
			stream := func() io.Reader { return io.MultiReader(bytes.NewReader(data)) }
			allocs := testing.AllocsPerRun(3, func() {
				if _, err := Read(stream(), ReadOptions{}); !errors.Is(err, ErrFormat) {
					t.Fatalf("err = %v, want ErrFormat", err)
				}
			})
			var ms0, ms1 runtimeMem
			ms0.read()
			Read(stream(), ReadOptions{})
			ms1.read()
			if grew := ms1.totalAlloc - ms0.totalAlloc; grew > 4<<20 {
				t.Errorf("reading a %d-byte file allocated %d bytes", len(data), grew)
			}
			t.Logf("%d allocations", int(allocs))
		})
	}
}

func TestReadPassesIOErrors(t *testing.T) {
	data := encodeFile(t, sampleBaseline(), nil)
	boom := errors.New("boom")
	for _, n := range []int{0, 5, 20, len(data) - 10, len(data)} {
		r := io.MultiReader(bytes.NewReader(data[:n]), iotest.ErrReader(boom))
		_, err := Read(r, ReadOptions{})
		if !errors.Is(err, boom) || errors.Is(err, ErrFormat) {
			t.Errorf("after %d bytes: err = %v, want the reader's error", n, err)
		}
	}
}

func TestSigned(t *testing.T) {
	b := sampleBaseline()
	data := encodeFile(t, b, keyA())
	if !b.Signed || b.KeyID != KeyID(pubOf(keyA())) {
		t.Fatalf("Write recorded signed=%v key %q", b.Signed, b.KeyID)
	}
	if _, err := Read(bytes.NewReader(data), ReadOptions{VerifyKey: pubOf(keyA())}); err != nil {
		t.Fatalf("right key: %v", err)
	}
	_, err := Read(bytes.NewReader(data), ReadOptions{VerifyKey: pubOf(keyB())})
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("other key: err = %v, want ErrSignature", err)
	}
	if want := "signed by key " + KeyID(pubOf(keyA())) + ", want " + KeyID(pubOf(keyB())); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	got, err := Read(bytes.NewReader(data), ReadOptions{})
	if err != nil || !got.Signed || got.KeyID != KeyID(pubOf(keyA())) {
		t.Fatalf("no key: %v, signed=%v key %q", err, got != nil && got.Signed, got.KeyID)
	}
	unsigned := encodeFile(t, b, nil)
	if b.Signed || b.KeyID != "" || b.PublicKey != nil {
		t.Error("Write of an unsigned file left the signature fields set")
	}
	if _, err := Read(bytes.NewReader(unsigned), ReadOptions{VerifyKey: pubOf(keyA())}); !errors.Is(err, ErrSignature) {
		t.Fatalf("unsigned with a key: err = %v, want ErrSignature", err)
	}
	// Every bit of the signed part of the header matters.
	for i := preambleSize + 32; i < headerLen(data); i++ {
		c := bytes.Clone(data)
		c[i] ^= 1
		if _, err := Read(bytes.NewReader(c), ReadOptions{}); err == nil {
			t.Fatalf("flipping a bit of header byte %d went unnoticed", i)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	data := encodeFile(t, sampleBaseline(), nil)
	newer := bytes.Clone(data)
	newer[9] = 7
	_, err := Read(bytes.NewReader(newer), ReadOptions{})
	if want := "baseline format version 7 is newer than this podfim supports (2); upgrade podfim"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
	path := filepath.Join(t.TempDir(), "newer.pfb")
	if err := os.WriteFile(path, newer, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ReadFile(path, ReadOptions{})
	if !errors.Is(err, ErrVersion) || !strings.HasPrefix(err.Error(), "failed to read baseline \""+path+"\": baseline format version 7") {
		t.Errorf("ReadFile err = %v", err)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.pfb")
	b := sampleBaseline()
	if err := WriteFile(path, b, keyA()); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// A baseline lists every path and hash of the tree: like AIDE's
	// database, it is for its owner only.
	if st.Mode().Perm() != 0o600 {
		t.Errorf("new baseline mode %v, want 0600", st.Mode().Perm())
	}
	got, err := ReadFile(path, ReadOptions{VerifyKey: pubOf(keyA())})
	if err != nil {
		t.Fatal(err)
	}
	assertSameEntries(t, got.Entries, b.Entries)
	if got.Digest != b.Digest {
		t.Error("ReadFile digest differs from WriteFile's")
	}
	// Replacing keeps the mode, whichever the operator chose.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, &Baseline{}, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("replaced baseline mode %v, want 0640", st.Mode().Perm())
	}
	assertNoTemp(t, dir, "b.pfb")
	// A symlink at the path is replaced, and lends the new file neither
	// its target's content nor its target's mode.
	public, link := filepath.Join(dir, "public"), filepath.Join(dir, "link.pfb")
	if err := errors.Join(os.WriteFile(public, []byte("public"), 0o644), os.Chmod(public, 0o644), os.Symlink(public, link)); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, b, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Errorf("baseline written over a symlink to a 0644 file: %v, %v; want a regular file, 0600", st.Mode(), err)
	}
	if data, _ := os.ReadFile(public); string(data) != "public" {
		t.Errorf("the symlink's target was written through: %q", data)
	}

	if _, err := ReadFile(filepath.Join(dir, "missing"), ReadOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ReadFile(dir, ReadOptions{}); err == nil {
		t.Error("ReadFile read a directory")
	}
	// A relative path in the current directory.
	t.Chdir(dir)
	if err := WriteFile("rel.pfb", b, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile("rel.pfb", ReadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestWriteFileENOSPC fills a tiny tmpfs so that writing the new baseline
// fails, and checks that the old one survives and no temporary file stays.
func TestWriteFileENOSPC(t *testing.T) {
	dir, fill := smallDir(t)
	path := filepath.Join(dir, "b.pfb")
	old := &Baseline{Header: Header{PolicyDigest: "old"}, Entries: sampleEntries()}
	if err := WriteFile(path, old, nil); err != nil {
		t.Fatal(err)
	}
	fill()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	big := syntheticBaseline(5000, false) // a few hundred KB, more than the 64 KiB tmpfs
	err = WriteFile(path, big, nil)
	if err == nil {
		t.Fatal("WriteFile succeeded on a full file system")
	}
	t.Log(err)
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("the old baseline changed")
	}
	if _, err := ReadFile(path, ReadOptions{}); err != nil {
		t.Fatalf("the old baseline no longer reads: %v", err)
	}
	assertNoTemp(t, dir, "b.pfb")
	if big.Signed || big.Digest != ([32]byte{}) {
		t.Error("a failed WriteFile recorded a digest")
	}
}

// TestWriteFileRenameFails makes the final rename fail (the target is a
// non-empty directory) and checks the temporary file is removed.
func TestWriteFileRenameFails(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "b.pfb")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(target, sampleBaseline(), nil); err == nil {
		t.Fatal("WriteFile replaced a directory")
	}
	assertNoTemp(t, dir, "b.pfb")
}

func assertNoTemp(t *testing.T, dir string, keep ...string) {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(n.Name(), ".tmp-") {
			t.Errorf("temporary file %q left behind", n.Name())
		}
	}
}

func TestDigestHex(t *testing.T) {
	b := &Baseline{}
	b.Digest[0], b.Digest[31] = 0xab, 0x01
	if got := b.DigestHex(); len(got) != 64 || !strings.HasPrefix(got, "ab") || !strings.HasSuffix(got, "01") {
		t.Errorf("DigestHex = %q", got)
	}
	if KeyID(pubOf(keyA())) == KeyID(pubOf(keyB())) || len(KeyID(pubOf(keyA()))) != 16 {
		t.Error("KeyID is not a 16-digit hex id that tells keys apart")
	}
}

// smallDir returns a directory where writing a large file fails: a 64 KiB
// tmpfs when running as root (as CI does), else a directory that becomes
// read-only once fill is called.
func smallDir(t *testing.T) (dir string, fill func()) {
	t.Helper()
	dir = t.TempDir()
	if os.Geteuid() != 0 {
		t.Log("not root: simulating the failure with a read-only directory")
		return dir, func() {
			if err := os.Chmod(dir, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(dir, 0o755) })
		}
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("failed to mount a tmpfs on %q: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("failed to unmount %q: %v", dir, err)
		}
	})
	return dir, func() {}
}

// TestPathOrder checks the decoder's order and path checks, which look only
// at the part of a path after what it shares whole with the previous one,
// against attr.ComparePaths on whole paths.
func TestPathOrder(t *testing.T) {
	paths := []string{"/", "/a", "/a/b", "/a/b/c", "/a/b/c.d", "/a/bc", "/a/c", "/a.b", "/a.b/x", "/a0", "/b", "/b/\xff", "/b/\xff/a", "/b/\xff\x01", "/bb"}
	entries := func(ps []string) []attr.Entry {
		var es []attr.Entry
		for _, p := range ps {
			es = append(es, attr.Entry{Path: p})
		}
		return es
	}
	decode := func(ps []string) error {
		body := rawBody(t, &Baseline{Entries: entries(ps)})
		_, err := decodeBody(bytes.NewReader(body), DefaultMaxSize, MaxEntries)
		return err
	}
	if !slices.IsSortedFunc(paths, attr.ComparePaths) {
		t.Fatal("the test paths are not in order")
	}
	if err := decode(paths); err != nil {
		t.Fatal(err)
	}
	for i := range len(paths) - 1 {
		swapped := slices.Clone(paths)
		swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
		if err := decode(swapped); !errors.Is(err, ErrFormat) {
			t.Errorf("swapping %q and %q: err = %v", paths[i], paths[i+1], err)
		}
		dup := slices.Clone(paths)
		dup[i+1] = dup[i]
		if err := decode(dup); !errors.Is(err, ErrFormat) {
			t.Errorf("repeating %q: err = %v", paths[i], err)
		}
	}
	for _, bad := range []string{"/a/b/", "/a/b//c", "/a/b/.", "/a/b/..", "/a/b/./c", "/a/b/c\x00"} {
		ps := []string{"/a", "/a/b", bad}
		if err := decode(ps); !errors.Is(err, ErrFormat) {
			t.Errorf("%q after /a/b: err = %v", bad, err)
		}
	}
}
