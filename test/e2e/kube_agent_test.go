//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The node agent on the real kubelet: the chart in mode agent (a DaemonSet)
// and 30 opted-in pods of the hello app with the podfim.io/integrity
// readiness gate, beside 5 that opt out. Ports of this file: 18300-18399.
const (
	agentAppPorts  = 18300 // 18300-18334: the apps
	agentPort      = 18390 // the agent's /metrics, /healthz, /readyz
	agentProtected = 30
	agentPlain     = 5
	agentSelector  = "app.kubernetes.io/name=podfim,app.kubernetes.io/component=agent"
)

// agentManifest renders the chart's agent for the test cluster: its image,
// the host network (the cluster's pods reach the API server on 127.0.0.1
// only) and a state directory of this run's own.
func agentManifest(t *testing.T, ns, stateDir string, img kubeImageRefs) string {
	t.Helper()
	return helmTemplate(t, ns, ns, "--set", "mode=agent", "--set", "demo.enabled=false",
		"--set", "sidecar.image.registry=", "--set", "sidecar.image.repository=localhost/podfim",
		"--set", "sidecar.image.tag="+img.Tag, "--set", "sidecar.image.pullPolicy=Never",
		"--set", "hostNetwork.enabled=true", "--set", "hostNetwork.apiServerHost=127.0.0.1", "--set-string", "hostNetwork.apiServerPort=6443",
		"--set", fmt.Sprintf("agent.port=%d", agentPort),
		"--set", "agent.stateDir="+stateDir,
		"--set", "agent.respond={log,metric,event,unready,restore,kill}")
}

// agentApp is one hello pod: opted in (the namespace's label) with the
// readiness gate and the responses respond, or opted out.
func agentApp(img kubeImageRefs, name string, port int, respond string) string {
	meta := fmt.Sprintf("  name: %s\n  labels: {app: hello-a}\n", name)
	gate := "  readinessGates: [{conditionType: podfim.io/integrity}]\n"
	if respond == "" {
		meta = fmt.Sprintf("  name: %s\n  labels: {app: hello-a, podfim.io/protect: disabled}\n", name)
		gate = ""
	} else {
		// The page's tree only, as in the sidecar tests: a restarted
		// container's mount points get new inodes and times.
		meta += fmt.Sprintf("  annotations: {podfim.io/respond: %q, podfim.io/paths: \"/www:ReadOnly\"}\n", respond)
	}
	return fmt.Sprintf(`---
apiVersion: v1
kind: Pod
metadata:
%sspec:
  hostNetwork: true
  terminationGracePeriodSeconds: 2
%s  containers:
  - name: app
    image: %s
    imagePullPolicy: Never
    args: [--dir=/www, --addr=127.0.0.1:%d]
    readinessProbe:
      httpGet: {host: 127.0.0.1, port: %d, path: /healthz}
      periodSeconds: 2
    securityContext:
      runAsUser: 65532
      runAsGroup: 65532
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      capabilities: {drop: [ALL]}
`, meta, gate, img.Hello, port, port)
}

// agentPods is every app pod of the test: name -> port.
func agentPods() map[string]int {
	pods := map[string]int{}
	for i := range agentProtected + agentPlain {
		name := fmt.Sprintf("hello-%02d", i)
		if i >= agentProtected {
			name = fmt.Sprintf("plain-%d", i-agentProtected)
		}
		pods[name] = agentAppPorts + i
	}
	return pods
}

// integrity returns "status reason" of the pod's podfim.io/integrity
// condition ("" when it has none).
func integrity(t *testing.T, k *kube, ns, pod string) string {
	t.Helper()
	r := k.run(t, 30*time.Second, "-n", ns, "get", "pod", pod, "-o",
		`jsonpath={range .status.conditions[?(@.type=="podfim.io/integrity")]}{.status} {.reason}{end}`)
	return strings.TrimSpace(r.Stdout)
}

// endpoints returns "pod=ready" of every endpoint of the Service hello.
func endpoints(t *testing.T, k *kube, ns string) map[string]string {
	t.Helper()
	out := k.must(t, "-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=hello",
		"-o", `jsonpath={range .items[*].endpoints[*]}{.targetRef.name}={.conditions.ready}{"\n"}{end}`)
	m := map[string]string{}
	for _, l := range strings.Fields(out) {
		if name, ready, ok := strings.Cut(l, "="); ok {
			m[name] = ready
		}
	}
	return m
}

