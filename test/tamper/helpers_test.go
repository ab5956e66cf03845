// Package tamper_test drives podfim's CLI end to end against real file trees
// that are tampered with in every way an attacker (or a careless operator)
// can: content, times, permissions, owners, ACLs, capabilities, extended
// attributes, inodes, links, file types, odd names and symlinks that point
// out of the tree. Every scenario is checked three times (quick while the
// tampered files are racy, then full and quick once they are settled), each
// asserting the exact exit status and the exact set of findings.
//
// The tests need root (chown, mknod, security.* xattrs). As another user
// they fail unless PODFIM_ALLOW_NONROOT=1, which skips only the scenarios
// that need root.
package tamper_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/cli"
)

// cliTimeout bounds one podfim command. A command that outlives it (a scan
// blocked opening a FIFO, say) fails the test instead of hanging it.
const cliTimeout = 20 * time.Second

// racyWindow is how long after its last change a file must have been left
// alone for a scan to record it as settled (not racy); quick checks reuse
// the baseline hash only of settled files. The scanner's window is 1 s.
const racyWindow = 1100 * time.Millisecond

// isRoot reports whether the tests run with root privileges. Without them
// the test fails, unless PODFIM_ALLOW_NONROOT=1 says to skip only the
// scenarios that need root. In CI (CI set) nothing may be skipped: the
// variable is ignored and the test fails.
func isRoot(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() == 0 {
		return true
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("the tamper tests need root in CI (chown, mknod, security.* xattrs); CI runs .ci/run as root")
	}
	if os.Getenv("PODFIM_ALLOW_NONROOT") != "1" {
		t.Fatalf("the tamper tests need root (chown, mknod, security.* xattrs); run them as root, " +
			"or set PODFIM_ALLOW_NONROOT=1 to skip the scenarios that need it")
	}
	return false
}

// Names of odd files in /odd: a newline, a trailing space, invalid UTF-8, a
// leading dash and the longest name a Linux file system allows.
var oddNames = []string{"new\nline", "trailing space ", "bad\xffbyte", "-rf", strings.Repeat("L", 255)}

// The symlinks in /esc. Each one points at something the scanner must never
// read: the scanner's own environment and root, host files, a climb out of
// the tree, a directory outside the tree (set per fixture) and the tree
// itself (a loop).
var escapeLinks = map[string]string{
	"/esc/environ": "/proc/self/environ",
	"/esc/passwd":  "/proc/self/root/etc/passwd",
	"/esc/shadow":  "/etc/shadow",
	"/esc/rel":     "../../../../etc/passwd",
	"/esc/loop":    "..",
	// "/esc/outdir": fixture.outside
}

// fixture is one tree to tamper with, and its surroundings.
type fixture struct {
	t        testing.TB
	base     string // holds everything below
	root     string // the scanned tree
	outside  string // a directory outside the tree with secret.txt, target of /esc/outdir
	outside2 string // another one, with a name of the same length
	baseline string // the baseline file
	device   bool   // /srv/null exists (char 1:3; only as root)
}

