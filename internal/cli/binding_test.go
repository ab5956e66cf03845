package cli

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/policy"
)

// TestSignedBaselineBinding replays signed baselines where they do not
// belong (issue 11 item 7): a baseline of one tree for another, an old one
// after a newer one, one older than --max-age. Each is refused with exit
// 22 and a message saying why; the right one passes.
func TestSignedBaselineBinding(t *testing.T) {
	dir, work := fixture(t), t.TempDir()
	key := filepath.Join(work, "k")
	if code, _, e := run(t, "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %d %s", code, e)
	}
	week := time.Now().Add(-8 * 24 * time.Hour).Unix()
	t.Setenv("SOURCE_DATE_EPOCH", strconv.FormatInt(week, 10))
	old := filepath.Join(work, "old.pfb")
	if code, _, e := run(t, "baseline", "--root", dir, "--out", old, "--sign-key", key, "--subject", "web/www", "--serial", "41"); code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	cur, other := filepath.Join(work, "cur.pfb"), filepath.Join(work, "other.pfb")
	if code, _, e := run(t, "baseline", "--root", dir, "--out", cur, "--sign-key", key, "--subject", "web/www", "--serial", "42"); code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	if code, _, e := run(t, "baseline", "--root", dir, "--out", other, "--sign-key", key, "--subject", "db/data"); code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	check := func(base string, extra ...string) (int, string) {
		args := append([]string{"check", "--root", dir, "--baseline", base, "--verify-key", key + ".pub"}, extra...)
		code, _, e := run(t, args...)
		return code, e
	}
	for _, tc := range []struct {
		base string
		args []string
		want string // "" passes
	}{
		{cur, []string{"--subject", "web/www", "--max-age", "24h", "--min-serial", "42"}, ""},
		{other, []string{"--subject", "web/www"}, `baseline is for subject "db/data", not "web/www"`},
		{old, []string{"--subject", "web/www", "--min-serial", "42"}, "serial 41 is older than the required 42"},
		{old, []string{"--subject", "web/www", "--max-age", "168h"}, "more than the allowed 168h0m0s"},
		{old, []string{"--subject", "web/www"}, ""},
	} {
		code, e := check(tc.base, tc.args...)
		switch {
		case tc.want == "" && code != 0:
			t.Errorf("check %s %q = %d %s, want 0", filepath.Base(tc.base), tc.args, code, e)
		case tc.want != "" && (code != ExitBinding || !strings.Contains(e, tc.want)):
			t.Errorf("check %s %q = %d %q, want %d saying %q", filepath.Base(tc.base), tc.args, code, e, ExitBinding, tc.want)
		}
	}
	// Without --verify-key the binding is checked, with a warning that it
	// proves nothing.
	if code, _, e := run(t, "check", "--root", dir, "--baseline", other, "--subject", "web/www"); code != ExitBinding || !strings.Contains(e, "only guard against mistakes") {
		t.Errorf("unverified check = %d %q", code, e)
	}
	// An update keeps the subject, moves the serial on and keeps the mode.
	if err := os.Chmod(cur, 0o640); err != nil {
		t.Fatal(err)
	}
	if code, _, e := run(t, "update", "--root", dir, "--baseline", cur, "--sign-key", key, "--subject", "web/www"); code != 0 {
		t.Fatalf("update: %d %s", code, e)
	}
	if code, e := check(cur, "--subject", "web/www", "--min-serial", "43"); code != 0 {
		t.Errorf("check after update = %d %s", code, e)
	}
	if st, err := os.Stat(cur); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("update changed the mode: %v %v", st.Mode(), err)
	}
	if st, err := os.Stat(other); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("new baseline mode %v %v, want 0600 (issue 11 item 13)", st.Mode(), err)
	}
	// A subject that could forge output is refused before the scan.
	if code, _, e := run(t, "baseline", "--root", dir, "--out", filepath.Join(work, "x.pfb"), "--subject", "a\x1b[2Jb"); code != ExitUsage || !strings.Contains(e, "not printable") {
		t.Errorf("baseline --subject with an escape = %d %q", code, e)
	}
	if code, _, e := run(t, "check", "--root", dir, "--baseline", cur, "--max-age", "-1h"); code != ExitUsage {
		t.Errorf("--max-age -1h = %d %q", code, e)
	}
}

// TestUpdateRefusesImageBaseline: an update records the tree, so it must
// not turn a baseline of an image into one of a (possibly tampered)
// container that still names the image.
func TestUpdateRefusesImageBaseline(t *testing.T) {
	dir, work := fixture(t), t.TempDir()
	p := policy.Default()
	doc, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	d := func(s string) string { return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s))) }
	im := &baseline.Image{Manifest: d("m"), Config: d("c"), Platform: "linux/amd64"}
	b := &baseline.Baseline{Header: baseline.Header{Subject: im.Manifest, PolicyDigest: p.Digest(), Policy: doc, Compared: attr.ImageStable, Image: im}}
	path := filepath.Join(work, "image.pfb")
	if err := baseline.WriteFile(path, b, nil); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	code, _, e := run(t, "update", "--root", dir, "--baseline", path)
	if code != ExitUsage || !strings.Contains(e, "was made from image "+im.Manifest) || !strings.Contains(e, "podfim baseline --image") {
		t.Errorf("update of an image baseline = %d %q", code, e)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the refused update changed the baseline")
	}
	// check compares it, under its restriction: the fixture is not the
	// image, so entries differ, but never by inode, nlink or ctime.
	code, out, _ := run(t, "check", "--root", dir, "--baseline", path)
	if code != ExitAdded || strings.Contains(out, "inode") {
		t.Errorf("check against an image baseline = %d\n%s", code, out)
	}
}
