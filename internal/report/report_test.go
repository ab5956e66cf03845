package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/origin"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func entry(path string, mod func(*attr.Entry)) attr.Entry {
	e := attr.Entry{
		Path: path, Attrs: attr.All, Type: attr.TypeRegular, Mode: 0o644,
		Size: 14, Inode: 42, Nlink: 1, Mtime: 1_700_000_000_123_456_789, Ctime: 1_700_000_000_123_456_789,
		Hash: bytes.Repeat([]byte{0xab}, 32),
	}
	if mod != nil {
		mod(&e)
	}
	return e
}

// sample is a report with one finding of every kind and shape.
func sample() *Report {
	old := []attr.Entry{
		entry("/etc/passwd", nil),
		entry("/usr/bin/ping", func(e *attr.Entry) {
			e.Mode = 0o755
			e.Xattrs = []attr.Xattr{{Name: "security.capability", Value: []byte{1, 0, 0, 2}}}
		}),
		entry("/usr/bin/sh", func(e *attr.Entry) { e.Type = attr.TypeSymlink; e.Target = "dash"; e.Hash = nil }),
		entry("/var/www/index.html", nil),
	}
	cur := []attr.Entry{
		entry("/etc/cron.d/\xffevil", func(e *attr.Entry) { e.Mode = 0o600; e.Size = 4096 }),
		entry("/etc/passwd", func(e *attr.Entry) {
			e.Mtime++
			e.Hash = bytes.Repeat([]byte{0xcd}, 32)
			e.Xattrs = []attr.Xattr{{Name: "system.posix_acl_access", Value: EncodeACL(
				[3]uint32{aclUserObj, 6, 0}, [3]uint32{aclUser, 6, 1000}, [3]uint32{aclGroupObj, 4, 0},
				[3]uint32{aclMask, 6, 0}, [3]uint32{aclOther, 4, 0})}}
		}),
		entry("/usr/bin/ping", func(e *attr.Entry) { e.Mode = 0o4755 }),
		entry("/usr/bin/sh", func(e *attr.Entry) { e.Type = attr.TypeSymlink; e.Target = "/proc/self/root/bin/busybox"; e.Hash = nil }),
	}
	res := compare.Entries(old, cur, 0)
	origins := map[string]origin.Origin{
		"/etc/cron.d/\xffevil": {Kind: origin.Container},
		"/etc/passwd":          {Kind: origin.Image, Layer: 1, LayerDigest: "sha256:" + strings.Repeat("0123456789", 6) + "abcd"},
		"/usr/bin/ping":        {Kind: origin.Baseline},
		"/usr/bin/sh":          {Kind: origin.Image, Layer: 3},
		"/var/www/index.html":  {Kind: origin.Volume, Mount: "/var/www\n\xff"}, // a hostile mount point
	}
	for i := range res.Findings {
		res.Findings[i].Origin = origins[res.Findings[i].Path]
	}
	s := NewSummary(res)
	s.Root = "/srv/app"
	s.BaselineEntries, s.ScannedEntries = len(old), len(cur)
	s.Hashed, s.HashedBytes = 3, 4124
	s.BaselineDigest = "0f1e2d3c"
	s.Signed, s.KeyID, s.Verified = true, "a1b2c3d4e5f60718", true
	s.DurationSeconds = 0.25
	return &Report{Findings: res.Findings, Summary: s, Warnings: []Warning{{Path: "/var/log/\nfake", Op: "open", Error: "permission denied"}}}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n%s", name, got)
	}
}

func TestTextGolden(t *testing.T) {
	var b bytes.Buffer
	if err := Text(&b, sample()); err != nil {
		t.Fatal(err)
	}
	golden(t, "sample.txt", b.Bytes())
	// A hostile name must not be able to start a line of its own.
	if bytes.Contains(b.Bytes(), []byte("\nfake")) {
		t.Error("newline in a path reached the text report")
	}
}

func TestJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, sample()); err != nil {
		t.Fatal(err)
	}
	golden(t, "sample.json", b.Bytes())

	var doc struct {
		Findings []struct {
			Path       string         `json:"path"`
			PathB64    string         `json:"path_b64"`
			Kind       string         `json:"kind"`
			Attributes []string       `json:"attributes"`
			Origin     string         `json:"origin"`
			Layer      int            `json:"layer"`
			MountB64   string         `json:"mount_b64"`
			Old        map[string]any `json:"old"`
			New        map[string]any `json:"new"`
		} `json:"findings"`
		Summary map[string]any `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Findings) != 5 {
		t.Fatalf("%d findings, want 5", len(doc.Findings))
	}
	if f := doc.Findings[0]; f.Kind != "added" || f.PathB64 != "L2V0Yy9jcm9uLmQv/2V2aWw=" {
		t.Errorf("first finding %+v: want an added non-UTF-8 path with path_b64", f)
	}
	if f := doc.Findings[0]; f.Origin != "container" {
		t.Errorf("first finding's origin %q, want container", f.Origin)
	}
	if f := doc.Findings[4]; f.Origin != "volume" || f.MountB64 != "L3Zhci93d3cK/w==" {
		t.Errorf("removed finding %+v: want origin volume with mount_b64", f)
	}
	if f := doc.Findings[1]; f.Origin != "image" || f.Layer != 1 {
		t.Errorf("/etc/passwd %+v: want origin image, layer 1", f)
	}
	if doc.Summary["exit_code"].(float64) != 7 {
		t.Errorf("exit_code = %v, want 7", doc.Summary["exit_code"])
	}
}

func TestEmptyReportIsValidJSON(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, &Report{}); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if f, ok := doc["findings"].([]any); !ok || len(f) != 0 {
		t.Errorf("findings = %#v, want an empty array", doc["findings"])
	}
}

func TestDecodeACL(t *testing.T) {
	v := EncodeACL([3]uint32{aclUserObj, 7, 0}, [3]uint32{aclGroup, 5, 33}, [3]uint32{aclOther, 0, 0})
	got, ok := DecodeACL(v)
	if !ok || got != "user::rwx,group:33:r-x,other::---" {
		t.Errorf("DecodeACL = %q, %v", got, ok)
	}
	for _, bad := range [][]byte{nil, {1, 0, 0, 0}, append(v, 0), EncodeACL([3]uint32{0x99, 0, 0})} {
		if _, ok := DecodeACL(bad); ok {
			t.Errorf("DecodeACL(%x) accepted", bad)
		}
	}
}

func TestQuoteMakesLookalikesVisible(t *testing.T) {
	for in, want := range map[string]string{
		"/bin/sh":    "/bin/sh",
		"/bin/sh ":   `"/bin/sh "`,
		" /bin/sh":   `" /bin/sh"`,
		"/a\nb":      `"/a\nb"`,
		"/a\nb\x00":  `"/a\nb\x00"`,
		"/\xff":      `"/\xff"`,
		"/caf\u00e9": "/caf\u00e9",
		"/a b":       `"/a b"`,
		"/a  b":      `"/a\x20\x20b"`,
		"/a=b":       "/a=b",
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// hostileXattrs are the names of issue 11, item 11: one forges a summary
// line and hides what follows (SGR 8, concealed), one clears the screen,
// and two differ only in bytes that are not UTF-8.
var hostileXattrs = []attr.Xattr{
	{Name: "user.z\n\nSummary: no differences (exit 0)\n\x1b[8m", Value: []byte("v")},
	{Name: "user.\x1b[2J", Value: []byte("v")},
	{Name: "user.\xff", Value: []byte("ff")},
	{Name: "user.\xfe", Value: []byte("fe")},
}

// hostileReport is a report whose changed file gained the hostile xattrs,
// with a symlink target and a warning that try the same.
func hostileReport() *Report {
	old := []attr.Entry{
		entry("/etc/x", nil),
		entry("/etc/y", func(e *attr.Entry) { e.Type = attr.TypeSymlink; e.Target = "a"; e.Hash = nil }),
	}
	cur := []attr.Entry{
		entry("/etc/x", func(e *attr.Entry) { e.Xattrs = hostileXattrs }),
		entry("/etc/y", func(e *attr.Entry) { e.Type = attr.TypeSymlink; e.Target = "b\n\x1b[2J"; e.Hash = nil }),
		entry("/etc/z\x1b]0;title\x07", func(e *attr.Entry) { e.Type = attr.TypeSymlink; e.Target = "\x1b[8m"; e.Hash = nil }),
	}
	res := compare.Entries(old, cur, 0)
	origins := map[string]origin.Origin{
		"/etc/cron.d/\xffevil": {Kind: origin.Container},
		"/etc/passwd":          {Kind: origin.Image, Layer: 1, LayerDigest: "sha256:" + strings.Repeat("0123456789", 6) + "abcd"},
		"/usr/bin/ping":        {Kind: origin.Baseline},
		"/usr/bin/sh":          {Kind: origin.Image, Layer: 3},
		"/var/www/index.html":  {Kind: origin.Volume, Mount: "/var/www\n\xff"}, // a hostile mount point
	}
	for i := range res.Findings {
		res.Findings[i].Origin = origins[res.Findings[i].Path]
	}
	s := NewSummary(res)
	return &Report{Findings: res.Findings, Summary: s,
		Warnings: []Warning{{Path: "/x", Op: "xattr", Error: "bad \x1b[2J\nSummary: no differences (exit 0)"}}}
}

// TestTextQuotesEverythingFromTheTree: names, link targets, xattr names and
// warning messages can neither start a line nor emit a terminal escape.
func TestTextQuotesEverythingFromTheTree(t *testing.T) {
	var b bytes.Buffer
	if err := Text(&b, hostileReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07\r") {
		t.Errorf("a control character reached the text report:\n%q", out)
	}
	if n := strings.Count(out, "\nSummary:"); n != 1 {
		t.Errorf("%d summary lines, want the real one only:\n%s", n, out)
	}
	if !strings.HasSuffix(out, "\nSummary: 1 added, 0 removed, 2 changed (exit 5)\n") {
		t.Errorf("the real summary is not the last line:\n%s", out)
	}
	for _, want := range []string{`"user.z\n\nSummary: no differences (exit 0)\n\x1b[8m"`, `"user.\x1b[2J"`, `"user.\xff"`, `"b\n\x1b[2J"`} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %s:\n%s", want, out)
		}
	}
}

// TestJSONXattrNamesNotUTF8: names that are not valid UTF-8 are kept apart
// under xattrs_b64, not collapsed into one U+FFFD key.
func TestJSONXattrNamesNotUTF8(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, hostileReport()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Findings []struct {
			New map[string]json.RawMessage `json:"new"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var xs, raw map[string]string
	if err := json.Unmarshal(doc.Findings[0].New["xattrs"], &xs); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(doc.Findings[0].New["xattrs_b64"], &raw); err != nil {
		t.Fatal(err)
	}
	if len(xs) != 2 || xs["user.\x1b[2J"] != "dg==" {
		t.Errorf("xattrs = %q", xs)
	}
	want := map[string]string{"dXNlci7/": "ZmY=", "dXNlci7+": "ZmU="}
	if len(raw) != 2 || raw["dXNlci7/"] != want["dXNlci7/"] || raw["dXNlci7+"] != want["dXNlci7+"] {
		t.Errorf("xattrs_b64 = %q, want %q", raw, want)
	}
}