// newFixture builds this tree under a fresh temporary directory:
//
//	/bin/tool              0755 executable
//	/etc/app.conf          0644
//	/etc/motd              0644 "Hello, world!\n"
//	/etc/note              0644 with xattr user.note=v1
//	/etc/current           -> app.conf
//	/data/a, /data/b       one inode, two links
//	/data/blob             4 KiB
//	/data/fifo             FIFO
//	/srv/www/index.html
//	/srv/www/sub/page.html
//	/srv/www-old, /srv/www.d/conf   sort between /srv/www and its children byte-wise
//	/etc/empty             0644, empty
//	/srv/null              char device 1:3 (root only)
//	/odd/<oddNames>
//	/esc/<escapeLinks>, /esc/outdir -> outside
//	/var/log/app.log       (Growing in the default policy)
//	/tmp/scratch           (ignored by the default policy)
func newFixture(t testing.TB, root bool) *fixture {
	t.Helper()
	base := t.TempDir()
	f := &fixture{
		t:        t,
		base:     base,
		root:     filepath.Join(base, "root"),
		outside:  filepath.Join(base, "outside1"),
		outside2: filepath.Join(base, "outside2"),
		baseline: filepath.Join(base, "base.pfb"),
	}
	for _, d := range []string{"", "/bin", "/etc", "/data", "/srv", "/srv/www", "/srv/www/sub", "/odd", "/esc", "/var", "/var/log", "/tmp"} {
		f.mkdir(d, 0o755)
	}
	f.write("/bin/tool", "#!/bin/sh\necho tool\n", 0o755)
	f.write("/etc/app.conf", "listen=8080\nroot=/srv/www\n", 0o644)
	f.write("/etc/motd", "Hello, world!\n", 0o644)
	f.write("/etc/note", "noted\n", 0o644)
	f.setxattr("/etc/note", "user.note", []byte("v1"))
	f.symlink("app.conf", "/etc/current")
	f.write("/data/a", "shared content\n", 0o644)
	f.link("/data/a", "/data/b")
	blob := make([]byte, 4096)
	for i := range blob {
		blob[i] = byte(i * 7)
	}
	f.write("/data/blob", string(blob), 0o644)
	f.mkfifo("/data/fifo")
	f.write("/srv/www/index.html", "<h1>Hello, world!</h1>\n", 0o644)
	f.write("/srv/www/sub/page.html", "<p>page</p>\n", 0o644)
	// '-' and '.' sort before '/': a merge that compares whole paths as
	// bytes instead of component-wise would pair these wrongly.
	f.write("/srv/www-old", "old\n", 0o644)
	f.mkdir("/srv/www.d", 0o755)
	f.write("/srv/www.d/conf", "conf\n", 0o644)
	f.write("/etc/empty", "", 0o644)
	if root {
		f.mknod("/srv/null", 1, 3)
		f.device = true
	}
	for i, n := range oddNames {
		f.write("/odd/"+n, strings.Repeat("odd", i+1)+"\n", 0o644)
	}
	for link, target := range escapeLinks {
		f.symlink(target, link)
	}
	for _, d := range []string{f.outside, f.outside2} {
		must(t, os.Mkdir(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "secret.txt"), []byte("outside the tree\n"), 0o644))
	}
	f.symlink(f.outside, "/esc/outdir")
	f.write("/var/log/app.log", "started\n", 0o644)
	f.write("/tmp/scratch", "scratch\n", 0o644)
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// p returns the absolute path of a tree path ("/etc/motd"). Names are used
// as raw bytes: nothing is cleaned.
func (f *fixture) p(rel string) string { return f.root + rel }

func (f *fixture) mkdir(rel string, mode os.FileMode) {
	f.t.Helper()
	must(f.t, os.Mkdir(f.p(rel), mode))
	f.chmod(rel, mode) // whatever the umask
}

// write creates or truncates a file in place (same inode) with the mode.
func (f *fixture) write(rel, content string, mode os.FileMode) {
	f.t.Helper()
	must(f.t, os.WriteFile(f.p(rel), []byte(content), mode&0o777))
	f.chmod(rel, mode)
}

func (f *fixture) appendTo(rel, content string) {
	f.t.Helper()
	fh, err := os.OpenFile(f.p(rel), os.O_WRONLY|os.O_APPEND, 0)
	must(f.t, err)
	_, err = fh.WriteString(content)
	must(f.t, errors.Join(err, fh.Close()))
}

func (f *fixture) read(rel string) string {
	f.t.Helper()
	b, err := os.ReadFile(f.p(rel))
	must(f.t, err)
	return string(b)
}

func (f *fixture) symlink(target, rel string) {
	f.t.Helper()
	must(f.t, os.Symlink(target, f.p(rel)))
}

func (f *fixture) link(old, rel string) {
	f.t.Helper()
	must(f.t, os.Link(f.p(old), f.p(rel)))
}

func (f *fixture) mkfifo(rel string) {
	f.t.Helper()
	must(f.t, unix.Mkfifo(f.p(rel), 0o644))
	f.chmod(rel, 0o644)
}

