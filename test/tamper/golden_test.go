package tamper_test

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// Volatile parts of a text report, each replaced by a placeholder of the
// same width so that the tabwriter's alignment stays as it was.
var (
	reTime     = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z`)
	reDigest   = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	reDuration = regexp.MustCompile(`, \d+\.\d\ds\n`)
)

// normalize replaces what differs between runs (the root, times, the
// baseline digest, the duration) with fixed text.
func normalize(text, root string) string {
	text = strings.ReplaceAll(text, root, "$ROOT")
	text = reTime.ReplaceAllString(text, "YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ")
	text = reDigest.ReplaceAllString(text, "sha256:"+strings.Repeat("0", 64))
	return reDuration.ReplaceAllString(text, ", 0.00s\n")
}

// TestGoldenText checks the text report of a fixed tampering against
// testdata/tamper-text.golden (go test -update rewrites it). The scenario
// changes no inode, so every remaining value is the same on every run.
func TestGoldenText(t *testing.T) {
	if !isRoot(t) {
		t.Skip("needs root (PODFIM_ALLOW_NONROOT=1): owners appear in the report")
	}
	f := newFixture(t, true)
	f.t = t
	f.makeBaseline(t)

	f.chmod("/etc/app.conf", 0o600)
	f.setxattr("/etc/app.conf", "system.posix_acl_access", aclGrant)
	f.write("/etc/motd", "Goodbye, world!\n", 0o644)
	f.setxattr("/etc/note", "user.note", []byte("v2"))
	f.write("/srv/www/evil.php", "<?php system($_GET['c']); ?>\n", 0o644)
	f.remove("/srv/www/sub/page.html")
	f.chmod("/bin/tool", 0o4755)
	f.appendTo("/odd/bad\xffbyte", "!")
	f.appendTo("/odd/new\nline", "!")

	r := podfim(t, f, "check", "--root", f.root, "--baseline", f.baseline)
	if r.code != 7 {
		t.Fatalf("exit %d, want 7\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	got := normalize(r.stdout, f.root)
	golden := filepath.Join("testdata", "tamper-text.golden")
	if *update {
		must(t, os.MkdirAll("testdata", 0o755))
		must(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	must(t, err)
	if got != string(want) {
		t.Errorf("text report differs from %s (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", golden, got, want)
	}
}
