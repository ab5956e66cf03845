package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBaselineShow prints a signed baseline's header and entries, with
// hostile names escaped in text and carried exactly in JSON.
func TestBaselineShow(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1764750000")
	dir, work := fixture(t), t.TempDir()
	hostile := "evil\n\nSummary: no differences (exit 0)\n\x1b[2J"
	writeFiles(t, dir, map[string]string{hostile: "x", "caf\xe9": "y"})
	key, base := filepath.Join(work, "k"), filepath.Join(work, "b.pfb")
	if code, _, e := run(t, "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %d %s", code, e)
	}
	if code, _, e := run(t, "baseline", "--root", dir, "--out", base, "--sign-key", key, "--subject", "web/www", "--serial", "9"); code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	code, out, e := run(t, "baseline", "show", base, "--verify-key", key+".pub")
	if code != 0 {
		t.Fatalf("show = %d %s", code, e)
	}
	for _, want := range []string{"format version   2", "subject          \"web/www\"", "created          2025-12-03T08:20:00Z",
		"serial           9", "signature verified", "compared         every attribute collected", "(stored)", "entries          5"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	code, out, e = run(t, "baseline", "show", base, "--entries")
	if code != 0 || !strings.Contains(out, "signature valid for that key, which was not checked") {
		t.Fatalf("show --entries = %d %s\n%s", code, e, out)
	}
	if strings.Contains(out, "\x1b") || strings.Contains(out, "\nSummary") || !strings.Contains(out, `"/evil\n\nSummary: no differences (exit 0)\n\x1b[2J"`) {
		t.Errorf("a hostile name is not escaped:\n%s", out)
	}
	if !strings.Contains(out, `"/caf\xe9"`) || !strings.Contains(out, "/etc/app.conf  file  mode=0644") {
		t.Errorf("entries:\n%s", out)
	}
	code, out, e = run(t, "baseline", "show", base, "--entries", "--format", "json")
	if code != 0 {
		t.Fatalf("show json = %d %s", code, e)
	}
	var doc struct {
		Subject    string           `json:"subject"`
		Serial     uint64           `json:"serial"`
		EntryCount int              `json:"entry_count"`
		Signed     bool             `json:"signed"`
		Entries    []map[string]any `json:"entries"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("show json is not JSON: %v\n%s", err, out)
	}
	if doc.Subject != "web/www" || doc.Serial != 9 || !doc.Signed || doc.EntryCount != 5 || len(doc.Entries) != 5 {
		t.Fatalf("show json: %+v", doc)
	}
	paths := map[string]bool{}
	for _, en := range doc.Entries {
		paths[en["path"].(string)] = true
		if b64, ok := en["path_b64"]; ok && b64 != "L2NhZuk=" {
			t.Errorf("path_b64 %v", b64)
		}
	}
	if !paths["/"+hostile] {
		t.Errorf("JSON lost the hostile path: %v", paths)
	}
	// An image baseline shows its image and each entry's layer.
	code, out, e = run(t, "baseline", "show", "--entries", filepath.Join("..", "baseline", "testdata", "ok-image.pfb"))
	for _, want := range []string{"image manifest   sha256:", "image index      sha256:", "platform         linux/amd64", "layers           3",
		"    layer 3        sha256:", "compared         type, mode, uid, gid, size, target, mtime, xattrs, sha256, sha512, blake3",
		"created          2026-12-03T08:30:00.123456789Z", "/usr/bin/ping  file  mode=0755", "xattr:security.capability=base64:AQAAAg==", "layer=2"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show of an image baseline = %d %s, lacks %q:\n%s", code, e, want, out)
		}
	}
	// A version 1 baseline shows what it has.
	code, out, e = run(t, "baseline", "show", filepath.Join("..", "baseline", "testdata", "v1", "ok-signed.pfb"))
	if code != 0 || !strings.Contains(out, "format version   1") || !strings.Contains(out, "created          (not recorded)") {
		t.Errorf("show v1 = %d %s\n%s", code, e, out)
	}
	// Errors as check's.
	data, _ := os.ReadFile(base)
	data[len(data)-3] ^= 1
	bad := filepath.Join(work, "bad.pfb")
	if err := os.WriteFile(bad, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := run(t, "baseline", "show", bad); code != ExitCorrupt {
		t.Errorf("show of a corrupt baseline = %d", code)
	}
	if code, _, _ := run(t, "baseline", "show", base, "--format", "yaml"); code != ExitUsage {
		t.Errorf("show --format yaml = %d", code)
	}
}

// TestDiff compares two baselines: the report and exit codes of check.
func TestDiff(t *testing.T) {
	dir, work := fixture(t), t.TempDir()
	writeFiles(t, dir, map[string]string{"keep": "k", "gone": "g", "edit": "1"})
	a, b := filepath.Join(work, "a.pfb"), filepath.Join(work, "b.pfb")
	if code, _, e := run(t, "baseline", "--root", dir, "--out", a); code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	if code, out, e := run(t, "diff", a, a); code != 0 || !strings.Contains(out, "Summary: no differences") {
		t.Fatalf("diff of a baseline with itself = %d %s\n%s", code, e, out)
	}
	if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"new": "n", "edit": "2"})
	if code, _, e := run(t, "baseline", "--root", dir, "--out", b); code != 0 {
		t.Fatalf("baseline: %d %s", code, e)
	}
	code, out, e := run(t, "diff", a, b)
	if code != ExitAdded|ExitRemoved|ExitChanged {
		t.Fatalf("diff = %d %s\n%s", code, e, out)
	}
	for _, want := range []string{"podfim diff of baseline " + a + " against " + b, "Added (1):\n  /new", "Removed (1):\n  /gone", "/edit", "sha256"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = run(t, "diff", "--format", "json", b, a)
	var doc struct {
		Summary struct {
			Added, Removed, Changed int
			Against                 struct{ File string }
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != ExitAdded|ExitRemoved|ExitChanged ||
		doc.Summary.Added != 1 || doc.Summary.Removed != 1 || doc.Summary.Against.File != a {
		t.Errorf("diff json = %d %v %+v\n%s", code, err, doc, out)
	}
	key := filepath.Join(work, "k")
	if code, _, e := run(t, "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %d %s", code, e)
	}
	if code, _, _ := run(t, "diff", "--verify-key", key+".pub", a, b); code != ExitSignature {
		t.Errorf("diff of unsigned baselines with --verify-key = %d", code)
	}
	if code, _, _ := run(t, "diff", a); code != ExitUsage {
		t.Errorf("diff with one baseline = %d", code)
	}
}
