//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/podfim/podfim/internal/cli"
	"github.com/podfim/podfim/internal/referrer"
)

// imagePolicy is the policy of the image baselines below and of
// nativeManifest's sidecars: the page's tree only.
const imagePolicy = `{"version":1,"rules":[{"path":"/","preset":"Ignore"},{"path":"/www","preset":"ReadOnly"}]}`

// clusterRegistry is the test cluster's registry (docs/cluster.md).
func clusterRegistry(t *testing.T, k *kube) string {
	t.Helper()
	for _, e := range k.env {
		if v, ok := strings.CutPrefix(e, "PODFIM_CLUSTER_REGISTRY="); ok && v != "" {
			return v
		}
	}
	if v := os.Getenv("PODFIM_CLUSTER_REGISTRY"); v != "" {
		return v
	}
	t.Fatal("the test cluster has no registry (PODFIM_CLUSTER_REGISTRY): bring it up with this tree's bin/cluster")
	return ""
}

// pushImage saves the local image ref with podman and pushes it to
// repo:tag; it returns repo@digest, the reference a pod pulls.
func pushImage(t *testing.T, ref, repo, tag string) string {
	t.Helper()
	env := []string{"CONTAINERS_CONF=" + filepath.Join(repoRoot(t), "build", "containers.conf")}
	archive := filepath.Join(t.TempDir(), "image.tar")
	if r := runCmd(t, 5*time.Minute, env, "", "podman", "--log-level=error", "save", "--format", "docker-archive", "-o", archive, ref); r.Err != nil {
		t.Fatalf("podman save %s: %v\n%s", ref, r.Err, r.Out())
	}
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := name.NewTag(repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, img); err != nil {
		t.Fatalf("push %s: %v", dst, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo + "@" + d.String()
}

// signedBaseline is CI's step: the baseline of the image in the registry,
// made from the image itself and signed with key.
func signedBaseline(t *testing.T, image, key string) string {
	t.Helper()
	return signedBaselineWith(t, image, key, imagePolicy)
}

// signedBaselineWith is signedBaseline under another policy.
func signedBaselineWith(t *testing.T, image, key, policy string) string {
	t.Helper()
	dir := t.TempDir()
	pol, out := filepath.Join(dir, "policy.json"), filepath.Join(dir, "image.pfb")
	writeFileMode(t, pol, policy, 0o644)
	podfim(t, cli.ExitOK, "baseline", "--image", "docker://"+image, "--policy", pol, "--sign-key", key, "--out", out)
	return out
}

// imageOpts is a Deployment whose sidecar verifies with the public key of
// the ConfigMap podfim-key.
func imageOpts(appPort int, app string, args ...string) nativeOpts {
	return nativeOpts{appPort: appPort, sidecarPort: appPort + 1, respond: "log,metric,event,unready", escalate: "unready",
		rbac: true, appImage: app, keyConfigMap: "podfim-key",
		extraArgs: append([]string{"--verify-key=/etc/podfim/key/key.pub"}, args...)}
}

// deploy applies the Deployment of o in a new namespace with the key pub
// (and the baseline files, as ConfigMap podfim-baselines) and returns the
// namespace and its pod, once it exists.
func deploy(t *testing.T, k *kube, img kubeImageRefs, o nativeOpts, pub string, baselines ...string) (string, nativePod) {
	t.Helper()
	for _, p := range []int{o.appPort, o.sidecarPort} {
		requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", p))
	}
	ns := k.namespace(t, "podfim-d-")
	if pub != "" {
		k.must(t, "-n", ns, "create", "configmap", "podfim-key", "--from-file=key.pub="+pub)
	}
	if len(baselines) > 0 {
		args := []string{"-n", ns, "create", "configmap", "podfim-baselines"}
		for i, b := range baselines {
			args = append(args, fmt.Sprintf("--from-file=image-%d.pfb=%s", i, b))
		}
		k.must(t, args...)
	}
	k.apply(t, ns, nativeManifest(t, ns, img, o))
	var pod nativePod
	k.waitUntil(t, ns, "the pod", time.Minute, 250*time.Millisecond, func() (bool, string) {
		pods := k.pods(t, ns, "app=hello-d")
		if len(pods) != 1 {
			return false, fmt.Sprintf("%v", pods)
		}
		pod.name = pods[0].Name
		return true, ""
	})
	pod.uid = podUID(t, k, ns, pod.name)
	return ns, pod
}

// verifiedFor checks the sidecar's log: the baseline of image was verified,
// and no violation was reported.
func verifiedFor(t *testing.T, k *kube, ns, pod, image string) {
	t.Helper()
	logs := k.logs(t, ns, pod, "podfim")
	if l := matching(parseLog(logs), "baseline verified for the running image", ""); len(l) != 1 || l[0].str("image_ref") != image {
		t.Errorf("the sidecar did not verify the registry baseline of %s:\n%s", image, lastLines(logs, 15))
	}
	if v := matching(parseLog(logs), "integrity violation", ""); len(v) != 0 {
		t.Errorf("an untouched container of %s: %d violations: %v", image, len(v), v)
	}
}

// refused waits for BaselineRefused and checks that the pod is unready and
// the metric counts the reason.
func refused(t *testing.T, k *kube, ns string, pod nativePod, o nativeOpts, reason string) {
	t.Helper()
	waitEvents(t, k, ns, pod, "BaselineRefused")
	if code, body, err := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", o.sidecarPort)); err != nil || code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d %q %v while the baseline is refused", code, body, err)
	}
	_, body, err := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", o.sidecarPort))
	counted := false
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, fmt.Sprintf(`podfim_baseline_refusals_total{reason=%q,source=`, reason)); ok && !strings.HasSuffix(v, "} 0") {
			counted = true
		}
	}
	if err != nil || !counted {
		t.Errorf("podfim_baseline_refusals_total counts no %s refusal (%v):\n%s", reason, err, grepLines(body, "podfim_baseline_refusals_total"))
	}
	// /readyz names the refusal and its reason, not only "not started".
	if _, body, err := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", o.sidecarPort)); err != nil || !strings.Contains(body, "baseline refused (source ") || !strings.Contains(body, "reason "+reason+":") {
		t.Errorf("/readyz does not name the %s refusal: %q %v", reason, body, err)
	}
	if p := k.pods(t, ns, "app=hello-d"); len(p) != 1 || p[0].Ready == 2 {
		t.Errorf("pods %v: the refused pod is ready", p)
	}
}

