//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/cli"
)

// TestKubeRelease is a user's install of a release: `make release`, `make
// release-push` to the test cluster's registry, then `helm install` of the
// chart from that registry (oci://), whose default images (the chart's
// appVersion) come from the same registry through sidecar.image.registry;
// the podfim image is pinned by digest (sidecar.image.digest wins over the
// tag). The demo comes up 2/2 and serves the page, the kubelet runs the
// pushed images, the sidecar is the release's binary, and the podfim
// image's signed baseline is its referrer in the registry. Ports 18300
// and 18301 of the node.
func TestKubeRelease(t *testing.T) {
	k := newKube(t)
	reg := clusterRegistry(t, k)
	root := repoRoot(t)
	version := strings.TrimSpace(runCmd(t, time.Minute, nil, root, "scripts/version.sh").Stdout)
	chartVersion := strings.TrimPrefix(version, "v")
	if version == "" || strings.HasSuffix(version, "-dirty") {
		t.Fatalf("version %q: make release refuses a tree with uncommitted changes; commit first", version)
	}
	const appPort, sidecarPort = 18300, 18301
	requireFreePort(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(appPort)))
	requireFreePort(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(sidecarPort)))

	dist := filepath.Join(t.TempDir(), "dist")
	r := runCmd(t, 30*time.Minute, nil, root, "make", "release", "DIST="+dist)
	if r.Err != nil {
		t.Fatalf("make release: %v\n%s", r.Err, r.Out())
	}
	t.Logf("make release (%s)", r.Took.Round(time.Second))
	// REGISTRY ends in /podfim, as ghcr.io/podfim does: the images are
	// then PREFIX/podfim/podfim and PREFIX/podfim/hello, the chart's
	// default repositories under sidecar.image.registry=PREFIX.
	prefix := reg + "/" + kubeTag() + "-release"
	registry := prefix + "/podfim"
	r = runCmd(t, 15*time.Minute, nil, root, "make", "release-push", "DIST="+dist, "REGISTRY="+registry)
	if r.Err != nil {
		t.Fatalf("make release-push: %v\n%s", r.Err, r.Out())
	}
	t.Logf("make release-push REGISTRY=%s (%s):\n%s", registry, r.Took.Round(time.Second), lastLines(r.Stdout, 12))
	podfimIndex := releaseDigest(t, dist, "podfim", version)
	if !strings.Contains(r.Stdout, registry+"/podfim@"+podfimIndex+"\n") {
		t.Errorf("release-push did not print %s/podfim@%s", registry, podfimIndex)
	}

	// The podfim image's own baseline, as a sidecar would fetch it: the
	// referrer of the manifest of this node's platform, signed by the
	// release key.
	manifest := releasePlatformManifest(t, dist, version)
	pulled := filepath.Join(t.TempDir(), "podfim.pfb")
	podfim(t, cli.ExitOK, "baseline", "pull", "--image", "docker://"+registry+"/podfim@"+manifest,
		"--verify-key", filepath.Join(dist, "podfim-release.pub"), "--out", pulled)

	ns := k.namespace(t, "podfim-r-")
	const release = "rel"
	args := []string{"install", release, "oci://" + registry + "/charts/podfim", "--version", chartVersion, "--plain-http",
		"--namespace", ns, "--wait", "--timeout", "3m",
		"--set", "hostNetwork.enabled=true",
		"--set", "hostNetwork.apiServerHost=127.0.0.1",
		"--set", "hostNetwork.apiServerPort=6443",
		"--set", "sidecar.image.registry=" + prefix,
		"--set", "sidecar.image.digest=" + podfimIndex,
		"--set", "demo.app.image.registry=" + prefix,
		"--set", "demo.service.type=ClusterIP",
		"--set", fmt.Sprintf("demo.app.port=%d", appPort),
		"--set", fmt.Sprintf("sidecar.port=%d", sidecarPort),
	}
	hr := k.helm(t, args...)
	t.Cleanup(func() {
		if r := k.helm(t, "uninstall", release, "--namespace", ns, "--wait", "--timeout", "2m"); r.Err != nil {
			t.Errorf("helm uninstall: %v\n%s", r.Err, r.Out())
		}
	})
	if hr.Err != nil {
		k.dump(t, ns)
		t.Fatalf("helm install from oci://: %v\n%s", hr.Err, hr.Out())
	}
	st := k.waitReady(t, ns, "app.kubernetes.io/instance="+release+",app.kubernetes.io/component=demo", 2, 2*time.Minute)
	waitBody(t, fmt.Sprintf("http://127.0.0.1:%d/", appPort), hello, 30*time.Second)
	waitStatus(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", sidecarPort), 200, 30*time.Second)

	// What the kubelet runs: the pushed images, podfim by its digest.
	images := k.must(t, "-n", ns, "get", "pod", st.Name, "-o",
		`jsonpath={range .spec.containers[*]}{.name}={.image}{"\n"}{end}{range .status.containerStatuses[*]}{.name}@{.imageID}{"\n"}{end}`)
	for _, want := range []string{
		"podfim=" + prefix + "/podfim/podfim@" + podfimIndex + "\n",
		"app=" + prefix + "/podfim/hello:" + version + "\n",
		"podfim@" + prefix + "/podfim/podfim@" + podfimIndex + "\n",
		"app@" + prefix + "/podfim/hello@" + releaseDigest(t, dist, "hello", version) + "\n",
	} {
		if !strings.Contains(images, want) {
			t.Errorf("pod %s: no %q in\n%s", st.Name, strings.TrimSpace(want), images)
		}
	}
	out := k.must(t, "-n", ns, "exec", st.Name, "-c", "podfim", "--", "/podfim", "version", "--format", "json")
	var v struct{ Version string }
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version != version {
		t.Errorf("podfim version in the sidecar = %q (%v), want %s", out, err, version)
	}
	t.Logf("helm install oci://%s/charts/podfim --version %s: %s 2/2, sidecar %s", registry, chartVersion, st.Name, v.Version)
}

// releaseDigest is the index digest images.txt lists for an image.
func releaseDigest(t *testing.T, dist, name, version string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dist, "images.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == name && f[1] == version {
			return f[2]
		}
	}
	t.Fatalf("images.txt lists no %s %s:\n%s", name, version, b)
	return ""
}

// releasePlatformManifest is the podfim image's manifest for this node's
// platform, as its baseline in dist/ records it.
func releasePlatformManifest(t *testing.T, dist, version string) string {
	t.Helper()
	pfb := filepath.Join(dist, "podfim-"+version+"-linux-"+runtime.GOARCH+".pfb")
	out := podfim(t, cli.ExitOK, "baseline", "show", "--format", "json", pfb)
	var h struct{ Image struct{ Manifest string } }
	if err := json.Unmarshal([]byte(out), &h); err != nil || !strings.HasPrefix(h.Image.Manifest, "sha256:") {
		t.Fatalf("baseline show %s: %v\n%s", pfb, err, out)
	}
	return h.Image.Manifest
}
