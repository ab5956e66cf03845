//go:build e2e

package e2e

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/testwait"
)

// TestPodmanImageBaselineContainerd checks an image baseline against
// containerd's unpacking of the image (the runtime the kubelet uses here),
// with what podman 4.3 cannot load: hard links to files of lower layers,
// one of them to a file a later layer replaces. It runs a containerd of
// its own (own root, state and socket; no CRI), so the test cluster's is
// never touched. (Named for `make e2e-podman`, the real-runtime tier.)
func TestPodmanImageBaselineContainerd(t *testing.T) {
	requireRoot(t)
	aptInstall(t, map[string]func() bool{"containerd": onPath("containerd")})
	sock := startContainerd(t)
	ctr := func(args ...string) string {
		t.Helper()
		return mustRun(t, 2*time.Minute, nil, "ctr", append([]string{"-a", sock, "-n", "podfim-e2e"}, args...)...).Stdout
	}
	work := t.TempDir()
	archive := filepath.Join(work, "image.tar")
	ref := "localhost/podfim-e2e-containerd:v1"
	d := func(n string) tarEntry { return tarEntry{name: n, typ: tar.TypeDir, mode: 0o755} }
	f := func(n, body string) tarEntry { return tarEntry{name: n, body: body, mode: 0o644} }
	writeImage(t, archive, ref, [][]tarEntry{{
		d("bin/"), {name: "bin/app", body: "app v1", mode: 0o755}, f("bin/tool", "tool v1"), d("etc/"), f("etc/conf", "c"),
	}, {
		// Hard links to files of the layer below.
		d("bin/"), {name: "bin/app-link", typ: tar.TypeLink, link: "bin/app", mode: 0o750},
		d("keep/"), {name: "keep/tool-v1", typ: tar.TypeLink, link: "bin/tool", mode: 0o644},
	}, {
		// The link's target replaced, then deleted: the link keeps v1.
		d("bin/"), f("bin/tool", "tool v2"), d("etc/"), f("etc/.wh.conf", ""),
		// Listed again: the native snapshotter copies the layers below
		// for each layer, and here (containerd 1.6.20) its copy of a
		// directory that holds only a hard link got the time of the copy.
		d("keep/"),
	}})
	// containerd's overlayfs snapshotter (the default) refuses these
	// layers as podman does: it unpacks each layer into a directory of
	// its own, where the link's target is missing. The native
	// snapshotter unpacks each layer onto a copy of the ones below.
	// (ctr 1.6's `images mount` unpacks with overlayfs whatever it is
	// told, so the test views the top snapshot itself.)
	ctr("images", "import", "--snapshotter", "native", archive)
	mnt := topSnapshot(t, ctr)

	base := filepath.Join(work, "image.pfb")
	podfim(t, 0, "baseline", "--image", "docker-archive:"+archive, "--out", base)
	rep := check(t, mnt, base, 0)
	t.Logf("%s: %d entries, clean", mnt, rep.Summary.BaselineEntries)
	if b, err := os.ReadFile(filepath.Join(mnt, "keep/tool-v1")); err != nil || string(b) != "tool v1" {
		t.Fatalf("containerd's keep/tool-v1: %q %v", b, err)
	}
	// /, /bin, /bin/app, /bin/app-link, /bin/tool, /etc, /keep, /keep/tool-v1.
	if rep.Summary.BaselineEntries != 8 {
		t.Errorf("%d entries, want 8", rep.Summary.BaselineEntries)
	}
}

// topSnapshot returns the directory of the image's top layer snapshot
// (native: a plain directory): a read-only view of it, as
// `ctr snapshots mounts` would bind-mount it.
func topSnapshot(t *testing.T, ctr func(...string) string) string {
	t.Helper()
	parents, keys := map[string]bool{}, []string{}
	for _, line := range strings.Split(ctr("snapshots", "--snapshotter", "native", "ls"), "\n")[1:] {
		if f := strings.Fields(line); len(f) == 3 {
			keys = append(keys, f[0])
			parents[f[1]] = true
		} else if len(f) == 2 {
			keys = append(keys, f[0])
		}
	}
	var top []string
	for _, k := range keys {
		if !parents[k] {
			top = append(top, k)
		}
	}
	if len(top) != 1 {
		t.Fatalf("snapshots %q: want one top", keys)
	}
	// The view's mounts are printed as it is made ("mount -t bind SRC
	// TARGET -o rbind,ro"): asked for in a second ctr call, the view was
	// once gone already (no lease holds it, and the import's garbage
	// collection may run in between: "snapshot podfim-e2e-view does not
	// exist"). Its source is the committed top snapshot's directory,
	// which the image holds.
	f := strings.Fields(ctr("snapshots", "--snapshotter", "native", "view", "--target", "/unused", "podfim-e2e-view", top[0]))
	if len(f) < 5 || f[2] != "bind" {
		t.Fatalf("mounts of the view: %q", f)
	}
	return f[3]
}

// startContainerd runs a containerd of the test's own and returns its
// socket; it is stopped in t.Cleanup.
func startContainerd(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "podfim-ctrd-") // short: a socket path has 108 bytes
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	conf := filepath.Join(dir, "config.toml")
	must(t, os.WriteFile(conf, fmt.Appendf(nil, "version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock), 0o644))
	log, err := os.Create(filepath.Join(dir, "containerd.log"))
	must(t, err)
	cmd := exec.Command("containerd", "--config", conf)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		log.Close()
	})
	testwait.Eventually(t, 60*time.Second, 200*time.Millisecond, "containerd to answer", func() (bool, string) {
		r := runCmd(t, 10*time.Second, nil, "", "ctr", "-a", sock, "version")
		return r.Err == nil, strings.TrimSpace(r.Out())
	})
	return sock
}