// TestKubeImageBaseline is issue 10's chain on the real kubelet. CI builds
// the hello image (v1, and v2 with another page), pushes both to the
// cluster's registry, makes and signs their baselines from the images and
// pushes them as referrers. Then, each in its own namespace:
//   - registry source on v1: ready, verified against v1's digest as the
//     kubelet reports it; a tamper and a dropped file are found; a
//     rollout to v2 is verified
//     against v2's own baseline;
//   - a sidecar trusting another key refuses (signature);
//   - a ConfigMap holding only v2's baseline, with v1 running, is
//     refused (image);
//   - v1's signed baseline attached in the registry to v3 (v1 relabelled:
//     another digest), beside one signed by another key, with v3
//     running, is refused (image), through the registry path that
//     `baseline push` would not take;
//   - the first-sight gap: an entrypoint that rewrites the page before it
//     serves is reported by a registry-sourced sidecar and not by a
//     first-sight one.
func TestKubeImageBaseline(t *testing.T) {
	k := newKube(t)
	img := kubeImages(t, k)
	// A repository of this run's own: the cluster's registry keeps what
	// was pushed across `down` and `up`, and the images are reproducible,
	// so a shared one would collect every earlier run's referrers (signed
	// by keys long gone) on the same digests.
	repo := fmt.Sprintf("%s/podfim-e2e/hello-%s-%d", clusterRegistry(t, k), kubeTag(), time.Now().UnixNano())
	v1 := pushImage(t, img.Hello, repo, "v1")
	v2 := pushImage(t, buildHelloV2(t, img), repo, "v2")
	keys := t.TempDir()
	key, other := filepath.Join(keys, "ci"), filepath.Join(keys, "other")
	podfim(t, cli.ExitOK, "keygen", "--out", key)
	podfim(t, cli.ExitOK, "keygen", "--out", other)
	base := map[string]string{}
	for _, image := range []string{v1, v2} {
		base[image] = signedBaseline(t, image, key)
		podfim(t, cli.ExitOK, "baseline", "push", "--image", "docker://"+image, "--verify-key", key+".pub", base[image])
	}

	t.Run("registry", func(t *testing.T) {
		o := imageOpts(18250, v1, "--baseline-source=registry")
		ns, pod := deploy(t, k, img, o, key+".pub")
		k.waitReady(t, ns, "app=hello-d", 2, 2*time.Minute)
		id := k.must(t, "-n", ns, "get", "pod", pod.name, "-o", `jsonpath={.status.containerStatuses[?(@.name=="app")].imageID}`)
		if strings.TrimSpace(id) != v1 {
			t.Fatalf("the kubelet reports imageID %q, want the registry digest %s", id, v1)
		}
		verifiedFor(t, k, ns, pod.name, v1)
		tamperNative(t, k, ns, pod.name)
		k.must(t, "-n", ns, "exec", pod.name, "-c", "app", "--", "/bin/busybox", "sh", "-c", "echo dropped > /www/new.html")
		waitEvents(t, k, ns, pod, "FileChanged", "FileAdded")

		// A rollout: the new pod runs v2 and verifies against v2's baseline.
		// Recreate: the pods use the host's network, and two of them
		// cannot listen on one port.
		k.must(t, "-n", ns, "patch", "deployment/hello", "-p", `{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}`)
		k.must(t, "-n", ns, "set", "image", "deployment/hello", "app="+v2)
		var p2 podState
		k.waitUntil(t, ns, "the v2 pod 2/2", 2*time.Minute, 500*time.Millisecond, func() (bool, string) {
			pods := k.pods(t, ns, "app=hello-d")
			if len(pods) != 1 || pods[0].Name == pod.name || pods[0].Ready != 2 {
				return false, fmt.Sprintf("%v", pods)
			}
			p2 = pods[0]
			return true, ""
		})
		waitBody(t, fmt.Sprintf("http://127.0.0.1:%d/", o.appPort), "Hello, v2!\n", 30*time.Second)
		verifiedFor(t, k, ns, p2.Name, v2)
	})
	t.Run("another key", func(t *testing.T) {
		o := imageOpts(18252, v1, "--baseline-source=registry")
		ns, pod := deploy(t, k, img, o, other+".pub")
		refused(t, k, ns, pod, o, "signature")
	})
	t.Run("another image", func(t *testing.T) {
		o := imageOpts(18254, v1, "--baseline-source=configmap", "--baseline=/etc/podfim/baselines")
		o.baselinesConfigMap = "podfim-baselines"
		ns, pod := deploy(t, k, img, o, key+".pub", base[v2])
		refused(t, k, ns, pod, o, "image")
	})
	t.Run("origins", func(t *testing.T) { imageOrigins(t, k, img, v1, key) })
	t.Run("another image, registry", func(t *testing.T) {
		// v1's signed baseline attached to v3 (v1 with another label,
		// so another digest): push refuses that, so the test attaches
		// it with go-containerregistry directly, as a careless or hostile
		// pusher could. Pull must refuse it for v3 (binding).
		// Beside it, a baseline of v1 signed by another key (a leftover
		// in a shared registry, or a stranger's): refused for its
		// signature, it must not hide that ours is for another image.
		v3 := relabel(t, v1, repo, "v3")
		attachAsReferrer(t, v3, base[v1])
		attachAsReferrer(t, v3, signedBaseline(t, v1, other))
		o := imageOpts(18270, v3, "--baseline-source=registry")
		ns, pod := deploy(t, k, img, o, key+".pub")
		refused(t, k, ns, pod, o, "image")
	})
	t.Run("first-sight gap", func(t *testing.T) {
		rewrite := "echo Rewritten at start-up > /www/index.html"
		o := imageOpts(18256, v1, "--baseline-source=registry")
		o.appCommand = rewrite
		ns, pod := deploy(t, k, img, o, key+".pub")
		waitEvents(t, k, ns, pod, "FileChanged")

		fs := imageOpts(18258, v1)
		fs.appCommand = rewrite
		ns, pod = deploy(t, k, img, fs, key+".pub")
		k.waitReady(t, ns, "app=hello-d", 2, 2*time.Minute)
		waitBody(t, fmt.Sprintf("http://127.0.0.1:%d/", fs.appPort), "Rewritten at start-up\n", 30*time.Second)
		logs := k.logs(t, ns, pod.name, "podfim")
		if v := matching(parseLog(logs), "integrity violation", ""); len(v) != 0 {
			t.Errorf("the first-sight sidecar reported the start-up rewrite (%v): the gap this test documents is gone?", v)
		}
	})
}

