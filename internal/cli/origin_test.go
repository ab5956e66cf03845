package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unpack writes the files of ociLayout's layers into a new tree as a
// runtime would (directories 0755, files 0644, the layers' mtime), so that
// it checks clean against the image's baseline.
func unpack(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	mtime := time.Unix(1_700_000_000, 5)
	content := map[string]string{"etc/app.conf": "listen 8080\n", "www/index.html": "Hello, world!\n"}
	for _, f := range files {
		p := filepath.Join(dir, f)
		if strings.HasSuffix(f, "/") {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content[f]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := len(files) - 1; i >= 0; i-- {
		if err := os.Chtimes(filepath.Join(dir, files[i]), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type originFinding struct {
	Path        string `json:"path"`
	Kind        string `json:"kind"`
	Origin      string `json:"origin"`
	Layer       int    `json:"layer"`
	LayerDigest string `json:"layer_digest"`
	Mount       string `json:"mount"`
}

func checkOrigins(t *testing.T, args ...string) (int, map[string]originFinding) {
	t.Helper()
	code, out, e := run(t, append([]string{"check", "--format", "json"}, args...)...)
	var doc struct{ Findings []originFinding }
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("check %q: %d %v\n%s\n%s", args, code, err, out, e)
	}
	got := map[string]originFinding{}
	for _, f := range doc.Findings {
		got[f.Path] = f
	}
	return code, got
}

// TestCheckOrigins: every finding of a check says where its path comes
// from, and what the mount table says is the runtime's (a bind-mounted
// file, the directory above it) is not a finding.
func TestCheckOrigins(t *testing.T) {
	img := ociLayout(t,
		[][2]string{{"etc/", ""}, {"etc/app.conf", "listen 8080\n"}, {"www/", ""}, {"www/index.html", "Hello\n"}},
		[][2]string{{"www/", ""}, {"www/index.html", "Hello, world!\n"}})
	work := t.TempDir()
	base := filepath.Join(work, "b.pfb")
	if code, _, e := run(t, "baseline", "--image", "oci:"+img, "--out", base); code != 0 {
		t.Fatalf("baseline --image: %s", e)
	}
	root := unpack(t, "etc/", "etc/app.conf", "www/", "www/index.html")
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if code, got := checkOrigins(t, "--root", root, "--baseline", base); code != 0 {
		t.Fatalf("the unpacked image: exit %d %v, want clean", code, got)
	}

	// What a runtime does to a fresh container, and what an app does.
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/hosts", "127.0.0.1 localhost\n") // bind-mounted by the runtime
	write("scratch/x", "data")                  // a write to an emptyDir
	write("www/new.html", "dropped")            // into the writable layer
	write("www/index.html", "tampered")         // a file of layer 2
	mountinfo := filepath.Join(work, "mountinfo")
	if err := os.WriteFile(mountinfo, []byte(strings.Join([]string{
		"1 0 0:1 / / rw - overlay overlay rw",
		"2 1 8:1 /pods/u/etc-hosts /etc/hosts rw - ext4 /dev/sda1 rw",
		"3 1 8:1 /pods/u/volumes/scratch /scratch rw - ext4 /dev/sda1 rw",
	}, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	code, got := checkOrigins(t, "--root", root, "--baseline", base, "--mountinfo", mountinfo)
	if code != 5 || len(got) != 4 {
		t.Fatalf("exit %d, findings %v; want 5 (added, changed): /scratch/x, /www, /www/index.html, /www/new.html", code, got)
	}
	if f := got["/www"]; f.Origin != "image" || f.Layer != 2 {
		t.Errorf("directory of the dropped file: %+v, want origin image, layer 2", f)
	}
	if f := got["/www/index.html"]; f.Origin != "image" || f.Layer != 2 || !strings.HasPrefix(f.LayerDigest, "sha256:") {
		t.Errorf("tamper: %+v, want origin image, layer 2 and its digest", f)
	}
	if f := got["/www/new.html"]; f.Origin != "container" {
		t.Errorf("dropped file: %+v, want origin container", f)
	}
	if f := got["/scratch/x"]; f.Origin != "volume" || f.Mount != "/scratch" {
		t.Errorf("volume write: %+v, want origin volume, mount /scratch", f)
	}

	// Without the mount table, the runtime's additions are findings too.
	code, got = checkOrigins(t, "--root", root, "--baseline", base, "--mountinfo", "none")
	for _, p := range []string{"/etc", "/etc/hosts", "/scratch", "/scratch/x"} {
		if _, ok := got[p]; !ok || code != 5 {
			t.Errorf("--mountinfo none: exit %d, %s not reported: %v", code, p, got)
		}
	}
	if code, _, e := run(t, "check", "--root", root, "--baseline", base, "--mountinfo", filepath.Join(work, "missing")); code != ExitIO || !strings.Contains(e, "mount table") {
		t.Errorf("missing --mountinfo: exit %d %q, want %d", code, e, ExitIO)
	}
}

// TestCheckProcRootMountinfo: a --root of /proc/PID/root uses that
// process's mount table without being told; any other root has none
// unless --mountinfo names one.
func TestCheckProcRootMountinfo(t *testing.T) {
	for root, want := range map[string]bool{
		"/proc/self/root":  true,
		"/proc/1/root/":    true,
		"/proc/1/root/etc": false,
		"/srv/proc/1/root": false,
		"/proc/1x/root":    false,
	} {
		f := checkFlags{scanFlags: scanFlags{root: root}}
		m, err := f.mounts()
		if err != nil {
			t.Fatalf("--root %s: %v", root, err)
		}
		// /proc is a mount point of every Linux process.
		if got := m.IsPoint("/proc"); got != want {
			t.Errorf("--root %s: mount table with /proc: %v, want %v", root, got, want)
		}
		f.mountinfo = mountinfoNone
		if m, _ := f.mounts(); m != nil {
			t.Errorf("--root %s --mountinfo none: a mount table %q", root, m.Points())
		}
	}
}
