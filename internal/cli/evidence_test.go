package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/evidence"
)

// evidenceState makes a state directory whose evidence holds the page
// tampered with (a diff) and a file with a hostile name and content.
func evidenceState(t *testing.T) (string, *evidence.Record) {
	t.Helper()
	state := t.TempDir()
	st, err := evidence.Open(filepath.Join(state, "evidence"), evidence.Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	page := []byte("Hacked\n")
	rec, err := st.Capture(evidence.Source{Path: "/www/index.html", Kind: compare.Changed, Content: bytes.NewReader(page), Size: 7, Original: []byte("Hello, world!\n")})
	if err != nil {
		t.Fatal(err)
	}
	hostile := []byte("\x1b[2J\nfake\n")
	if _, err := st.Capture(evidence.Source{Path: "/tmp/\x1b[31mx\n", Kind: compare.Added, Content: bytes.NewReader(hostile), Size: int64(len(hostile))}); err != nil {
		t.Fatal(err)
	}
	return state, rec
}

func TestEvidenceListShow(t *testing.T) {
	state, rec := evidenceState(t)
	code, out, errOut := run(t, "evidence", "list", "--state-dir", state)
	if code != 0 {
		t.Fatalf("list: %d %s", code, errOut)
	}
	if !strings.Contains(out, rec.ID) || !strings.Contains(out, "/www/index.html") || !strings.Contains(out, `-Hello, world!\\n+Hacked`) {
		t.Errorf("list:\n%s", out)
	}
	if strings.Contains(out, "\x1b") || strings.Count(out, "\n") != 3 {
		t.Errorf("list is not one escaped line per record:\n%q", out)
	}

	code, out, errOut = run(t, "evidence", "show", "--state-dir", state, rec.ID)
	if code != 0 {
		t.Fatalf("show: %d %s", code, errOut)
	}
	for _, want := range []string{"sha256:   " + rec.SHA256, "result:   kept", "diff:", "  -Hello, world!", "  +Hacked"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = run(t, "evidence", "show", "--state-dir", state, "--content", rec.ID)
	if code != 0 || out != "Hacked\n" {
		t.Errorf("show --content: %d %q", code, out)
	}
	if code, _, _ := run(t, "evidence", "show", "--state-dir", state, "../../etc/passwd"); code != ExitIO {
		t.Errorf("show of a path: exit %d, want %d", code, ExitIO)
	}
}

func TestEvidenceExportVerify(t *testing.T) {
	state, _ := evidenceState(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	if code, _, errOut := run(t, "keygen", "--out", key); code != 0 {
		t.Fatal(errOut)
	}
	other := filepath.Join(dir, "other")
	if code, _, errOut := run(t, "keygen", "--out", other); code != 0 {
		t.Fatal(errOut)
	}
	tarball := filepath.Join(dir, "e.tar")
	if code, _, errOut := run(t, "evidence", "export", "--state-dir", state, "--key", key, "--subject", "shop/web-0", "--out", tarball); code != 0 {
		t.Fatalf("export: %s", errOut)
	}
	code, out, errOut := run(t, "evidence", "verify", "--key", key+".pub", tarball)
	if code != 0 || !strings.Contains(out, "verified: 5 files") || !strings.Contains(out, "subject shop/web-0") {
		t.Fatalf("verify: %d %s %s", code, out, errOut)
	}
	if code, _, _ := run(t, "evidence", "verify", "--key", other+".pub", tarball); code != ExitSignature {
		t.Errorf("verify with another key: exit %d, want %d", code, ExitSignature)
	}
	b, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.tar")
	if err := os.WriteFile(bad, bytes.Replace(b, []byte("Hacked\n"), []byte("Fixed!\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := run(t, "evidence", "verify", "--key", key+".pub", bad); code != ExitSignature {
		t.Errorf("verify of a changed tar: exit %d, want %d", code, ExitSignature)
	}
	// --out never overwrites.
	if code, _, _ := run(t, "evidence", "export", "--state-dir", state, "--out", tarball); code != ExitIO {
		t.Errorf("export over an existing file: exit %d, want %d", code, ExitIO)
	}
}