// wholeImagePolicy watches the whole image but the kernel's and the
// runtime's scratch file systems. It has no rule for /etc/hosts,
// /etc/resolv.conf, /etc/hostname or an emptyDir: the mount table must
// keep what the kubelet mounts there from being findings.
const wholeImagePolicy = `{"version":1,"rules":[{"path":"/","preset":"ReadOnly"},{"path":"/dev","preset":"Ignore"},` +
	`{"path":"/proc","preset":"Ignore"},{"path":"/sys","preset":"Ignore"},{"path":"/run","preset":"Ignore"},` +
	`{"path":"/var/run","preset":"Ignore"},{"path":"/tmp","preset":"Ignore"}]}`

// imageOrigins: against a baseline of the whole image, a fresh container
// with an emptyDir has no finding (the kubelet's mounts and the
// directories above them are the runtime's); then a tamper of the image's
// page is reported with origin image and its layer, a dropped file with
// origin container, a write to the emptyDir with origin volume, in the
// log, the Events and the metric.
func imageOrigins(t *testing.T, k *kube, img kubeImageRefs, image, key string) {
	base := signedBaselineWith(t, image, key, wholeImagePolicy)
	o := imageOpts(18260, image, "--baseline-source=configmap", "--baseline=/etc/podfim/baselines", "--policy-yaml="+wholeImagePolicy)
	o.baselinesConfigMap, o.appVolume = "podfim-baselines", "/scratch"
	ns, pod := deploy(t, k, img, o, key+".pub", base)
	k.waitReady(t, ns, "app=hello-d", 2, 2*time.Minute)
	verifiedFor(t, k, ns, pod.name, image)
	// What the kubelet added is really there, as mount points, beside the
	// image's files: the clean start above is the mount table's doing.
	mi := k.must(t, "-n", ns, "exec", pod.name, "-c", "app", "--", "/bin/busybox", "cat", "/proc/self/mountinfo")
	for _, mp := range []string{"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/scratch", "/dev/termination-log"} {
		if !strings.Contains(mi, " "+mp+" ") {
			t.Errorf("the app container has no mount point %s:\n%s", mp, mi)
		}
	}

	k.must(t, "-n", ns, "exec", pod.name, "-c", "app", "--", "/bin/busybox", "sh", "-c",
		"echo tampered > /www/index.html; echo dropped > /www/new.html; echo data > /scratch/x")
	want := map[string]func(l logLine) bool{
		"/www/index.html": func(l logLine) bool {
			return l.str("kind") == "changed" && l.str("origin") == "image" && l.num("layer") >= 1 && strings.HasPrefix(l.str("layer_digest"), "sha256:")
		},
		"/www/new.html": func(l logLine) bool { return l.str("kind") == "added" && l.str("origin") == "container" },
		// Its directory, for the dropped file.
		"/www": func(l logLine) bool { return l.str("kind") == "changed" && l.str("origin") == "image" },
		"/scratch/x": func(l logLine) bool {
			return l.str("kind") == "added" && l.str("origin") == "volume" && l.str("mount") == "/scratch"
		},
	}
	var lines []logLine
	k.waitUntil(t, ns, "three violations", time.Minute, 500*time.Millisecond, func() (bool, string) {
		lines = matching(parseLog(k.logs(t, ns, pod.name, "podfim")), "integrity violation", "")
		for p := range want {
			if len(matching(lines, "integrity violation", p)) == 0 {
				return false, fmt.Sprintf("no violation of %s yet: %v", p, lines)
			}
		}
		return true, ""
	})
	for _, l := range lines {
		p := l.str("path")
		if ok := want[p]; ok == nil || !ok(l) {
			t.Errorf("violation %v: want only %v, each with its origin", l, slices.Sorted(maps.Keys(want)))
		}
	}
	waitEvents(t, k, ns, pod, "FileChanged", "FileAdded")
	msgs := k.must(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name="+pod.name, "-o", "jsonpath={.items[*].message}")
	for _, re := range []string{
		`/www/index\.html changed \([a-z0-9, ]+\); origin: image layer [0-9]+ \(sha256:[0-9a-f]{12}\)`,
		`/www/new\.html was added; origin: container`,
		`/scratch/x was added; origin: volume /scratch`,
	} {
		if !regexp.MustCompile(re).MatchString(msgs) {
			t.Errorf("no Event matches %q: %s", re, msgs)
		}
	}
	for _, series := range []string{
		`podfim_findings_total{kind="changed",origin="image"}`,
		`podfim_findings_total{kind="added",origin="container"}`,
		`podfim_findings_total{kind="added",origin="volume"}`,
	} {
		if v := sidecarMetric(t, o.sidecarPort, series); v < 1 {
			t.Errorf("%s = %v, want at least 1", series, v)
		}
	}
	if v := sidecarMetric(t, o.sidecarPort, `podfim_findings_total{kind="changed",origin="volume"}`); v != 0 {
		t.Errorf("the emptyDir's directory was reported changed %v times: it is the runtime's", v)
	}
}

// relabel pushes image (repo@digest) with one more config label to
// repo:tag and returns repo@<its digest>: the same files, another image.
func relabel(t *testing.T, image, repo, tag string) string {
	t.Helper()
	ref, err := name.NewDigest(image)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	cf.Config.Labels["io.podfim.e2e"] = tag
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	dst, err := name.NewTag(repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(dst, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return repo + "@" + d.String()
}

// attachAsReferrer attaches the baseline file to image (repo@digest) as
// `baseline push` would, without its checks: a referrer of artifact type
// referrer.ArtifactType whose one layer is the file.
func attachAsReferrer(t *testing.T, image, file string) {
	t.Helper()
	ref, err := name.NewDigest(image)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	config, blob := static.NewLayer([]byte("{}"), types.MediaType(referrer.ArtifactType)), static.NewLayer(data, referrer.LayerMediaType)
	var descs []v1.Descriptor
	for _, l := range []v1.Layer{config, blob} {
		if err := remote.WriteLayer(ref.Context(), l); err != nil {
			t.Fatal(err)
		}
		d, err := partial.Descriptor(l)
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, *d)
	}
	raw, err := json.Marshal(&v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: referrer.ArtifactType,
		Config: descs[0], Layers: descs[1:],
		Subject: &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(ref.Context().Digest(h.String()), rawManifest(raw)); err != nil {
		t.Fatal(err)
	}
}

// rawManifest is a manifest pushed as it is.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
