package evidence

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/compare"
)

var now = time.Date(2026, 12, 3, 13, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

func open(t *testing.T, lim Limits) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "evidence")
	s, err := Open(dir, lim, clock)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func capture(t *testing.T, s *Store, path string, content, original []byte) *Record {
	t.Helper()
	rec, err := s.Capture(Source{Path: path, Kind: compare.Changed, Content: bytes.NewReader(content), Size: int64(len(content)), Original: original})
	if err != nil {
		t.Fatalf("Capture: %v", err)
	}
	return rec
}

func object(t *testing.T, dir, name string) []byte {
	t.Helper()
	f, err := OpenObject(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCaptureKeepsBytesAndDiff(t *testing.T) {
	s, dir := open(t, Limits{})
	rec := capture(t, s, "/www/index.html", []byte("Hacked\n"), []byte("Hello, world!\n"))
	if rec.Result != ResultKept || rec.Type != TypeText || rec.Size != 7 {
		t.Fatalf("record %+v", rec)
	}
	if got := object(t, dir, rec.Object); string(got) != "Hacked\n" {
		t.Errorf("kept %q", got)
	}
	if rec.Object != "sha256-"+rec.SHA256 {
		t.Errorf("object %s is not named by the hash %s", rec.Object, rec.SHA256)
	}
	diff := string(object(t, dir, rec.Diff))
	for _, want := range []string{"--- /www/index.html (baseline)", "+++ /www/index.html (found)", "-Hello, world!\n", "+Hacked\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	if want := `-Hello, world!\n+Hacked`; rec.Excerpt != want {
		t.Errorf("excerpt %q, want %q", rec.Excerpt, want)
	}
	recs, more, err := List(dir, 10)
	if err != nil || more != 0 || len(recs) != 1 || recs[0].ID != rec.ID || recs[0].Excerpt != rec.Excerpt {
		t.Fatalf("List: %+v %d %v", recs, more, err)
	}
	got, err := Load(dir, rec.ID)
	if err != nil || got.SHA256 != rec.SHA256 || got.Path != rec.Path || got.Diff != rec.Diff {
		t.Fatalf("Load: %+v %v", got, err)
	}
}

// The excerpt goes into log lines and Events: whatever the file holds, it
// is one printable line.
func TestExcerptEscapesHostileContent(t *testing.T) {
	s, _ := open(t, Limits{})
	hostile := "\x1b]0;owned\x07\x1b[2J\r\nfake log line\u202eevil\n" + strings.Repeat("é", 300) + "\n"
	rec := capture(t, s, "/etc/motd", []byte(hostile), []byte("welcome\n"))
	if rec.Diff == "" {
		t.Fatal("no diff of a text file")
	}
	for _, bad := range []string{"\x1b", "\n", "\r", "\x07", "\u202e"} {
		if strings.Contains(rec.Excerpt, bad) {
			t.Errorf("excerpt holds %q: %q", bad, rec.Excerpt)
		}
	}
	if !strings.Contains(rec.Excerpt, `\x1b]0;owned`) || !strings.Contains(rec.Excerpt, `\u202e`) {
		t.Errorf("excerpt does not show the escapes: %q", rec.Excerpt)
	}
	if !strings.HasSuffix(rec.Excerpt, "...") || len(rec.Excerpt) > 4*ExcerptBytes+3 {
		t.Errorf("excerpt not bounded (%d bytes): %q", len(rec.Excerpt), rec.Excerpt)
	}
}

func TestEscapeCutsAtRuneBoundary(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"abc", 5, "abc"},
		{"ééé", 5, "éé..."},
		{"a\xffb", 3, `a\xffb`},
		{"line\nnext", 100, `line\nnext`},
	} {
		if got := Escape(tc.in, tc.max); got != tc.want {
			t.Errorf("Escape(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestBinaryHasTypeNoDiff(t *testing.T) {
	s, dir := open(t, Limits{})
	elf := append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...)
	rec := capture(t, s, "/tmp/x", elf, []byte("#!/bin/sh\necho hi\n"))
	if rec.Type != TypeELF || rec.Diff != "" || rec.Excerpt != "elf, 107 bytes" {
		t.Fatalf("record %+v", rec)
	}
	if !bytes.Equal(object(t, dir, rec.Object), elf) {
		t.Error("the ELF's bytes are not kept")
	}
	for b, want := range map[string]Type{"": TypeEmpty, "#!/bin/sh\n": TypeScript, "a\x00b": TypeBinary, "\xff\xfe": TypeBinary, "plain\n": TypeText} {
		if got := Sniff([]byte(b), int64(len(b))); got != want {
			t.Errorf("Sniff(%q) = %s, want %s", b, got, want)
		}
	}
}

func TestPerFileCap(t *testing.T) {
	s, dir := open(t, Limits{MaxFileBytes: 100})
	big := bytes.Repeat([]byte("x"), 300)
	rec := capture(t, s, "/big", big, nil)
	if rec.Result != ResultTruncated || !rec.Truncated || rec.Size != 300 {
		t.Fatalf("record %+v", rec)
	}
	if got := object(t, dir, rec.Object); len(got) != 100 {
		t.Errorf("kept %d bytes, want 100", len(got))
	}
}

// The total cap holds across restarts: Open counts what is kept.
func TestTotalCap(t *testing.T) {
	s, dir := open(t, Limits{MaxBytes: 150})
	if r := capture(t, s, "/a", bytes.Repeat([]byte("a"), 100), nil); r.Result != ResultKept {
		t.Fatalf("first: %+v", r)
	}
	// The same bytes again cost nothing: content-addressed.
	if r := capture(t, s, "/a2", bytes.Repeat([]byte("a"), 100), nil); r.Result != ResultKept {
		t.Fatalf("same bytes: %+v", r)
	}
	s2, err := Open(dir, Limits{MaxBytes: 150}, clock)
	if err != nil {
		t.Fatal(err)
	}
	r := capture(t, s2, "/b", bytes.Repeat([]byte("b"), 100), nil)
	if r.Result != ResultOverTotal || r.Object != "" || r.SHA256 == "" || r.Type != TypeText {
		t.Fatalf("over the total: %+v", r)
	}
	recs, _, err := List(dir, 10)
	if err != nil || len(recs) != 3 {
		t.Fatalf("records %d %v, want 3 (the one over the total is recorded)", len(recs), err)
	}
}

func TestRecordCap(t *testing.T) {
	s, dir := open(t, Limits{MaxRecords: 2})
	for i := range 3 {
		r := capture(t, s, fmt.Sprintf("/f%d", i), []byte{byte('a' + i)}, nil)
		if want := map[bool]Result{true: ResultKept, false: ResultOverCount}[i < 2]; r.Result != want {
			t.Errorf("capture %d: %s, want %s", i, r.Result, want)
		}
	}
	recs, more, err := List(dir, 1)
	if err != nil || len(recs) != 1 || more != 1 || recs[0].Path != "/f1" {
		t.Fatalf("List(1): %+v %d %v", recs, more, err)
	}
}

func TestUnreadable(t *testing.T) {
	s, _ := open(t, Limits{})
	rec, err := s.Capture(Source{Path: "/gone", Kind: compare.Changed, Err: os.ErrNotExist})
	if err != nil || rec.Result != ResultUnreadable || rec.Error == "" || rec.Object != "" {
		t.Fatalf("%+v %v", rec, err)
	}
}

// On a full disk the capture says so (ErrNoSpace), and the record still
// comes back for the caller to log.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test mounts a tmpfs: run it as root")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	s, err := Open(filepath.Join(mnt, "evidence"), Limits{}, clock)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Capture(Source{Path: "/big", Kind: compare.Added, Content: bytes.NewReader(make([]byte, 200<<10)), Size: 200 << 10})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Capture on a full disk: %v, want ErrNoSpace", err)
	}
	if rec == nil || rec.Result != ResultError || rec.SHA256 == "" || rec.Object != "" {
		t.Fatalf("record %+v", rec)
	}
	if left, _ := filepath.Glob(filepath.Join(mnt, "evidence", "objects", "*")); len(left) != 0 {
		t.Errorf("a partial object is left: %v", left)
	}
}

