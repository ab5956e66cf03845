//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The seed's walkthrough on a real kubelet (the test cluster of
// test/cluster): the demo Pod of deploy/kubernetes on the host network,
// tampered with through `kubectl exec`. Unlike podman, the kubelet starts
// a fresh container from the image after the sidecar's kill, so the page
// heals and RESTARTS goes to 1.
//
// The pods use the host network: each test listens on its own ports of
// 127.0.0.1 (this file's range: 18080-18099).
const (
	kubeAppPort     = 18080
	kubeSidecarPort = 18090
	// The sidecar's effective capabilities with the kill response:
	// DAC_READ_SEARCH (2), KILL (5), SYS_PTRACE (19).
	capEffKill = "0000000000080024"
)

// hostnetworkPorts is the ConfigMap the hostnetwork component reads the
// addresses from (see deploy/kubernetes/overlays/hostnetwork/ports.yaml).
func hostnetworkPorts(app, sidecar int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: podfim-demo-hostnetwork
  annotations: {config.kubernetes.io/local-config: "true"}
data:
  appListen: "127.0.0.1:%d"
  appPort: "%d"
  sidecarListen: "127.0.0.1:%d"
  sidecarPort: "%d"
`, app, app, sidecar, sidecar)
}

// kubeDemo is one running copy of the demo on the test cluster.
type kubeDemo struct {
	k                 *kube
	ns                string
	pageURL, readyURL string
}

const kubeDemoSelector, kubeDemoPod = "app.kubernetes.io/name=podfim-demo", "podfim-demo"

// startKubeDemo applies the demo as deploy/kubernetes/overlays/hostnetwork
// composes it (base, the hostnetwork component, a ports ConfigMap) plus
// components, in a fresh namespace, on this test's ports and image tag,
// and waits for 2/2, the page, /readyz 200 and the sidecar's baseline.
func startKubeDemo(t *testing.T, appPort, sidecarPort int, components ...string) *kubeDemo {
	t.Helper()
	return startKubeDemoEdited(t, appPort, sidecarPort, nil, components...)
}

// startKubeDemoEdited is startKubeDemo with edit applied to the rendered
// manifests before they are applied.
func startKubeDemoEdited(t *testing.T, appPort, sidecarPort int, edit func(string) string, components ...string) *kubeDemo {
	t.Helper()
	k := newKube(t)
	img := kubeImages(t, k)
	requireFreePort(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(appPort)))
	requireFreePort(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(sidecarPort)))
	d := &kubeDemo{
		k:        k,
		ns:       k.namespace(t, "podfim-b-"),
		pageURL:  fmt.Sprintf("http://127.0.0.1:%d/", appPort),
		readyURL: fmt.Sprintf("http://127.0.0.1:%d/readyz", sidecarPort),
	}
	dir := overlay(t,
		[]string{"deploy/kubernetes/base", "./ports.yaml"},
		append([]string{"deploy/kubernetes/components/hostnetwork"}, components...),
		fmt.Sprintf("namespace: %s\nimages:\n- name: localhost/hello\n  newTag: %q\n- name: localhost/podfim\n  newTag: %q\n", d.ns, img.Tag, img.Tag),
		map[string]string{"ports.yaml": hostnetworkPorts(appPort, sidecarPort)})
	manifests := k.kustomize(t, dir)
	if edit != nil {
		manifests = edit(manifests)
	}
	for _, ref := range []string{"image: " + img.Hello, "image: " + img.Podfim} {
		if !strings.Contains(manifests, ref) {
			t.Fatalf("the rendered demo has no %q:\n%s", ref, manifests)
		}
	}
	start := time.Now()
	k.apply(t, d.ns, manifests)
	st := k.waitReady(t, d.ns, kubeDemoSelector, 2, 2*time.Minute)
	t.Logf("pod %s 2/2 Running %s after kubectl apply", st.Name, time.Since(start).Round(time.Millisecond))
	if st.Restarts["app"] != 0 || st.Restarts["podfim"] != 0 {
		t.Fatalf("restarts before the tamper: %v", st.Restarts)
	}
	waitBody(t, d.pageURL, hello, 30*time.Second)
	_, took := waitStatus(t, d.readyURL, 200, 30*time.Second)
	t.Logf("GET %s = %q; GET %s = 200 (%s)", d.pageURL, hello, d.readyURL, took.Round(time.Millisecond))
	l := waitLog(t, d.logs(t), "baseline loaded", "", 30*time.Second)
	t.Logf("sidecar: %q from %s, %v entries", l.str("msg"), l.str("source"), l["entries"])
	return d
}

// logs returns a function that reads the sidecar's log, for waitLog.
func (d *kubeDemo) logs(t *testing.T) func() string {
	return func() string { return d.k.logs(t, d.ns, kubeDemoPod, "podfim") }
}

func TestKubeDemo(t *testing.T) {
	d := startKubeDemo(t, kubeAppPort, kubeSidecarPort)
	k, ns, pod := d.k, d.ns, kubeDemoPod

	// Least privilege, seen from inside: the app (same pid namespace, its
	// busybox) reads the sidecar's effective capabilities and its own.
	caps := k.must(t, "-n", ns, "exec", pod, "-c", "app", "--", "/bin/busybox", "sh", "-c",
		`for d in /proc/[0-9]*; do c=$(/bin/busybox tr '\0' ' ' < $d/cmdline 2>/dev/null); case "$c" in "/podfim "*|"/hello "*) echo "${c%% *} $(/bin/busybox grep CapEff $d/status)";; esac; done`)
	if !strings.Contains(caps, "/podfim CapEff:\t"+capEffKill) || !strings.Contains(caps, "/hello CapEff:\t0000000000000000") {
		t.Fatalf("effective capabilities:\n%s\nwant /podfim %s (SYS_PTRACE, KILL, DAC_READ_SEARCH) and /hello none", caps, capEffKill)
	}
	t.Logf("CapEff: /podfim %s (DAC_READ_SEARCH, KILL, SYS_PTRACE), /hello 0", capEffKill)
	d.tamperKillHeal(t)
}

// TestKubeDemoBuiltinPolicy: the demo with the sidecar's built-in policy
// (the whole image, every attribute) instead of the demo's own. The
// kubelet's fresh container of the same image has new mount points in a
// new writable layer, so "/" and "/etc" have a new inode and new times:
// the sidecar tolerates exactly that above the container's mount points,
// so the clean new container is not a finding and is not killed again.
func TestKubeDemoBuiltinPolicy(t *testing.T) {
	const policyArg = "- --policy=/etc/podfim/policy.yaml"
	d := startKubeDemoEdited(t, 18083, 18093, func(m string) string {
		if !strings.Contains(m, policyArg) {
			t.Fatalf("the rendered demo has no %q to remove:\n%s", policyArg, m)
		}
		var out []string
		for _, l := range strings.Split(m, "\n") {
			if strings.TrimSpace(l) != policyArg {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	})
	l := waitLog(t, d.logs(t), "baseline loaded", "", 10*time.Second)
	if n, ok := l["entries"].(float64); !ok || n < 4 {
		t.Fatalf("built-in policy baseline: %s; want the whole image (/, /bin, /hello, /www, ...)", l)
	}
	d.tamperKillHeal(t)
}

// tamperKillHeal is the seed's walkthrough after the pod is up: tamper
// with the page through `kubectl exec`, see the finding and one kill, the
// kubelet's fresh container (RESTARTS 1), the page healed, and no second
// kill of the clean new container.
func (d *kubeDemo) tamperKillHeal(t *testing.T) {
	t.Helper()
	k, ns, pageURL, readyURL := d.k, d.ns, d.pageURL, d.readyURL
	const sel, pod = kubeDemoSelector, kubeDemoPod
	logs := d.logs(t)

	// The seed's tamper step. The sidecar may kill the app while the exec
	// session is still open (exit 137): the finding below proves the write.
	tampered := time.Now()
	r := k.run(t, 30*time.Second, "-n", ns, "exec", pod, "-c", "app", "--", "/bin/busybox", "sh", "-c", tamperCmd)
	if r.Err != nil {
		t.Logf("kubectl exec ended with %v (the kill may end the session): %s", r.Err, strings.TrimSpace(r.Out()))
	}
	t.Logf("kubectl exec %s -c app -- /bin/busybox sh -c %q", pod, tamperCmd)

	v := waitLog(t, logs, "integrity violation", page, 15*time.Second)
	if v.str("kind") != "changed" || !slices.Contains(v.strings("attributes"), "sha256") || v.str("new_sha256") == v.str("old_sha256") {
		t.Fatalf("finding = %s; want the page changed, sha256 among the attributes", v)
	}
	t.Logf("sidecar: %q path %s attributes %v", v.str("msg"), v.str("path"), v.strings("attributes"))
	kill := waitLog(t, logs, "app container killed", "", 15*time.Second)
	if kill.str("result") != "ok" {
		t.Fatalf("kill: %s", kill)
	}
	// The kill answers the first finding, which may be the page or its
	// directory (the write copies /www up on overlayfs).
	if p := kill.str("path"); p != page && p != "/www" {
		t.Fatalf("kill for %q, want the page or its directory", p)
	}
	t.Logf("sidecar: %q (path %s)", kill.str("msg"), kill.str("path"))

	// The kubelet starts a new container from the image: RESTARTS 1, the
	// page is the image's again, and the sidecar's re-verification of the
	// new container resolves the violation (readyz 200, pod 2/2 again).
	k.waitUntil(t, ns, "RESTARTS of app = 1", 60*time.Second, 250*time.Millisecond, func() (bool, string) {
		p := k.pods(t, ns, sel)
		if len(p) != 1 {
			return false, fmt.Sprintf("%v", p)
		}
		return p[0].Restarts["app"] == 1, p[0].String()
	})
	t.Logf("RESTARTS of app = 1 %s after the tamper", time.Since(tampered).Round(time.Millisecond))
	waitBody(t, pageURL, hello, 30*time.Second)
	t.Logf("GET %s = %q again %s after the tamper", pageURL, hello, time.Since(tampered).Round(time.Millisecond))
	waitStatus(t, readyURL, 200, 30*time.Second)
	k.waitReady(t, ns, sel, 2, 60*time.Second)
	// No second kill: readyz 200 above is the event that the new
	// container's first full check ran and resolved the violation (the
	// ledger reopens it on any finding, and a kill follows only a finding),
	// so the counts below are final; no sleep can add to that.
	st := k.waitReady(t, ns, sel, 2, 10*time.Second)
	if st.Restarts["app"] != 1 || st.Restarts["podfim"] != 0 {
		t.Fatalf("restarts %v, want app 1 and podfim 0", st.Restarts)
	}
	lines := parseLog(logs())
	if n := len(matching(lines, "app container killed", "")); n != 1 {
		t.Fatalf("%d kills logged, want 1:\n%s", n, lastLines(logs(), 20))
	}
	ps := k.must(t, "-n", ns, "get", "pod", pod)
	t.Logf("kubectl get pod %s:\n%s", pod, strings.TrimSpace(ps))
}

// TestKubeDemoRestore: the demo with components/restore on a kubelet. The
// sidecar writes the page back (content, mode, owner) and the app is not
// restarted; the violation is resolved.
func TestKubeDemoRestore(t *testing.T) {
	d := startKubeDemo(t, 18082, 18092, "deploy/kubernetes/components/restore")
	k, ns, pageURL, readyURL := d.k, d.ns, d.pageURL, d.readyURL
	const sel, pod = kubeDemoSelector, kubeDemoPod
	logs := d.logs(t)

	tampered := time.Now()
	k.must(t, "-n", ns, "exec", pod, "-c", "app", "--", "/bin/busybox", "sh", "-c", tamperCmd)
	waitBody(t, pageURL, hello, 10*time.Second)
	t.Logf("GET %s = %q again %s after the tamper", pageURL, hello, time.Since(tampered).Round(time.Millisecond))
	v := waitLog(t, logs, "integrity violation", page, 10*time.Second)
	l := waitLog(t, logs, "file restored", page, 10*time.Second)
	if l.str("result") != "ok" {
		t.Fatalf("restore: %s", l)
	}
	logGap(t, "finding -> file restored", v, l)
	st := strings.TrimSpace(k.must(t, "-n", ns, "exec", pod, "-c", "app", "--", "/bin/busybox", "stat", "-c", "%a %u %g %s", page))
	if st != "600 65532 65532 14" {
		t.Fatalf("restored page: mode uid gid size = %q, want \"600 65532 65532 14\"", st)
	}
	waitStatus(t, readyURL, 200, 10*time.Second)
	p := k.waitReady(t, ns, sel, 2, 30*time.Second)
	if p.Restarts["app"] != 0 || p.Restarts["podfim"] != 0 {
		t.Fatalf("restarts %v: restore must not restart anything", p.Restarts)
	}
	if n := len(matching(parseLog(logs()), "app container killed", "")); n != 0 {
		t.Fatalf("%d kills logged with the restore response", n)
	}
	t.Logf("restored: %s, RESTARTS 0, /readyz 200", st)
}

// TestKubeDemoHelm installs the chart's demo with `helm install` (host
// network values) and checks that it comes up 2/2 and serves the page.
func TestKubeDemoHelm(t *testing.T) {
	k := newKube(t)
	img := kubeImages(t, k)
	const appPort, sidecarPort = 18081, 18091
	requireFreePort(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(appPort)))
	requireFreePort(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(sidecarPort)))
	ns := k.namespace(t, "podfim-b-")
	const release = "demo"
	args := []string{"install", release, helmChart(t), "--namespace", ns, "--wait", "--timeout", "2m",
		"--set", "hostNetwork.enabled=true",
		"--set", "hostNetwork.apiServerHost=127.0.0.1",
		"--set", "hostNetwork.apiServerPort=6443",
		"--set", "sidecar.image.registry=",
		"--set", "sidecar.image.repository=localhost/podfim",
		"--set", "sidecar.image.tag=" + img.Tag,
		"--set", "sidecar.image.pullPolicy=Never",
		"--set", "demo.app.image.registry=",
		"--set", "demo.app.image.repository=localhost/hello",
		"--set", "demo.app.image.tag=" + img.Tag,
		"--set", "demo.app.image.pullPolicy=Never",
		"--set", "demo.service.type=ClusterIP",
		"--set", fmt.Sprintf("demo.app.port=%d", appPort),
		"--set", fmt.Sprintf("sidecar.port=%d", sidecarPort),
	}
	start := time.Now()
	r := k.helm(t, args...)
	t.Cleanup(func() {
		if r := k.helm(t, "uninstall", release, "--namespace", ns, "--wait", "--timeout", "2m"); r.Err != nil {
			t.Errorf("helm uninstall: %v\n%s", r.Err, r.Out())
		}
	})
	if r.Err != nil {
		k.dump(t, ns)
		t.Fatalf("helm install: %v\n%s", r.Err, r.Out())
	}
	t.Logf("helm install --wait (%s); NOTES:\n%s", r.Took.Round(time.Millisecond), lastLines(r.Stdout, 40))
	if !strings.Contains(r.Stdout, "kubectl -n "+ns+" exec "+release+"-podfim-demo -c app") {
		t.Errorf("NOTES do not show the tamper command for this release:\n%s", r.Stdout)
	}
	st := k.waitReady(t, ns, "app.kubernetes.io/instance="+release+",app.kubernetes.io/component=demo", 2, 2*time.Minute)
	t.Logf("pod %s 2/2 Running %s after helm install", st.Name, time.Since(start).Round(time.Millisecond))
	waitBody(t, fmt.Sprintf("http://127.0.0.1:%d/", appPort), hello, 30*time.Second)
	waitStatus(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", sidecarPort), 200, 30*time.Second)
	// The Service lists the ready pod.
	eps := k.must(t, "-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name="+release+"-podfim-demo",
		"-o", "jsonpath={.items[*].endpoints[*].conditions.ready}")
	if strings.TrimSpace(eps) != "true" {
		t.Fatalf("EndpointSlice ready conditions %q, want one ready endpoint", eps)
	}
	t.Logf("GET page = %q, /readyz 200, the Service's EndpointSlice lists the pod as ready", hello)
}