// agentLogs returns the log of the agent's pod now.
func agentLogs(t *testing.T, k *kube, ns string) (string, string) {
	t.Helper()
	pod := strings.TrimSpace(k.must(t, "-n", ns, "get", "pods", "-l", agentSelector, "-o", "jsonpath={.items[0].metadata.name}"))
	return pod, k.logs(t, ns, pod, "agent")
}

// waitAgent waits until one agent pod is ready and returns its name.
func waitAgent(t *testing.T, k *kube, ns string) string {
	t.Helper()
	return k.waitReady(t, ns, agentSelector, 1, 2*time.Minute).Name
}

// findings returns the pods the agent's log reports integrity violations
// of, with the paths.
func findings(log, ns string) map[string][]string {
	m := map[string][]string{}
	for _, l := range parseLog(log) {
		if l.str("msg") == "integrity violation" && l.str("namespace") == ns {
			m[l.str("pod")] = append(m[l.str("pod")], l.str("path"))
		}
	}
	return m
}

// TestKubeAgent: one agent protects 30 pods; a tamper in one pod is found
// and that pod alone is made unready (out of the EndpointSlice, back once
// resolved), killed or restored; the others stay clean; an agent restart
// does not re-baseline the tampered pod; a pod deleted while the agent is
// down leaves no state behind after its next start.
func TestKubeAgent(t *testing.T) {
	k := newKube(t)
	img := kubeImages(t, k)
	for _, p := range append(slices.Collect(mapValues(agentPods())), agentPort) {
		requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", p))
	}
	ns := k.namespace(t, "podfim-a-")
	k.must(t, "label", "namespace", ns, "podfim.io/protect=enabled")
	stateDir := filepath.Join("/var/lib/podfim", "e2e-"+ns)
	t.Cleanup(func() { os.RemoveAll(stateDir) })

	k.apply(t, ns, agentManifest(t, ns, stateDir, img))
	// Its own pod is in the opted-in namespace: it must leave it alone.
	waitAgent(t, k, ns)

	var apps strings.Builder
	respond := map[string]string{"hello-00": "log,metric,event,unready", "hello-01": "log,metric,event,kill", "hello-02": "log,metric,event,restore"}
	for name, port := range agentPods() {
		r := respond[name]
		if r == "" && strings.HasPrefix(name, "hello-") {
			r = "log,metric,event,unready"
		}
		apps.WriteString(agentApp(img, name, port, r))
	}
	apps.WriteString("---\napiVersion: v1\nkind: Service\nmetadata: {name: hello}\nspec:\n  selector: {app: hello-a}\n  ports:\n  - {port: 80, targetPort: 8080}\n")
	start := time.Now()
	k.apply(t, ns, apps.String())
	took := k.waitUntil(t, ns, "35 pods ready, 30 of them through the gate", 4*time.Minute, time.Second, func() (bool, string) {
		ready := 0
		for _, p := range k.pods(t, ns, "app=hello-a") {
			if p.Phase == "Running" && p.Ready == 1 {
				ready++
			}
		}
		eps := endpoints(t, k, ns)
		n := 0
		for _, r := range eps {
			if r == "true" {
				n++
			}
		}
		return ready == agentProtected+agentPlain && n == agentProtected+agentPlain, fmt.Sprintf("%d containers ready, %d ready endpoints", ready, n)
	})
	t.Logf("35 pods ready and in the EndpointSlice %s after kubectl apply (%s)", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for name := range agentPods() {
		got := integrity(t, k, ns, name)
		want := "True Verified"
		if strings.HasPrefix(name, "plain-") {
			want = ""
		}
		if got != want {
			t.Errorf("pod %s: integrity condition %q, want %q", name, got, want)
		}
	}
	if v := sidecarMetric(t, agentPort, "podfim_agent_protected_containers"); v != agentProtected {
		t.Errorf("podfim_agent_protected_containers = %v, want %d", v, agentProtected)
	}
	// One image: its files are read once per node, not once per pod.
	hits := sidecarMetric(t, agentPort, `podfim_agent_shared_hashes_total{result="hit"}`)
	misses := sidecarMetric(t, agentPort, `podfim_agent_shared_hashes_total{result="miss"}`)
	t.Logf("shared hashes of the image's files: %v hits, %v misses over 30 pods' first checks", hits, misses)
	if hits <= 0 {
		t.Errorf("no file hash shared between 30 containers of one image (%v misses)", misses)
	}
	uids, _ := filepath.Glob(filepath.Join(stateDir, "pods", "*", "app", "baseline.pfb"))
	if len(uids) != agentProtected {
		t.Errorf("%d first-sight baselines in %s, want %d", len(uids), stateDir, agentProtected)
	}

	agentUnready(t, k, ns)
	agentKillRestore(t, k, ns)
	seen := agentRestart(t, k, ns)
	agentDeletedWhileDown(t, k, ns, stateDir)

	// The others stayed clean: no finding, no restart, the gate True.
	_, log := agentLogs(t, k, ns)
	for pod, paths := range findings(seen+log, ns) {
		if pod != "hello-00" && pod != "hello-01" && pod != "hello-02" {
			t.Errorf("findings in pod %s, which nobody touched: %v", pod, paths)
		}
	}
	for _, p := range k.pods(t, ns, "app=hello-a") {
		if p.Name != "hello-01" && p.Name != "hello-00" && p.Restarts["app"] != 0 {
			t.Errorf("pod %s restarted: %v", p.Name, p)
		}
		if strings.HasPrefix(p.Name, "hello-") {
			if c := integrity(t, k, ns, p.Name); c != "True Verified" {
				t.Errorf("pod %s at the end: integrity %q", p.Name, c)
			}
		}
	}
}

// killContainer SIGKILLs the processes of the pod's app container from the
// host (the test runs on the node, as root): /hello is its pid
// namespace's init, which ignores a SIGKILL sent from inside.
func killContainer(t *testing.T, k *kube, ns, pod string) {
	t.Helper()
	id := strings.TrimSpace(k.must(t, "-n", ns, "get", "pod", pod, "-o", `jsonpath={.status.containerStatuses[?(@.name=="app")].containerID}`))
	_, id, _ = strings.Cut(id, "://")
	if len(id) < 12 {
		t.Fatalf("pod %s: no container ID %q", pod, id)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	n := 0
	for _, f := range procs {
		data, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(data), id) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(f, "/proc/%d/cgroup", &pid); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no process of container %s found to kill", id)
	}
}

func mapValues(m map[string]int) func(func(int) bool) {
	return func(yield func(int) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// agentUnready: the tampered pod alone leaves the Service's ready
// endpoints, its condition says why; the others stay in.
func agentUnready(t *testing.T, k *kube, ns string) {
	tamperNative(t, k, ns, "hello-00")
	left := k.waitUntil(t, ns, "hello-00 unready through the gate", time.Minute, 200*time.Millisecond, func() (bool, string) {
		eps := endpoints(t, k, ns)
		c := integrity(t, k, ns, "hello-00")
		return eps["hello-00"] == "false" && c == "False Violation", fmt.Sprintf("endpoint %q, condition %q", eps["hello-00"], c)
	})
	t.Logf("hello-00 tampered: out of the EndpointSlice %s later", left.Round(time.Millisecond))
	for name, ready := range endpoints(t, k, ns) {
		if name != "hello-00" && ready != "true" {
			t.Errorf("endpoint %s ready=%s after hello-00 was tampered", name, ready)
		}
	}
	msg := k.must(t, "-n", ns, "get", "pod", "hello-00", "-o", `jsonpath={.status.conditions[?(@.type=="podfim.io/integrity")].message}`)
	if !strings.Contains(msg, "/www/index.html") {
		t.Errorf("the condition's message %q does not name the page", msg)
	}
}

// agentKillRestore: kill restarts the tampered container from its image
// (RESTARTS 1, the page healed); restore writes the page back without a
// restart.
func agentKillRestore(t *testing.T, k *kube, ns string) {
	ports := agentPods()
	tamperNative(t, k, ns, "hello-01")
	k.waitUntil(t, ns, "hello-01 killed and started afresh", time.Minute, 250*time.Millisecond, func() (bool, string) {
		p := k.pods(t, ns, "app=hello-a")
		i := slices.IndexFunc(p, func(s podState) bool { return s.Name == "hello-01" })
		return i >= 0 && p[i].Restarts["app"] == 1 && p[i].Ready == 1, fmt.Sprint(p[i])
	})
	waitBody(t, fmt.Sprintf("http://127.0.0.1:%d/", ports["hello-01"]), hello, 30*time.Second)
	k.waitUntil(t, ns, "hello-01 verified again", time.Minute, 250*time.Millisecond, func() (bool, string) {
		c := integrity(t, k, ns, "hello-01")
		return c == "True Verified", c
	})
	tamperNative(t, k, ns, "hello-02")
	healed := waitBody(t, fmt.Sprintf("http://127.0.0.1:%d/", ports["hello-02"]), hello, 30*time.Second)
	t.Logf("hello-02 restored %s after the tamper", healed.Round(time.Millisecond))
	for _, p := range k.pods(t, ns, "app=hello-a") {
		if p.Name == "hello-02" && p.Restarts["app"] != 0 {
			t.Errorf("restore restarted hello-02: %v", p)
		}
	}
}

// agentRestart: a new agent finds the stored baseline of the tampered
// hello-00 and the violation again, instead of taking the tampered page as
// its baseline; then the app's restart resolves it. It returns the log of
// the agent it replaced.
func agentRestart(t *testing.T, k *kube, ns string) string {
	old, log := agentLogs(t, k, ns)
	k.must(t, "-n", ns, "delete", "pod", old, "--wait=true")
	pod := waitAgent(t, k, ns)
	if pod == old {
		t.Fatalf("the agent pod %s was not replaced", pod)
	}
	// (A restored file, hello-02's, differs from its first-sight baseline
	// in inode and ctime: a new agent restores it again, as a restarted
	// sidecar does.)
	k.waitUntil(t, ns, "the new agent finding hello-00's page again", time.Minute, 250*time.Millisecond, func() (bool, string) {
		f := findings(k.logs(t, ns, pod, "agent"), ns)
		return slices.Contains(f["hello-00"], "/www/index.html"), fmt.Sprint(f)
	})
	// One BaselineCreated ever (an Event repeated is counted, not new).
	counts := k.must(t, "-n", ns, "get", "events", "--field-selector", "reason=BaselineCreated,involvedObject.name=hello-00",
		"-o", "jsonpath={.items[*].count}")
	if strings.TrimSpace(counts) != "1" {
		t.Errorf("hello-00's BaselineCreated Events: counts %q, want one of 1: the new agent re-baselined it", counts)
	}
	k.waitUntil(t, ns, "hello-00 still out of service", 30*time.Second, 250*time.Millisecond, func() (bool, string) {
		c := integrity(t, k, ns, "hello-00")
		return c == "False Violation", c
	})
	killContainer(t, k, ns, "hello-00")
	back := k.waitUntil(t, ns, "hello-00 back in the EndpointSlice", time.Minute, 200*time.Millisecond, func() (bool, string) {
		eps := endpoints(t, k, ns)
		c := integrity(t, k, ns, "hello-00")
		return eps["hello-00"] == "true" && c == "True Verified", fmt.Sprintf("endpoint %q, condition %q", eps["hello-00"], c)
	})
	t.Logf("hello-00 restarted from its image: verified and back in the EndpointSlice %s later", back.Round(time.Millisecond))
	return log
}

// agentDeletedWhileDown: with the agent gone from the node, a protected pod
// is deleted; the next agent removes its state.
func agentDeletedWhileDown(t *testing.T, k *kube, ns, stateDir string) {
	uid := podUID(t, k, ns, "hello-29")
	dir := filepath.Join(stateDir, "pods", uid)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("hello-29's state: %v", err)
	}
	ds := strings.TrimSpace(k.must(t, "-n", ns, "get", "daemonsets", "-l", agentSelector, "-o", "jsonpath={.items[0].metadata.name}"))
	k.must(t, "-n", ns, "patch", "daemonset", ds, "--type=merge", "-p", `{"spec":{"template":{"spec":{"nodeSelector":{"podfim.io/e2e":"nowhere"}}}}}`)
	k.waitUntil(t, ns, "no agent pod", 2*time.Minute, 500*time.Millisecond, func() (bool, string) {
		p := k.pods(t, ns, agentSelector)
		return len(p) == 0, fmt.Sprint(p)
	})
	k.must(t, "-n", ns, "delete", "pod", "hello-29", "--wait=true")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("hello-29's state went before an agent saw the deletion: %v", err)
	}
	k.must(t, "-n", ns, "patch", "daemonset", ds, "--type=json", "-p", `[{"op":"remove","path":"/spec/template/spec/nodeSelector/podfim.io~1e2e"}]`)
	waitAgent(t, k, ns)
	// Every other pod keeps its state (a pod listed late by a new agent
	// is collected once its deletion is seen: wait, then count).
	k.waitUntil(t, ns, "hello-29's state removed, the 29 others' kept", time.Minute, 250*time.Millisecond, func() (bool, string) {
		_, err := os.Stat(dir)
		left, _ := filepath.Glob(filepath.Join(stateDir, "pods", "*"))
		var who []string
		for _, d := range left {
			name, _ := os.ReadFile(filepath.Join(d, "pod"))
			who = append(who, strings.TrimSpace(string(name)))
		}
		slices.Sort(who)
		return os.IsNotExist(err) && len(left) == agentProtected-1, fmt.Sprintf("hello-29's: %v; %d pods' state: %v", err, len(left), who)
	})
}
