package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/policy"
)

// TestStoredPolicy is issue 11 item 8: a baseline made with a custom
// policy, checked without --policy, used to be compared under the
// built-in policy and reported every path that policy ignores as removed
// (111 on a Debian tree, exit 7). The baseline now carries its policy.
func TestStoredPolicy(t *testing.T) {
	dir, work := fixture(t), t.TempDir()
	// Paths the built-in policy ignores and the custom one records.
	for _, d := range []string{"tmp", "var/cache/apt", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFiles(t, dir, map[string]string{"tmp/session": "s", "var/cache/apt/pkgcache.bin": "c", "run/app.pid": "1", "etc/hostname": "h"})
	custom := filepath.Join(work, "custom.yaml")
	if err := os.WriteFile(custom, []byte("version: 1\nrules:\n  - path: /\n    preset: ReadOnly\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(work, "b.pfb")
	if code, _, e := run(t, "baseline", "--root", dir, "--out", base, "--policy", custom); code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	b, err := baseline.ReadFile(base, baseline.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := policy.Parse(b.Policy)
	if err != nil || stored.Digest() != b.PolicyDigest {
		t.Fatalf("stored policy: %v, digest %q, header %q", err, stored.Digest(), b.PolicyDigest)
	}
	if code, out, e := run(t, "check", "--root", dir, "--baseline", base); code != 0 {
		t.Fatalf("check without --policy = %d (want 0: the baseline's own policy)\n%s%s", code, out, e)
	}
	if code, _, e := run(t, "check", "--root", dir, "--baseline", base, "--policy", custom); code != 0 {
		t.Fatalf("check with the same policy = %d %s", code, e)
	}
	// Another policy: an error that names both digests.
	other := filepath.Join(work, "default.yaml")
	if err := os.WriteFile(other, []byte("version: 1\nrules:\n  - path: /\n    preset: ReadOnly\n  - path: /tmp\n    preset: Ignore\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(other)
	if err != nil {
		t.Fatal(err)
	}
	code, out, e := run(t, "check", "--root", dir, "--baseline", base, "--policy", other)
	if code != ExitPolicy || out != "" || !strings.Contains(e, p.Digest()) || !strings.Contains(e, b.PolicyDigest) || !strings.Contains(e, "--allow-policy-change") {
		t.Fatalf("check with another policy = %d\nstdout %q\nstderr %q\nwant %d naming %s and %s", code, out, e, ExitPolicy, p.Digest(), b.PolicyDigest)
	}
	// Accepted on purpose: compared, with a warning, and /tmp shows as
	// removed since the other policy skips it.
	code, out, e = run(t, "check", "--root", dir, "--baseline", base, "--policy", other, "--allow-policy-change")
	if code != ExitRemoved || !strings.Contains(out, "/tmp/session") || !strings.Contains(e, "warning") {
		t.Fatalf("check --allow-policy-change = %d\n%s\n%s", code, out, e)
	}
	// update records the policy it used: afterwards the other policy is
	// the baseline's.
	if code, _, e := run(t, "update", "--root", dir, "--baseline", base, "--policy", other, "--allow-policy-change"); code != 0 {
		t.Fatalf("update: %d %s", code, e)
	}
	if code, _, e := run(t, "check", "--root", dir, "--baseline", base); code != 0 {
		t.Fatalf("check after update = %d %s", code, e)
	}
	if code, _, e := run(t, "check", "--root", dir, "--baseline", base, "--policy", custom); code != ExitPolicy {
		t.Fatalf("check with the old policy after update = %d %s, want %d", code, e, ExitPolicy)
	}
	// A format 1 baseline has no stored policy: the built-in one is used
	// only if it is the one the baseline names.
	old := filepath.Join("..", "baseline", "testdata", "v1", "ok-unsigned.pfb")
	if code, _, e := run(t, "check", "--root", dir, "--baseline", old); code != ExitPolicy || !strings.Contains(e, "the built-in policy") {
		t.Fatalf("check of a v1 baseline of another policy = %d %q", code, e)
	}
}
