package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run runs podfim in-process and returns its exit status and streams.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func fixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "app.conf"), []byte("listen 8080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestUpdateAcceptsChangesAndKeepsSignature(t *testing.T) {
	dir, work := fixture(t), t.TempDir()
	key, base := filepath.Join(work, "k"), filepath.Join(work, "b.pfb")
	if code, _, e := run(t, "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %d %s", code, e)
	}
	if code, out, e := run(t, "baseline", "--root", dir, "--out", base, "--sign-key", key); code != 0 || !strings.Contains(out, "signed by") {
		t.Fatalf("baseline: %d %q %s", code, out, e)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "new.conf"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := run(t, "check", "--root", dir, "--baseline", base, "--verify-key", key+".pub"); code != ExitAdded|ExitChanged {
		t.Fatalf("check before update = %d, want %d (added file, changed dir)", code, ExitAdded|ExitChanged)
	}
	// A signed baseline is never silently replaced by an unsigned one.
	code, _, e := run(t, "update", "--root", dir, "--baseline", base)
	if code != ExitUsage || !strings.Contains(e, "--sign-key") {
		t.Fatalf("unsigned update of a signed baseline = %d %q, want %d naming --sign-key", code, e, ExitUsage)
	}
	code, out, e := run(t, "update", "--root", dir, "--baseline", base, "--sign-key", key)
	if code != 0 || !strings.Contains(out, "/etc/new.conf") || !strings.Contains(out, "wrote baseline") {
		t.Fatalf("update = %d\n%s\n%s", code, out, e)
	}
	if code, _, e := run(t, "check", "--root", dir, "--baseline", base, "--verify-key", key+".pub"); code != 0 {
		t.Fatalf("check after update = %d %s", code, e)
	}
	if code, _, _ := run(t, "update", "--root", dir, "--baseline", base, "--unsigned", "--format", "json"); code != 0 {
		t.Fatalf("update --unsigned = %d", code)
	}
	if code, _, e := run(t, "check", "--root", dir, "--baseline", base, "--verify-key", key+".pub"); code != ExitSignature {
		t.Fatalf("unsigned baseline with --verify-key = %d %s, want %d", code, e, ExitSignature)
	}
}

func TestUsageErrors(t *testing.T) {
	dir := fixture(t)
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"check", "--root", dir}, ExitUsage, `"baseline" not set`},
		{[]string{"baseline", "--out", "x"}, ExitUsage, "exactly one of --root and --image"},
		{[]string{"check", "--root", dir, "--baseline", "x", "--format", "yaml"}, ExitUsage, "--format"},
		{[]string{"check", "--bogus"}, ExitUsage, "unknown flag"},
		{[]string{"frobnicate"}, ExitUsage, "unknown command"},
		{[]string{"baseline", "--root", dir, "--out", "x", "--workers", "-1"}, ExitUsage, "--workers"},
		{[]string{"baseline", "--root", filepath.Join(dir, "missing"), "--out", filepath.Join(t.TempDir(), "b")}, ExitScan, "missing"},
		{[]string{"baseline", "--root", dir, "--out", "x", "--policy", filepath.Join(dir, "nope.yaml")}, ExitPolicy, "nope.yaml"},
		{[]string{"check", "--root", dir, "--baseline", filepath.Join(dir, "nope.pfb")}, ExitIO, "nope.pfb"},
		{[]string{"check", "--root", dir, "--baseline", filepath.Join(dir, "etc", "app.conf")}, ExitCorrupt, "app.conf"},
		{[]string{"update", "--root", dir, "--baseline", "x", "--sign-key", "k", "--unsigned"}, ExitUsage, "contradict"},
	}
	for _, tt := range tests {
		code, _, e := run(t, tt.args...)
		if code != tt.code || !strings.Contains(e, tt.msg) {
			t.Errorf("podfim %q = %d %q, want %d containing %q", tt.args, code, e, tt.code, tt.msg)
		}
		if !strings.HasPrefix(e, "podfim: ") {
			t.Errorf("podfim %q: error %q does not start with \"podfim: \"", tt.args, e)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "podfim ") || !strings.Contains(out, "go1.") {
		t.Errorf("version = %d %q", code, out)
	}
	code, out, _ = run(t, "version", "--format", "json")
	var v struct{ Version, Commit, Date, GoVersion, Platform string }
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Version == "" || !strings.HasPrefix(v.GoVersion, "go1.") || v.Platform == "" {
		t.Errorf("version --format json = %d %q (%v)", code, out, err)
	}
	if code, _, e := run(t, "version", "--format", "yaml"); code != ExitUsage || !strings.Contains(e, `unknown --format "yaml"`) {
		t.Errorf("version --format yaml = %d %q, want %d", code, e, ExitUsage)
	}
}

func TestInterruptedCheckIsNotClean(t *testing.T) {
	dir, work := fixture(t), t.TempDir()
	base := filepath.Join(work, "b.pfb")
	if code, _, e := run(t, "baseline", "--root", dir, "--out", base); code != 0 {
		t.Fatal(e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	if code := Run(ctx, []string{"check", "--root", dir, "--baseline", base}, &out, &errOut); code != ExitInterrupted {
		t.Errorf("cancelled check = %d %q, want %d", code, errOut.String(), ExitInterrupted)
	}
}
