//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Restricted mode on the test cluster: a namespace that enforces Pod
// Security "restricted" on the real apiserver, the chart's webhook (its
// own release, port and owner label, beside TestKubeWebhook), and the
// hello app without hostNetwork (the harness's pod network: a pod IP and
// no route, docs/cluster.md). The injected sidecar runs as the app's user
// with no capability; such a pod reaches no apiserver, so detection is
// read from the sidecar's log, restore from the file in the app
// container, kill from the app's restartCount.
//
//	eval "$(bin/cluster env)"; go test -tags e2e -run KubeRestricted -v ./test/e2e/
const (
	rsRelease = "podfim-r-e2e"
	rsOwner   = "r"
	rsPort    = 18150 // the webhook, on the node's loopback
)

func TestKubeRestricted(t *testing.T) {
	k := newKube(t)
	requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", rsPort))
	k.run(t, time.Minute, "delete", "mutatingwebhookconfiguration", rsRelease, "--ignore-not-found")
	img := kubeImages(t, k)
	sys := k.namespace(t, "podfim-r-system-")
	app := k.namespace(t, "podfim-r-app-")
	installWebhookAs(t, k, sys, img, rsRelease, rsOwner, rsPort)
	k.waitUntil(t, sys, "the webhook Deployment to be available", 2*time.Minute, time.Second, func() (bool, string) {
		r := k.run(t, 30*time.Second, "-n", sys, "get", "deployment", rsRelease+"-webhook", "-o", "jsonpath={.status.availableReplicas}")
		return strings.TrimSpace(r.Stdout) == "1", r.Out()
	})
	k.must(t, "label", "namespace", app, "podfim.io/inject=enabled", whOwner+"="+rsOwner,
		"pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest")

	// The namespace enforces: the default sidecar (uid 0, SYS_PTRACE) is
	// refused by the apiserver's PodSecurity admission.
	r := k.stdin(t, rsPod(img, "default-mode", "default", "log,metric,unready"), "-n", app, "create", "--dry-run=server")
	if r.Err == nil || !strings.Contains(r.Stderr, `violates PodSecurity "restricted:latest"`) || !strings.Contains(r.Stderr, `container "podfim"`) {
		t.Fatalf("a default-mode sidecar in a restricted namespace: %v %s", r.Err, r.Out())
	}
	t.Logf("default mode refused: %s", lastLines(strings.TrimSpace(r.Stderr), 1))

	k.apply(t, app, rsPod(img, "restore", "restricted", "log,metric,unready,restore")+"---\n"+
		rsPod(img, "kill", "restricted", "log,metric,unready,kill")+"---\n"+
		strings.Replace(rsPod(img, "unreadable", "restricted", "log,metric,unready"), "  annotations:\n", "  annotations:\n    podfim.io/quick-interval: 2s\n", 1))
	for _, name := range []string{"restore", "kill", "unreadable"} {
		k.waitReady(t, app, "app="+name, 2, 2*time.Minute)
	}
	checkRestrictedSidecar(t, k, app, "restore")

	t.Run("restore", func(t *testing.T) {
		logs := func() string { return k.logs(t, app, "restore", "podfim") }
		k.must(t, "-n", app, "exec", "restore", "-c", "app", "--", "/bin/busybox", "sh", "-c", tamperCmd)
		waitLog(t, logs, "integrity violation", page, 30*time.Second)
		waitLog(t, logs, "file restored", page, 30*time.Second)
		if got := k.must(t, "-n", app, "exec", "restore", "-c", "app", "--", "/bin/busybox", "cat", page); got != hello {
			t.Errorf("%s after restore: %q, want %q", page, got, hello)
		}
		if p := k.pods(t, app, "app=restore"); len(p) != 1 || p[0].Restarts["app"] != 0 {
			t.Errorf("restore restarted the app: %v", p)
		}
	})
	// What the app's user cannot read, the sidecar cannot either: a
	// whole-tree check that meets it says so (never a silent pass).
	t.Run("unreadable", func(t *testing.T) {
		logs := func() string { return k.logs(t, app, "unreadable", "podfim") }
		k.must(t, "-n", app, "exec", "unreadable", "-c", "app", "--", "/bin/busybox", "sh", "-c",
			"mkdir /www/locked && echo secret > /www/locked/key && chmod 000 /www/locked")
		l := waitLog(t, logs, "check incomplete", "", 30*time.Second)
		if !strings.Contains(fmt.Sprint(l), "/www/locked") {
			t.Errorf("incomplete check without the locked path: %v", l)
		}
		t.Logf("%v", l)
		// /www/locked is also an added file: with unready, the exec probe
		// of /readyz fails and the kubelet marks the sidecar not ready.
		k.waitUntil(t, app, "the exec readiness probe to fail on the open violation", time.Minute, 250*time.Millisecond, func() (bool, string) {
			r := k.run(t, 30*time.Second, "-n", app, "get", "pod", "unreadable", "-o",
				`jsonpath={range .status.containerStatuses[*]}{.name}={.ready}/{.restartCount} {end}`)
			return strings.TrimSpace(r.Stdout) == "app=true/0 podfim=false/0", r.Out()
		})
	})
	t.Run("kill", func(t *testing.T) {
		logs := func() string { return k.logs(t, app, "kill", "podfim") }
		k.must(t, "-n", app, "exec", "kill", "-c", "app", "--", "/bin/busybox", "sh", "-c", tamperCmd)
		waitLog(t, logs, "integrity violation", page, 30*time.Second)
		k.waitUntil(t, app, "the kubelet to restart the killed app", time.Minute, 250*time.Millisecond, func() (bool, string) {
			p := k.pods(t, app, "app=kill")
			return len(p) == 1 && p[0].Restarts["app"] >= 1, fmt.Sprint(p)
		})
		// The new container starts from the image.
		k.waitReady(t, app, "app=kill", 2, time.Minute)
		if got := k.must(t, "-n", app, "exec", "kill", "-c", "app", "--", "/bin/busybox", "cat", page); got != hello {
			t.Errorf("%s after the restart: %q, want %q", page, got, hello)
		}
	})
}