func (f *fixture) mknod(rel string, major, minor uint32) {
	f.t.Helper()
	must(f.t, unix.Mknod(f.p(rel), unix.S_IFCHR|0o644, int(unix.Mkdev(major, minor))))
	f.chmod(rel, 0o644)
}

func (f *fixture) remove(rel string) {
	f.t.Helper()
	must(f.t, os.Remove(f.p(rel)))
}

func (f *fixture) removeAll(rel string) {
	f.t.Helper()
	if _, err := os.Lstat(f.p(rel)); err != nil {
		f.t.Fatal(err)
	}
	must(f.t, os.RemoveAll(f.p(rel)))
}

func (f *fixture) rename(old, rel string) {
	f.t.Helper()
	must(f.t, os.Rename(f.p(old), f.p(rel)))
}

func (f *fixture) chmod(rel string, mode os.FileMode) {
	f.t.Helper()
	// os.Chmod takes setuid/setgid/sticky from os.ModeSetuid and friends,
	// not from 07000; the system call takes the bits as written.
	must(f.t, unix.Chmod(f.p(rel), uint32(mode)))
}

func (f *fixture) setxattr(rel, name string, value []byte) {
	f.t.Helper()
	if err := unix.Lsetxattr(f.p(rel), name, value, 0); err != nil {
		f.t.Fatalf("setxattr %s %s: %v", rel, name, err)
	}
}

func (f *fixture) lstat(rel string) unix.Stat_t {
	f.t.Helper()
	var st unix.Stat_t
	must(f.t, unix.Lstat(f.p(rel), &st))
	return st
}

// setTimes sets the access and modification times of a file (not a
// symlink); unix.UTIME_OMIT in Nsec leaves one alone.
func (f *fixture) setTimes(rel string, atime, mtime unix.Timespec) {
	f.t.Helper()
	must(f.t, unix.UtimesNano(f.p(rel), []unix.Timespec{atime, mtime}))
}

// keepTimes runs fn, then puts the access and modification times of rel
// back (the ctime cannot be put back: that is what catches this).
func (f *fixture) keepTimes(rel string, fn func()) {
	f.t.Helper()
	st := f.lstat(rel)
	fn()
	f.setTimes(rel, st.Atim, st.Mtim)
}

// replace atomically puts a new inode at rel: mk writes it at a temporary
// name in the same directory, then it is renamed over rel. Because the old
// inode is alive while the new one is made, the inode number always changes.
func (f *fixture) replace(rel string, mk func(tmp string)) {
	f.t.Helper()
	tmp := filepath.Dir(rel) + "/.podfim-tamper.tmp"
	mk(tmp)
	f.rename(tmp, rel)
}

// copyOver replaces rel with a copy of itself: same content, mode, owner
// and times, another inode.
func (f *fixture) copyOver(rel string) {
	f.t.Helper()
	st := f.lstat(rel)
	content := f.read(rel)
	f.replace(rel, func(tmp string) {
		f.write(tmp, content, os.FileMode(st.Mode&0o7777))
		must(f.t, os.Lchown(f.p(tmp), int(st.Uid), int(st.Gid)))
		f.setTimes(tmp, st.Atim, st.Mtim)
	})
}

// bindSocket leaves a Unix socket file at rel.
func (f *fixture) bindSocket(rel string) {
	f.t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(f.t, err)
	defer unix.Close(fd)
	must(f.t, unix.Bind(fd, &unix.SockaddrUnix{Name: f.p(rel)}))
}

// walkCount counts what a scan of the tree with the default policy must
// record: every entry, found without following symlinks, except the
// ignored /tmp and its contents. It includes the root itself.
func (f *fixture) walkCount() int {
	f.t.Helper()
	n := 0
	err := filepath.WalkDir(f.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == f.p("/tmp") {
			return filepath.SkipDir
		}
		n++
		return nil
	})
	must(f.t, err)
	return n
}

