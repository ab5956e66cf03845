package cli

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/baseline"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckFullAndQuickAgree checks that a full check reports what a quick
// check, which reads the baseline twice (once for its index), reports, and
// that both count the baseline's entries.
func TestCheckFullAndQuickAgree(t *testing.T) {
	dir, work := fixture(t), t.TempDir()
	writeFiles(t, dir, map[string]string{"alpha": "a", "bravo": "b", "charlie": "c"})
	base := filepath.Join(work, "b.pfb")
	code, out, e := run(t, "baseline", "--root", dir, "--out", base)
	if code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	// "wrote baseline PATH: N entries, ..."
	n, err := strconv.Atoi(strings.Fields(strings.SplitN(out, ": ", 2)[1])[0])
	if err != nil {
		t.Fatalf("baseline said %q: %v", out, err)
	}
	if err := os.Remove(filepath.Join(dir, "alpha")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"bravo": "changed", "delta": "new"})

	type result struct {
		Findings []map[string]any `json:"findings"`
		Summary  map[string]any   `json:"summary"`
	}
	check := func(quick bool) (int, result) {
		args := []string{"check", "--root", dir, "--baseline", base, "--format", "json"}
		if quick {
			args = append(args, "--quick")
		}
		code, out, e := run(t, args...)
		var r result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("check (quick %v) = %d, %v\n%s", quick, code, err, e)
		}
		return code, r
	}
	fullCode, full := check(false)
	quickCode, quick := check(true)
	if fullCode != ExitAdded|ExitRemoved|ExitChanged || quickCode != fullCode {
		t.Errorf("full check exit %d, quick %d, want %d", fullCode, quickCode, ExitAdded|ExitRemoved|ExitChanged)
	}
	if !reflect.DeepEqual(full.Findings, quick.Findings) {
		t.Errorf("findings differ:\nfull  %v\nquick %v", full.Findings, quick.Findings)
	}
	if len(full.Findings) < 3 {
		t.Errorf("findings %v, want alpha removed, bravo changed, delta added", full.Findings)
	}
	for _, r := range []result{full, quick} {
		if got := r.Summary["baseline_entries"]; got != float64(n) {
			t.Errorf("baseline_entries = %v, want %d", got, n)
		}
	}
}