// checkRestrictedSidecar checks what the apiserver admitted: the sidecar
// runs as the app's user with no capability and exec probes, and the pod
// got an address of the harness's pod network.
func checkRestrictedSidecar(t *testing.T, k *kube, ns, name string) {
	t.Helper()
	var pod struct {
		Spec struct {
			HostNetwork bool `json:"hostNetwork"`
			Containers  []struct {
				Name            string `json:"name"`
				SecurityContext struct {
					RunAsUser    *int64 `json:"runAsUser"`
					RunAsNonRoot *bool  `json:"runAsNonRoot"`
					Capabilities struct {
						Add []string `json:"add"`
					} `json:"capabilities"`
				} `json:"securityContext"`
				ReadinessProbe struct {
					Exec *struct {
						Command []string `json:"command"`
					} `json:"exec"`
				} `json:"readinessProbe"`
			} `json:"containers"`
		} `json:"spec"`
		Status struct {
			PodIP string `json:"podIP"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(k.must(t, "-n", ns, "get", "pod", name, "-o", "json")), &pod); err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.Containers) != 2 || pod.Spec.Containers[1].Name != "podfim" {
		t.Fatalf("containers %+v, want app and the injected podfim", pod.Spec.Containers)
	}
	sc := pod.Spec.Containers[1]
	if sc.SecurityContext.RunAsUser == nil || *sc.SecurityContext.RunAsUser != 65532 || sc.SecurityContext.RunAsNonRoot == nil ||
		!*sc.SecurityContext.RunAsNonRoot || len(sc.SecurityContext.Capabilities.Add) != 0 || sc.ReadinessProbe.Exec == nil {
		t.Errorf("restricted sidecar %+v", sc)
	}
	if pod.Spec.HostNetwork || !strings.HasPrefix(pod.Status.PodIP, "203.0.113.") {
		t.Errorf("hostNetwork %v, podIP %q: want the harness's pod network", pod.Spec.HostNetwork, pod.Status.PodIP)
	}
	// The process, not only the spec: uid 65532, no capability in effect.
	status := k.must(t, "-n", ns, "exec", name, "-c", "app", "--", "/bin/busybox", "sh", "-c",
		`for d in /proc/[0-9]*; do if [ "$(/bin/busybox tr '\0' ' ' < $d/cmdline 2>/dev/null | /bin/busybox cut -d' ' -f1-2)" = "/podfim sidecar" ]; then /bin/busybox grep -E '^(Uid|CapEff)' $d/status; fi; done`)
	if !strings.Contains(status, "Uid:\t65532\t65532\t65532\t65532") || !strings.Contains(status, "CapEff:\t0000000000000000") {
		t.Errorf("the sidecar process: %q, want uid 65532 and no effective capability", status)
	}
	// Same uid, yet the app cannot reach the sidecar's files (its state
	// volume) through /proc/<pid>/root: the sidecar is not dumpable.
	r := k.run(t, 30*time.Second, "-n", ns, "exec", name, "-c", "app", "--", "/bin/busybox", "sh", "-c",
		`for d in /proc/[0-9]*; do if [ "$(/bin/busybox tr '\0' ' ' < $d/cmdline 2>/dev/null | /bin/busybox cut -d' ' -f1-2)" = "/podfim sidecar" ]; then /bin/busybox ls $d/root/var/lib/podfim; fi; done`)
	if !strings.Contains(r.Out(), "Permission denied") || strings.Contains(r.Out(), ".pfb") {
		t.Errorf("the app lists the sidecar's state through /proc/<pid>/root: %v %s", r.Err, r.Out())
	}
}

// rsPod is the hello app as Pod Security restricted wants it (non-root
// user and group, no escalation, no capability, RuntimeDefault seccomp), no
// hostNetwork, with podfim annotations. The kill pod sets its user in the
// container only: then the pod's infra (pause) process runs as root, which
// a sidecar without capabilities cannot inspect.
func rsPod(img kubeImageRefs, name, privileges, respond string) string {
	podIDs, appIDs := "\n    runAsUser: 65532\n    runAsGroup: 65532", ""
	if name == "kill" {
		podIDs, appIDs = "", "\n      runAsUser: 65532\n      runAsGroup: 65532"
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %[1]s
  labels: {app: %[1]s}
  annotations:
    podfim.io/privileges: %[2]s
    podfim.io/paths: /www
    podfim.io/respond: %[3]s
spec:
  terminationGracePeriodSeconds: 2
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true%[5]s
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: app
    image: %[4]s
    imagePullPolicy: Never
    args: [--dir=/www, --addr=127.0.0.1:8080]
    securityContext:%[6]s
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
`, name, privileges, respond, img.Hello, podIDs, appIDs)
}