// unblockFIFOs opens every FIFO in the tree for writing and closes it, so a
// scanner stuck opening one for reading gets EOF.
func (f *fixture) unblockFIFOs() {
	_ = filepath.WalkDir(f.root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeNamedPipe != 0 {
			if fd, err := unix.Open(path, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
				unix.Close(fd)
			}
		}
		return nil
	})
}

// result is what one podfim command did.
type result struct {
	code           int
	stdout, stderr string
}

// podfim runs the CLI in process with a deadline. If it does not return in
// time, the test fails (after releasing any reader blocked on a FIFO of f).
func podfim(t *testing.T, f *fixture, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- cli.Run(ctx, args, &stdout, &stderr) }()
	select {
	case code := <-done:
		return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	case <-time.After(cliTimeout + 5*time.Second):
		if f != nil {
			f.unblockFIFOs()
		}
		t.Fatalf("podfim %q did not return within %v although its context expired: "+
			"the scan blocks (opening a FIFO or device?)", args, cliTimeout+5*time.Second)
		return result{}
	}
}

// makeBaseline records the fixture's baseline and checks that it recorded
// the whole tree and nothing more.
func (f *fixture) makeBaseline(t *testing.T, extra ...string) {
	t.Helper()
	args := append([]string{"baseline", "--root", f.root, "--out", f.baseline}, extra...)
	r := podfim(t, f, args...)
	if r.code != 0 {
		t.Fatalf("podfim baseline: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("podfim baseline wrote to stderr:\n%s", r.stderr)
	}
}

// jsonReport is the JSON report of a check (docs/report.md).
type jsonReport struct {
	Findings []jsonFinding `json:"findings"`
	Summary  struct {
		Added           int    `json:"added"`
		Removed         int    `json:"removed"`
		Changed         int    `json:"changed"`
		Total           int    `json:"total"`
		Omitted         int    `json:"omitted"`
		BaselineEntries int    `json:"baseline_entries"`
		ScannedEntries  int    `json:"scanned_entries"`
		Hashed          int64  `json:"hashed"`
		Reused          int64  `json:"reused_hashes"`
		Quick           bool   `json:"quick"`
		Root            string `json:"root"`
		BaselineDigest  string `json:"baseline_digest"`
		Signed          bool   `json:"signed"`
		KeyID           string `json:"key_id"`
		Verified        bool   `json:"signature_verified"`
		ExitCode        int    `json:"exit_code"`
	} `json:"summary"`
	Warnings []struct {
		Path  string `json:"path"`
		Op    string `json:"op"`
		Error string `json:"error"`
	} `json:"warnings"`
}

type jsonFinding struct {
	Path       string         `json:"path"`
	PathB64    string         `json:"path_b64"`
	Kind       string         `json:"kind"`
	Attributes []string       `json:"attributes"`
	Old        map[string]any `json:"old"`
	New        map[string]any `json:"new"`
}

// rawPath is the path of a finding as bytes: path_b64 when the path is not
// valid UTF-8 (path then holds replacement characters).
func (jf *jsonFinding) rawPath(t *testing.T) string {
	t.Helper()
	if jf.PathB64 == "" {
		return jf.Path
	}
	b, err := base64.StdEncoding.DecodeString(jf.PathB64)
	if err != nil {
		t.Fatalf("finding %q: path_b64 %q: %v", jf.Path, jf.PathB64, err)
	}
	return string(b)
}

// check runs a check with the JSON report and returns the exit status and
// the parsed report.
func (f *fixture) check(t *testing.T, quick bool, extra ...string) (int, *jsonReport) {
	t.Helper()
	args := []string{"check", "--root", f.root, "--baseline", f.baseline, "--format", "json"}
	if quick {
		args = append(args, "--quick")
	}
	r := podfim(t, f, append(args, extra...)...)
	if r.code >= 8 {
		t.Fatalf("podfim check: exit %d (an error)\nstderr:\n%s", r.code, r.stderr)
	}
	var rep jsonReport
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("podfim check: the report is not JSON: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	if dec.More() {
		t.Errorf("podfim check: more than one JSON document on stdout:\n%s", r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("podfim check wrote to stderr:\n%s", r.stderr)
	}
	if rep.Findings == nil || rep.Warnings == nil {
		t.Errorf("findings and warnings must be arrays, never null:\n%s", r.stdout)
	}
	return r.code, &rep
}

// want is one expected finding.
type want struct {
	path  string
	kind  string   // added | removed | changed
	attrs []string // changed: attributes that must be listed
	exact bool     // changed: and no others
}

func added(path string) want   { return want{path: path, kind: "added"} }
func removed(path string) want { return want{path: path, kind: "removed"} }

// changed expects exactly these attributes, in canonical order.
func changed(path string, attrs ...string) want {
	return want{path: path, kind: "changed", attrs: attrs, exact: true}
}

// changedAtLeast expects at least these attributes (the others depend on the
// file system or are not the point).
func changedAtLeast(path string, attrs ...string) want {
	return want{path: path, kind: "changed", attrs: attrs}
}

// dirTouched is the finding every directory gets when a name is added to
// it, removed from it or renamed in it.
func dirTouched(path string) want { return changedAtLeast(path, "mtime", "ctime") }

// exitFor is the status a check must exit with for these findings.
func exitFor(ws []want) int {
	code := 0
	for _, w := range ws {
		switch w.kind {
		case "added":
			code |= 1
		case "removed":
			code |= 2
		case "changed":
			code |= 4
		}
	}
	return code
}

// assertFindings checks that the report lists exactly the expected findings
// (path and kind), that each change names the expected attributes, and that
// the summary agrees with the findings.
func assertFindings(t *testing.T, rep *jsonReport, wants []want) {
	t.Helper()
	type key struct{ path, kind string }
	got := map[key]*jsonFinding{}
	for i := range rep.Findings {
		jf := &rep.Findings[i]
		k := key{jf.rawPath(t), jf.Kind}
		if got[k] != nil {
			t.Errorf("finding %s %q listed twice", k.kind, k.path)
		}
		got[k] = jf
	}
	for _, w := range wants {
		k := key{w.path, w.kind}
		jf := got[k]
		if jf == nil {
			t.Errorf("missing finding: %s %q", w.kind, w.path)
			continue
		}
		delete(got, k)
		if w.kind != "changed" {
			if len(jf.Attributes) != 0 {
				t.Errorf("%s %q: attributes %q, want none", w.kind, w.path, jf.Attributes)
			}
			continue
		}
		for _, a := range w.attrs {
			if !slices.Contains(jf.Attributes, a) {
				t.Errorf("changed %q: attributes %q lack %q (want %s%q)", w.path, jf.Attributes, a, atLeast(w), w.attrs)
			}
		}
		if w.exact && !slices.Equal(jf.Attributes, w.attrs) {
			t.Errorf("changed %q: attributes %q, want exactly %q", w.path, jf.Attributes, w.attrs)
		}
	}
	for k, jf := range got {
		t.Errorf("unexpected finding: %s %q %q", k.kind, k.path, jf.Attributes)
	}

	s := rep.Summary
	var a, r, c int
	for _, jf := range rep.Findings {
		switch jf.Kind {
		case "added":
			a++
		case "removed":
			r++
		case "changed":
			c++
		}
	}
	if s.Added != a || s.Removed != r || s.Changed != c || s.Total != a+r+c || s.Omitted != 0 {
		t.Errorf("summary counts added=%d removed=%d changed=%d total=%d omitted=%d, findings have %d/%d/%d",
			s.Added, s.Removed, s.Changed, s.Total, s.Omitted, a, r, c)
	}
}

func atLeast(w want) string {
	if w.exact {
		return "exactly "
	}
	return "at least "
}

// settledFiles counts the regular files whose hash a quick check of an
// untouched tree reuses: those of walkCount except the Growing /var/log,
// which records no mtime or ctime and so is always re-hashed.
func (f *fixture) settledFiles() int {
	f.t.Helper()
	n := 0
	err := filepath.WalkDir(f.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == f.p("/tmp") || path == f.p("/var/log") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			n++
		}
		return nil
	})
	must(f.t, err)
	return n
}