// corruptEntry rewrites an unsigned baseline file with the body changed by
// replace, and with its digest recomputed: a file that authenticates but
// does not decode. It knows the layout of an unsigned header: magic (8),
// version (2), flags (2), payload length (8), digest (32).
func corruptEntry(t *testing.T, path, old, replacement string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// An unsigned version 2 header: magic, version, flags (12 bytes), the
	// header record's length and the record, payload length and digest.
	recordEnd := 16 + int(binary.BigEndian.Uint32(data[12:]))
	headerSize := recordEnd + 40
	zr, err := gzip.NewReader(bytes.NewReader(data[headerSize:]))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(body, []byte(old)) != 1 {
		t.Fatalf("the body does not hold %q once", old)
	}
	body = bytes.Replace(body, []byte(old), []byte(replacement), 1)
	var payload bytes.Buffer
	zw := gzip.NewWriter(&payload)
	zw.Write(body)
	zw.Close()
	header := data[:headerSize:headerSize]
	binary.BigEndian.PutUint64(header[recordEnd:], uint64(payload.Len()))
	sum := sha256.Sum256(payload.Bytes())
	copy(header[recordEnd+8:], sum[:])
	if err := os.WriteFile(path, append(header, payload.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCheckCorruptEntry checks that an entry that fails to decode after
// others did fails the check with ExitCorrupt and no report: never a
// partial comparison, which would show the rest of the baseline as added.
func TestCheckCorruptEntry(t *testing.T) {
	dir, work := fixture(t), t.TempDir()
	writeFiles(t, dir, map[string]string{"alpha": "a", "bravo": "b", "charlie": "c", "delta": "d"})
	base := filepath.Join(work, "b.pfb")
	if code, _, e := run(t, "baseline", "--root", dir, "--out", base); code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	// "/charlie" becomes "/abcdefg", out of order after "/bravo".
	corruptEntry(t, base, "charlie", "abcdefg")
	for _, args := range [][]string{nil, {"--quick"}, {"--format", "json"}} {
		code, out, e := run(t, append([]string{"check", "--root", dir, "--baseline", base}, args...)...)
		if code != ExitCorrupt || out != "" || !strings.Contains(e, "out of order") || !strings.Contains(e, base) {
			t.Errorf("check %q of a baseline with a bad entry = %d\nstdout %q\nstderr %q", args, code, out, e)
		}
	}
}

// TestStreamedBaselineFiles checks the files the streaming writer leaves:
// the same tree gives the same bytes from baseline (at the same
// SOURCE_DATE_EPOCH) and the same payload from an update that finds
// nothing (only its serial moves on), and a scan that fails leaves the old
// file and no temporary file.
func TestStreamedBaselineFiles(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1764750000")
	dir, work := fixture(t), t.TempDir()
	writeFiles(t, dir, map[string]string{"alpha": "a", "bravo": "b"})
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{"alpha", "bravo", "etc/app.conf", "etc", "."} {
		// Settled files: not racy, so that the bytes do not depend on when
		// the scan ran.
		if err := os.Chtimes(filepath.Join(dir, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // ctime too
	a, b := filepath.Join(work, "a.pfb"), filepath.Join(work, "b.pfb")
	for _, out := range []string{a, b} {
		if code, _, e := run(t, "baseline", "--root", dir, "--out", out); code != 0 {
			t.Fatalf("baseline: %d %s", code, e)
		}
	}
	first, _ := os.ReadFile(a)
	if second, _ := os.ReadFile(b); len(first) == 0 || !bytes.Equal(first, second) {
		t.Fatal("two baselines of one tree differ")
	}
	orig, err := baseline.ReadFile(a, baseline.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, quick := range []string{"--quick=false", "--quick"} {
		if code, _, e := run(t, "update", "--root", dir, "--baseline", b, quick); code != 0 {
			t.Fatalf("update %s: %d %s", quick, code, e)
		}
		got, err := baseline.ReadFile(b, baseline.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != orig.Digest {
			t.Errorf("update %s of an unchanged tree changed the entries", quick)
		}
		if want := orig.Serial + uint64(i) + 1; got.Serial != want || got.Subject != orig.Subject {
			t.Errorf("update %s: serial %d subject %q, want %d %q", quick, got.Serial, got.Subject, want, orig.Subject)
		}
	}
	code, _, e := run(t, "baseline", "--root", filepath.Join(dir, "missing"), "--out", a)
	if code != ExitScan {
		t.Fatalf("baseline of a missing root = %d %s", code, e)
	}
	if got, _ := os.ReadFile(a); !bytes.Equal(got, first) {
		t.Error("a failed baseline replaced the old file")
	}
	if code, _, e := run(t, "baseline", "--root", dir, "--out", filepath.Join(work, "no", "dir.pfb")); code != ExitIO {
		t.Errorf("baseline into a missing directory = %d %s, want %d", code, e, ExitIO)
	}
	names, _ := os.ReadDir(work)
	for _, n := range names {
		if strings.Contains(n.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", n.Name())
		}
	}
}

// TestStreamedBaselineFullDisk fills the file system the baseline is
// streamed to: baseline and update fail with ExitIO naming the file, the
// old baseline stays as it was (and still checks clean), and no temporary
// file is left. It mounts a small tmpfs, so it needs root, as make test.
func TestStreamedBaselineFullDisk(t *testing.T) {
	small, big := fixture(t), t.TempDir()
	// 4,000 files: their hashes alone are 128 KiB, incompressible.
	for i := range 4000 {
		if err := os.WriteFile(filepath.Join(big, "f"+strconv.Itoa(i)), []byte(strconv.Itoa(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	work := t.TempDir()
	if err := unix.Mount("tmpfs", work, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("this test needs root to mount a small tmpfs (make test runs as root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(work, unix.MNT_DETACH) })
	base := filepath.Join(work, "b.pfb")
	if code, _, e := run(t, "baseline", "--root", small, "--out", base); code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	old, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"baseline", "--root", big, "--out", base},
		{"update", "--root", big, "--baseline", base},
		{"update", "--root", big, "--baseline", base, "--quick"},
	} {
		code, _, e := run(t, args...)
		if code != ExitIO || !strings.Contains(e, "no space left on device") || !strings.Contains(e, base) {
			t.Errorf("%s on a full disk = %d %q, want %d, ENOSPC naming the file", args[0], code, e, ExitIO)
		}
		if got, _ := os.ReadFile(base); !bytes.Equal(got, old) {
			t.Fatalf("%q on a full disk changed the old baseline", args)
		}
		names, _ := os.ReadDir(work)
		if len(names) != 1 {
			t.Errorf("%q left %d files, want only b.pfb: %v", args, len(names), names)
		}
	}
	if code, out, e := run(t, "check", "--root", small, "--baseline", base); code != 0 {
		t.Errorf("check with the kept baseline = %d\n%s%s", code, out, e)
	}
}

// TestCheckIncomplete (issue 11, item 9): a check that could not compare the
// whole tree never exits 0. A change beneath limits.maxDepth used to pass
// with exit 0; one path longer than PATH_MAX made baseline and update fail
// for the whole tree (exit 18). Now the deep change exits 8 (incomplete),
// the long path is left out with a warning while everything else is
// baselined and compared, and a real difference still wins.
func TestCheckIncomplete(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	deep := strings.Repeat("d/", 20) + "deep.conf" // directories down to depth 20
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(deep)), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{deep: "v1", "top.conf": "v1"})
	pol := filepath.Join(work, "policy.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\nrules: [{path: /, preset: ReadOnly}]\nlimits: {maxDepth: 18}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A path of 17 components of 255 bytes: 4,352 bytes, over PATH_MAX, made
	// one component at a time (a path that long cannot be named at once).
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 17 {
		name := strings.Repeat(string(rune('a'+i)), 255)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	t.Cleanup(func() { removeDeep(t, dir) })
	base := filepath.Join(work, "b.pfb")
	code, out, e := run(t, "baseline", "--root", dir, "--out", base, "--policy", pol)
	if code != ExitOK || !strings.Contains(e, "over the limit of 4096") || !strings.Contains(e, "over the limit of 18") {
		t.Fatalf("baseline = %d\n%s\n%s; want 0 with warnings about the long path and the depth", code, out, e)
	}
	code, out, e = run(t, "check", "--root", dir, "--baseline", base, "--policy", pol)
	if code != ExitIncomplete || !strings.Contains(out, "Summary: INCOMPLETE: no differences in what was compared") {
		t.Fatalf("check of an unchanged tree = %d\n%s\n%s; want %d", code, out, e, ExitIncomplete)
	}
	// The change beneath maxDepth is not seen, but no longer passes as 0.
	writeFiles(t, dir, map[string]string{deep: "v2"})
	if code, out, _ := run(t, "check", "--root", dir, "--baseline", base, "--policy", pol, "--format", "json"); code != ExitIncomplete ||
		!strings.Contains(out, `"exit_code": 8`) || !strings.Contains(out, `"incomplete": 2`) {
		t.Fatalf("check after a deep change = %d\n%s; want %d, incomplete 2", code, out, ExitIncomplete)
	}
	// A difference in what is compared wins over incompleteness.
	writeFiles(t, dir, map[string]string{"top.conf": "v2"})
	if code, out, _ := run(t, "check", "--root", dir, "--baseline", base, "--policy", pol); code != ExitChanged ||
		!strings.Contains(out, "INCOMPLETE: 2 warnings") {
		t.Fatalf("check after a change = %d\n%s; want %d and the incompleteness stated", code, out, ExitChanged)
	}
	if code, out, e := run(t, "update", "--root", dir, "--baseline", base, "--policy", pol); code != ExitOK {
		t.Fatalf("update = %d\n%s\n%s", code, out, e)
	}
}

// removeDeep removes what TestCheckIncomplete made beneath dir, which
// os.RemoveAll cannot name whole: it goes down with directory handles.
func removeDeep(t *testing.T, dir string) {
	var rm func(fd int)
	rm = func(fd int) {
		f := os.NewFile(uintptr(fd), "")
		defer f.Close()
		names, _ := f.Readdirnames(-1)
		for _, n := range names {
			if unix.Unlinkat(fd, n, 0) == nil {
				continue
			}
			if sub, err := unix.Openat(fd, n, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_NOFOLLOW, 0); err == nil {
				rm(sub)
			}
			if err := unix.Unlinkat(fd, n, unix.AT_REMOVEDIR); err != nil {
				t.Errorf("remove %s: %v", n, err)
			}
		}
	}
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	rm(fd)
}

// TestCheckGrowingIsAppendOnly (issue 11, item 10): a Growing file may grow,
// but what it held at baseline time must stay: overwriting an earlier line
// and appending 2 bytes passed (exit 0); now it is a changed hash (exit 4).
// A plain append still passes, in full and quick checks, and update accepts
// the grown file as the new baseline.
func TestCheckGrowingIsAppendOnly(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "var", "log"), 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "var", "log", "app.log")
	writeFiles(t, dir, map[string]string{"var/log/app.log": "GET / 200\nGET /admin 403\n"})
	base := filepath.Join(work, "b.pfb")
	if code, out, e := run(t, "baseline", "--root", dir, "--out", base); code != ExitOK {
		t.Fatalf("baseline = %d\n%s\n%s", code, out, e)
	}
	appendTo := func(s string) {
		f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	appendTo("GET /x 200\n")
	for _, quick := range []string{"--quick=false", "--quick=true"} {
		if code, out, e := run(t, "check", "--root", dir, "--baseline", base, quick); code != ExitOK {
			t.Fatalf("check %s after an append = %d\n%s\n%s", quick, code, out, e)
		}
	}
	// The attacker's edit: the 403 becomes a 200, in place, then 2 bytes.
	f, err := os.OpenFile(log, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("200"), int64(len("GET / 200\nGET /admin "))); err != nil {
		t.Fatal(err)
	}
	f.Close()
	appendTo("ok")
	for _, quick := range []string{"--quick=false", "--quick=true"} {
		code, out, e := run(t, "check", "--root", dir, "--baseline", base, quick)
		if code != ExitChanged || !strings.Contains(out, "/var/log/app.log  sha256") {
			t.Fatalf("check %s after a rewrite = %d\n%s\n%s; want %d, sha256 changed", quick, code, out, e, ExitChanged)
		}
	}
	if code, out, e := run(t, "update", "--root", dir, "--baseline", base); code != ExitOK {
		t.Fatalf("update = %d\n%s\n%s", code, out, e)
	}
	appendTo("GET /y 200\n")
	if code, out, e := run(t, "check", "--root", dir, "--baseline", base); code != ExitOK {
		t.Fatalf("check after update and an append = %d\n%s\n%s", code, out, e)
	}
}
