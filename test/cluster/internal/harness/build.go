package harness

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Debian packages the cluster needs at run time, each with a file that
// shows it is there.
var debs = []struct{ pkg, file string }{
	{"containerd", "/usr/bin/containerd"},
	{"runc", "/usr/sbin/runc"},
	{"containernetworking-plugins", "/usr/lib/cni/loopback"},
	// ip for the cluster's CNI plugin (cmd/podfim-cni); nsenter is in
	// util-linux, which every Debian has.
	{"iproute2", "/bin/ip"},
	// A static busybox for the test image built FROM scratch.
	{"busybox-static", "/bin/busybox"},
}

// ensurePackages installs the missing Debian packages.
func (c *Config) ensurePackages(ctx context.Context) error {
	var need []string
	for _, d := range debs {
		if _, err := os.Stat(d.file); err != nil {
			need = append(need, d.pkg)
		}
	}
	if len(need) == 0 {
		return nil
	}
	t := time.Now()
	c.logf("installing %s", strings.Join(need, " "))
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	update := exec.CommandContext(ctx, "apt-get", "update", "-qq")
	update.Env = env
	if out, err := update.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, out)
	}
	// --no-remove: never let apt take away a package to make room for these.
	install := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "-qq", "--no-install-recommends", "--no-remove"}, need...)...)
	install.Env = env
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %s: %w\n%s", strings.Join(need, " "), err, out)
	}
	for _, d := range debs {
		if _, err := os.Stat(d.file); err != nil {
			return fmt.Errorf("package %s installed but %s is missing", d.pkg, d.file)
		}
	}
	c.logf("installed packages in %s", since(t))
	return nil
}

// Binaries built from the module, by import path.
var builds = []string{
	"k8s.io/kubernetes/cmd/kube-apiserver",
	"k8s.io/kubernetes/cmd/kube-controller-manager",
	"k8s.io/kubernetes/cmd/kube-scheduler",
	"k8s.io/kubernetes/cmd/kubelet",
	"k8s.io/kubernetes/cmd/kubectl",
	"./cmd/etcd",
	"./cmd/pause",
	"./cmd/podfim-cni",
}

// Build installs what is missing, then builds the binaries and images into
// the cache. go build keeps a binary whose build ID is current, so a
// cached build costs only the staleness check.
func (c *Config) Build(ctx context.Context) error {
	if err := c.ensurePackages(ctx); err != nil {
		return err
	}
	src, err := c.findSrc()
	if err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
		if _, err := os.Stat(goBin); err != nil {
			return fmt.Errorf("no go in PATH or /usr/local/go/bin")
		}
	}
	binDir := filepath.Join(c.Cache, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	t := time.Now()
	ld := "-s -w"
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld += fmt.Sprintf(" -X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=1 -X %[1]s.gitMinor=34 -X %[1]s.gitTreeState=clean", p, Version)
	}
	args := append([]string{"build", "-trimpath", "-buildvcs=false", "-ldflags", ld, "-o", binDir + "/"}, builds...)
	c.logf("building %d binaries into %s (a cold build takes 6+ minutes)", len(builds), binDir)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = c.Err, c.Err
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	if err := c.buildRegistry(ctx, goBin, src); err != nil {
		return err
	}
	c.logf("binaries ready in %s", since(t))
	return c.buildImages()
}

// buildImages writes the pause and busybox image tarballs (docker-archive)
// when their content changed.
func (c *Config) buildImages() error {
	pause, err := os.ReadFile(c.bin("pause"))
	if err != nil {
		return err
	}
	pauseFile := imageFile{Name: "pause", Mode: 0o755, Data: pause}
	if err := c.writeImageIfChanged("pause", PauseImage, []imageFile{pauseFile}, []string{"/pause"}, nil); err != nil {
		return err
	}

	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := checkStatic("/bin/busybox"); err != nil {
		return err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	files := []imageFile{
		{Name: "bin", Mode: 0o755, Dir: true},
		{Name: "bin/busybox", Mode: 0o755, Data: bb},
		{Name: "etc", Mode: 0o755, Dir: true},
		{Name: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Name: "etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Name: "root", Mode: 0o700, Dir: true},
		{Name: "tmp", Mode: 0o1777, Dir: true},
		pauseFile,
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		files = append(files, imageFile{Name: "bin/" + applet, Mode: 0o777, Link: "busybox"})
	}
	return c.writeImageIfChanged("busybox", BusyboxImage, files, nil, []string{"/bin/sh"})
}

func (c *Config) writeImageIfChanged(name, ref string, files []imageFile, entrypoint, cmd []string) error {
	b, err := dockerArchive(ref, files, entrypoint, cmd)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	path := c.image(name)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	c.logf("wrote image %s (%s)", ref, path)
	return os.Rename(tmp, path)
}

// checkStatic fails for a dynamically linked executable: the images have
// no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the image needs Debian's busybox-static", path)
		}
	}
	return nil
}
