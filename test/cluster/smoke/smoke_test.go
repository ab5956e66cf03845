// Package smoke proves the cluster of test/cluster: a two-container pod
// with a shared process namespace runs, kubectl exec works, and a
// container whose main process is killed is restarted by the kubelet,
// and an image is pulled from the cluster's registry by digest.
//
// It needs a running cluster (`cluster up`, then eval "$(cluster env)");
// without one it skips.
package smoke

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const pod = "smoke"

func TestPodExecKillRestart(t *testing.T) {
	kubectl, image := smokeEnv(t, "PODFIM_CLUSTER_BUSYBOX_IMAGE")
	k := func(stdin string, args ...string) string {
		t.Helper()
		out, err := run(kubectl, stdin, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	start := time.Now()
	step := func(format string, args ...any) {
		t.Logf("%6.1fs %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	k(fmt.Sprintf(manifest, pod, image, image), "apply", "-f", "-")
	t.Cleanup(func() {
		out, err := run(kubectl, "", "delete", "pod", pod, "--ignore-not-found", "--wait=true", "--timeout=60s")
		if err != nil {
			t.Errorf("delete: %v\n%s", err, out)
		}
	})
	if out, err := run(kubectl, "", "wait", "--for=condition=Ready", "pod/"+pod, "--timeout=90s"); err != nil {
		desc, _ := run(kubectl, "", "describe", "pod", pod)
		t.Fatalf("pod not Ready: %v\n%s\n%s", err, out, desc)
	}
	ready := k("", "get", "pod", pod, "-o", `jsonpath={range .status.containerStatuses[*]}{.name}={.ready},{end}`)
	if ready != "app=true,watcher=true," {
		t.Fatalf("containers: %q, want both ready", ready)
	}
	step("pod %s 2/2 Running", pod)

	// One process namespace: pid 1 is the sandbox's pause, and the
	// watcher sees the app's processes.
	if init := k("", "exec", pod, "-c", "watcher", "--", "cat", "/proc/1/cmdline"); !strings.HasPrefix(init, "/pause") {
		t.Fatalf("pid 1 runs %q, want the pause image's /pause", init)
	}
	find := `for d in /proc/[0-9]*; do [ "$(tr '\0' ' ' < $d/cmdline 2>/dev/null)" = "/bin/sleep 3600 " ] && echo ${d#/proc/}; done; true`
	pids := strings.Fields(k("", "exec", pod, "-c", "watcher", "--", "sh", "-c", find))
	if len(pids) != 1 {
		t.Fatalf("app processes seen from the watcher: %q, want one", pids)
	}
	step("kubectl exec: pid 1 is /pause, the app's main process is pid %s", pids[0])

	if n := restarts(t, k); n != 0 {
		t.Fatalf("restartCount %d before the kill, want 0", n)
	}
	k("", "exec", pod, "-c", "watcher", "--", "kill", "-9", pids[0])
	step("kill -9 %s", pids[0])
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := restarts(t, k)
		st := k("", "get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[?(@.name=="app")].ready}`)
		if n == 1 && st == "true" {
			break
		}
		if n > 1 {
			t.Fatalf("restartCount %d, want 1", n)
		}
		if time.Now().After(deadline) {
			desc, _ := run(kubectl, "", "describe", "pod", pod)
			t.Fatalf("app not restarted and ready within 60s (restartCount %d, ready %s)\n%s", n, st, desc)
		}
		time.Sleep(200 * time.Millisecond)
	}
	step("restartCount 0 -> 1, app ready again")
	again := strings.Fields(k("", "exec", pod, "-c", "watcher", "--", "sh", "-c", find))
	if len(again) != 1 || again[0] == pids[0] {
		t.Fatalf("after the restart the app runs as %q, want one new process (was %s)", again, pids[0])
	}

	k("", "delete", "pod", pod, "--wait=true", "--timeout=60s")
	step("deleted")
}

func restarts(t *testing.T, k func(string, ...string) string) int {
	t.Helper()
	s := k("", "get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[?(@.name=="app")].restartCount}`)
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("restartCount %q: %v", s, err)
	}
	return n
}

func run(bin, stdin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		return out.String() + stderr.String(), err
	}
	return out.String(), nil
}

// The pod of podfim's design: host network (there is no pod network),
// one process namespace, the in-cluster API address on loopback.
const manifest = `apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  hostNetwork: true
  shareProcessNamespace: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %s
    imagePullPolicy: Never
    command: ["/bin/sleep", "3600"]
    env:
    - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
    - {name: KUBERNETES_SERVICE_PORT, value: "6443"}
  - name: watcher
    image: %s
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
    env:
    - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
    - {name: KUBERNETES_SERVICE_PORT, value: "6443"}
`

// TestRegistryPull: containerd pulls an image by digest from the
// cluster's registry over plain HTTP (its hosts.toml), and the kubelet
// reports that registry digest as the container's imageID, the digest a
// sidecar binds a baseline to.
func TestRegistryPull(t *testing.T) {
	kubectl, image := smokeEnv(t, "PODFIM_CLUSTER_REGISTRY_BUSYBOX_IMAGE")
	const name = "smoke-registry"
	spec := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %s
    imagePullPolicy: Always
    command: ["/bin/sleep", "3600"]
`, name, image)
	startPod(t, kubectl, name, spec)
	id, err := run(kubectl, "", "get", "pod", name, "-o", `jsonpath={.status.containerStatuses[0].imageID}`)
	if err != nil {
		t.Fatal(err)
	}
	if id != image {
		t.Errorf("imageID %q, want the registry digest %q", id, image)
	}
}

// TestPodNetwork: a pod without hostNetwork (what Pod Security baseline and
// restricted require) starts: the cluster's CNI plugin gives it a pod IP
// from 203.0.113.0/24 on an eth0 that has no route, so its namespace
// reaches only itself (a connect to the node's address fails at once,
// nothing is sent).
func TestPodNetwork(t *testing.T) {
	kubectl, image := smokeEnv(t, "PODFIM_CLUSTER_BUSYBOX_IMAGE")
	const name = "smoke-podnet"
	spec := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: %s
    imagePullPolicy: Never
    command: ["/bin/sleep", "3600"]
`, name, image)
	startPod(t, kubectl, name, spec)
	ip, err := run(kubectl, "", "get", "pod", name, "-o", `jsonpath={.status.podIP}`)
	if err != nil || !strings.HasPrefix(ip, "203.0.113.") {
		t.Fatalf("podIP %q (%v), want one of 203.0.113.0/24", ip, err)
	}
	addrs, err := run(kubectl, "", "exec", name, "--", "ip", "-4", "addr")
	if err != nil || !strings.Contains(addrs, "inet "+ip+"/32") {
		t.Fatalf("addresses in the pod: %v\n%s", err, addrs)
	}
	if routes, err := run(kubectl, "", "exec", name, "--", "ip", "-4", "route"); err != nil || strings.TrimSpace(routes) != "" {
		t.Fatalf("routes in the pod: %v %q, want none", err, routes)
	}
	node, err := run(kubectl, "", "get", "node", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	if err != nil || node == "" {
		t.Fatalf("node address: %v %q", err, node)
	}
	out, err := run(kubectl, "", "exec", name, "--", "nc", "-w", "2", node, "6443")
	if err == nil || !strings.Contains(out, "unreachable") {
		t.Fatalf("connect from the pod to %s:6443: %v %q, want network unreachable", node, err, out)
	}
}

// smokeEnv returns kubectl and the image named by imageVar, which `cluster
// smoke` (make cluster-smoke, which CI runs) always sets with KUBECONFIG:
// without them the test skips, and in CI fails, never skips.
func smokeEnv(t *testing.T, imageVar string) (kubectl, image string) {
	t.Helper()
	kubectl, image = os.Getenv("KUBECTL"), os.Getenv(imageVar)
	if kubectl == "" || image == "" || os.Getenv("KUBECONFIG") == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("no cluster in CI: KUBECTL, KUBECONFIG and %s must come from `cluster smoke`", imageVar)
		}
		t.Skip("no cluster: run `cluster up` and eval \"$(cluster env)\"")
	}
	return kubectl, image
}

// startPod applies the pod spec, deletes the pod at the end of the test,
// and waits until it is Ready.
func startPod(t *testing.T, kubectl, name, spec string) {
	t.Helper()
	if out, err := run(kubectl, spec, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := run(kubectl, "", "delete", "pod", name, "--ignore-not-found", "--wait=true", "--timeout=60s"); err != nil {
			t.Errorf("delete: %v\n%s", err, out)
		}
	})
	if out, err := run(kubectl, "", "wait", "--for=condition=Ready", "pod/"+name, "--timeout=90s"); err != nil {
		desc, _ := run(kubectl, "", "describe", "pod", name)
		t.Fatalf("pod not Ready: %v\n%s\n%s", err, out, desc)
	}
}