func exportOf(t *testing.T, dir string, key ed25519.PrivateKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Export(&buf, dir, key, "ns/pod", now); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExportVerify(t *testing.T) {
	s, dir := open(t, Limits{})
	capture(t, s, "/www/index.html", []byte("Hacked\n"), []byte("Hello, world!\n"))
	capture(t, s, "/tmp/x", []byte("\x7fELF..."), nil)
	pub, priv, _ := ed25519.GenerateKey(nil)
	other, _, _ := ed25519.GenerateKey(nil)
	tarball := exportOf(t, dir, priv)

	m, err := Verify(bytes.NewReader(tarball), pub)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if m.Subject != "ns/pod" || !m.Created.Equal(now) || len(m.Files) != 5 || m.KeyID == "" {
		t.Errorf("manifest %+v (want 2 records, 3 objects)", m)
	}
	if _, err := Verify(bytes.NewReader(tarball), other); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another key: %v, want ErrBadSignature", err)
	}
	if _, err := Verify(bytes.NewReader(tarball), nil); err != nil {
		t.Errorf("without a key (hashes only): %v", err)
	}
	if _, err := Verify(bytes.NewReader(exportOf(t, dir, nil)), pub); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned with a key: %v, want ErrUnsigned", err)
	}
	// Change one byte of the kept page's content in the tar.
	bad := bytes.Replace(tarball, []byte("Hacked\n"), []byte("Hackeq\n"), 1)
	if bytes.Equal(bad, tarball) {
		t.Fatal("the page is not in the tar")
	}
	if _, err := Verify(bytes.NewReader(bad), pub); !errors.Is(err, ErrTampered) {
		t.Errorf("a changed object: %v, want ErrTampered", err)
	}
	// Drop the last file.
	if _, err := Verify(bytes.NewReader(dropLast(t, tarball)), pub); !errors.Is(err, ErrTampered) {
		t.Errorf("a missing file: %v, want ErrTampered", err)
	}
}

// dropLast rewrites an export without its last file.
func dropLast(t *testing.T, b []byte) []byte {
	t.Helper()
	type file struct {
		hdr  *tar.Header
		body []byte
	}
	var files []file
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		files = append(files, file{hdr, body})
	}
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, f := range files[:len(files)-1] {
		tw.WriteHeader(f.hdr)
		tw.Write(f.body)
	}
	tw.Close()
	return out.Bytes()
}
