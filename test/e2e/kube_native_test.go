//go:build e2e

package e2e

// The sidecar's Kubernetes features on the real cluster (issue 5): Events
// on the pod, the quarantine label, readiness taking the pod out of its
// Service's EndpointSlice and back, the delete response and its loop guard,
// and a sidecar without RBAC that still detects and responds.
//
//	go test -tags e2e -run KubeNative -v ./test/e2e/   (PODFIM_E2E_TAG=d)
//
// Ports 18200-18299 of the node are this file's (the pods use the host
// network).

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// nativeOpts shape the manifest of one test.
type nativeOpts struct {
	appPort, sidecarPort int
	respond, escalate    string
	extraArgs            []string
	rbac                 bool   // a ServiceAccount with the sidecar's Role; false: the namespace's default, no Role
	rbacFor              string // the responses the Role is derived from; empty: respond and escalate
	bare                 bool   // a Pod instead of a Deployment (its image can be changed in place)
	appImage             string // the app's image, pulled (a registry's); empty: the imported hello
	appCommand           string // a shell command line run before the app (busybox sh -c ...; exec)
	keyConfigMap         string // a ConfigMap mounted into the sidecar at /etc/podfim/key
	baselinesConfigMap   string // a ConfigMap mounted into the sidecar at /etc/podfim/baselines
	appVolume            string // an emptyDir mounted into the app there
}

// nativeManifest is a Deployment of hello + the podfim sidecar, a Service
// selecting it and, with rbac, a ServiceAccount bound to the least
// privilege the responses need (what the chart's sidecarRBAC renders).
func nativeManifest(t *testing.T, ns string, img kubeImageRefs, o nativeOpts) string {
	sa := "default"
	var rbac string
	if o.rbac {
		// The chart's sidecarRBAC, derived from the responses: what this
		// test proves enough is what users install.
		sa = "podfim-d"
		responses := strings.Split(o.respond+","+o.escalate, ",")
		if o.rbacFor != "" {
			responses = strings.Split(o.rbacFor, ",")
		}
		slices.Sort(responses)
		rbac = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: podfim-d}\n---\n" +
			helmTemplate(t, "d", ns, "--set", "demo.enabled=false", "--set", "sidecarRBAC.enabled=true",
				"--set", "sidecarRBAC.responses={"+strings.Join(slices.Compact(responses), ",")+"}",
				"--set", "sidecarRBAC.serviceAccounts={podfim-d}") + "\n---\n"
	}
	args := []string{"sidecar", "--respond=" + o.respond, "--escalate=" + o.escalate,
		fmt.Sprintf("--listen=127.0.0.1:%d", o.sidecarPort), "--state-dir=/var/lib/podfim",
		"--target-exe=/hello", "--quick-interval=2s", "--full-interval=1h",
		// The page's tree only: a restarted container's /, /etc and /var
		// (mount points the runtime creates) get new inodes and times,
		// which the default policy reports.
		`--policy-yaml={"version":1,"rules":[{"path":"/","preset":"Ignore"},{"path":"/www","preset":"ReadOnly"}]}`}
	args = append(args, o.extraArgs...)
	appImage, pull := img.Hello, "Never"
	if o.appImage != "" {
		appImage, pull = o.appImage, "IfNotPresent"
	}
	appStart := fmt.Sprintf("args: [--dir=/www, --addr=127.0.0.1:%d]", o.appPort)
	if o.appCommand != "" {
		appStart = fmt.Sprintf("command: [/bin/busybox, sh, -c, %q]", fmt.Sprintf("%s; exec /hello --dir=/www --addr=127.0.0.1:%d", o.appCommand, o.appPort))
	}
	var extraMounts, extraVolumes strings.Builder
	for _, cm := range []struct{ name, dir string }{{o.keyConfigMap, "/etc/podfim/key"}, {o.baselinesConfigMap, "/etc/podfim/baselines"}} {
		if cm.name != "" {
			fmt.Fprintf(&extraMounts, "  - {name: %s, mountPath: %s, readOnly: true}\n", cm.name, cm.dir)
			fmt.Fprintf(&extraVolumes, "- name: %s\n  configMap: {name: %s}\n", cm.name, cm.name)
		}
	}
	var appMounts string
	if o.appVolume != "" {
		appMounts = fmt.Sprintf("  volumeMounts:\n  - {name: app-volume, mountPath: %s}\n", o.appVolume)
		extraVolumes.WriteString("- name: app-volume\n  emptyDir: {}\n")
	}
	var argLines strings.Builder
	for _, a := range args {
		fmt.Fprintf(&argLines, "  - %q\n", a)
	}
	spec := fmt.Sprintf(`serviceAccountName: %[1]s
automountServiceAccountToken: true
shareProcessNamespace: true
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
terminationGracePeriodSeconds: 5
containers:
- name: app
  image: %[2]s
  imagePullPolicy: %[9]s
  %[7]s
  readinessProbe:
    httpGet: {host: 127.0.0.1, port: %[3]d, path: /healthz}
    periodSeconds: 1
  securityContext:
    runAsUser: 65532
    runAsGroup: 65532
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    capabilities: {drop: [ALL]}
%[11]s- name: podfim
  image: %[4]s
  imagePullPolicy: Never
  args:
%[5]s  env:
  - name: POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  - name: POD_NAMESPACE
    valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
  - name: POD_UID
    valueFrom: {fieldRef: {fieldPath: metadata.uid}}
  - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
  - {name: KUBERNETES_SERVICE_PORT, value: "6443"}
  readinessProbe:
    httpGet: {host: 127.0.0.1, port: %[6]d, path: /readyz}
    periodSeconds: 1
    failureThreshold: 1
  securityContext:
    runAsUser: 0
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities:
      drop: [ALL]
      add: [SYS_PTRACE, KILL, DAC_READ_SEARCH, CHOWN, FOWNER, DAC_OVERRIDE]
  volumeMounts:
  - {name: state, mountPath: /var/lib/podfim}
%[8]svolumes:
- name: state
  emptyDir: {}
%[10]s`, sa, appImage, o.appPort, img.Podfim, argLines.String(), o.sidecarPort, appStart, extraMounts.String(), pull, extraVolumes.String(), appMounts)
	workload := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: hello}\nspec:\n  replicas: 1\n" +
		"  selector:\n    matchLabels: {app: hello-d}\n  template:\n    metadata:\n      labels: {app: hello-d}\n    spec:\n" + indent(spec, 6)
	if o.bare {
		workload = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hello\n  labels: {app: hello-d}\nspec:\n" + indent(spec, 2)
	}
	return rbac + workload + fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  selector: {app: hello-d}
  ports:
  - {port: 80, targetPort: %d}
`, o.appPort)
}

// indent indents every line of text by n spaces.
func indent(text string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.SplitAfter(text, "\n")
	for i, l := range lines {
		if l != "" && l != "\n" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "")
}

// nativePod is the pod of the test's Deployment.
type nativePod struct {
	name, uid string
}

// startNative applies the manifest and waits for the pod to be 2/2 ready.
func startNative(t *testing.T, k *kube, o nativeOpts) (string, nativePod) {
	t.Helper()
	for _, p := range []int{o.appPort, o.sidecarPort} {
		requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", p))
	}
	img := kubeImages(t, k)
	ns := k.namespace(t, "podfim-d-")
	k.apply(t, ns, nativeManifest(t, ns, img, o))
	p := k.waitReady(t, ns, "app=hello-d", 2, 2*time.Minute)
	return ns, nativePod{name: p.Name, uid: podUID(t, k, ns, p.Name)}
}

func podUID(t *testing.T, k *kube, ns, pod string) string {
	t.Helper()
	return strings.TrimSpace(k.must(t, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.metadata.uid}"))
}

// tamperNative rewrites the page inside the app container.
func tamperNative(t *testing.T, k *kube, ns, pod string) {
	t.Helper()
	k.must(t, "-n", ns, "exec", pod, "-c", "app", "--", "/bin/busybox", "sh", "-c", "echo Hacked > /www/index.html")
}

// podEvents returns "reason uid" of every Event whose involvedObject is
// the pod named pod, as `kubectl get events` shows them.
func podEvents(t *testing.T, k *kube, ns, pod string) []string {
	t.Helper()
	out := k.must(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.kind=Pod,involvedObject.name="+pod,
		"-o", `jsonpath={range .items[*]}{.reason} {.involvedObject.uid} {.source.component}{"\n"}{end}`)
	return strings.Split(strings.TrimSpace(out), "\n")
}

// waitEvents waits until podfim posted Events with every reason on the pod
// (and its UID).
func waitEvents(t *testing.T, k *kube, ns string, pod nativePod, reasons ...string) {
	t.Helper()
	k.waitUntil(t, ns, fmt.Sprintf("Events %v on %s", reasons, pod.name), time.Minute, 500*time.Millisecond, func() (bool, string) {
		evs := podEvents(t, k, ns, pod.name)
		for _, r := range reasons {
			if !slices.Contains(evs, r+" "+pod.uid+" podfim") {
				return false, strings.Join(evs, "; ")
			}
		}
		return true, ""
	})
}

// endpointReady returns the ready conditions of the endpoints of the
// Service hello's EndpointSlices ("true", "false"; none: "").
func endpointReady(t *testing.T, k *kube, ns string) string {
	t.Helper()
	return strings.TrimSpace(k.must(t, "-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=hello",
		"-o", "jsonpath={.items[*].endpoints[*].conditions.ready}"))
}

func waitEndpoint(t *testing.T, k *kube, ns, want string) time.Duration {
	t.Helper()
	return k.waitUntil(t, ns, "the EndpointSlice endpoint ready="+want, time.Minute, 200*time.Millisecond, func() (bool, string) {
		got := endpointReady(t, k, ns)
		return got == want, fmt.Sprintf("ready=%q", got)
	})
}

func podLabel(t *testing.T, k *kube, ns, pod, label string) string {
	t.Helper()
	return k.must(t, "-n", ns, "get", "pod", pod, "-o", "jsonpath={.metadata.labels."+strings.NewReplacer(".", `\.`, "/", `\/`).Replace(label)+"}")
}

// sidecarMetric returns the value of one series of the sidecar's /metrics
// (on 127.0.0.1: the pod uses the host network), -1 when it is missing.
func sidecarMetric(t *testing.T, port int, series string) float64 {
	t.Helper()
	code, body, err := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// restartApp kills the app's process so that the kubelet starts its
// container afresh from the image, and waits for the restart.
func restartApp(t *testing.T, k *kube, ns, pod string) {
	t.Helper()
	// (Debian's static busybox has kill and pidof, not pkill.) The exec may
	// lose its session to the kill it sends: only the restart counts.
	k.run(t, 30*time.Second, "-n", ns, "exec", pod, "-c", "app", "--", "/bin/busybox", "sh", "-c", "kill -9 $(/bin/busybox pidof hello)")
	k.waitUntil(t, ns, "the app container restarted", time.Minute, 250*time.Millisecond, func() (bool, string) {
		p := k.pods(t, ns, "app=hello-d")
		return len(p) == 1 && p[0].Restarts["app"] == 1, fmt.Sprint(p)
	})
}

// TestKubeNativeQuarantine: tamper -> Events on the pod, the quarantine
// label, the pod unready and out of its Service's EndpointSlice; the app
// restarted from its image -> violation resolved, label removed, back in
// the EndpointSlice.
func TestKubeNativeQuarantine(t *testing.T) {
	k := newKube(t)
	o := nativeOpts{appPort: 18210, sidecarPort: 18211, respond: "log,metric,event,unready,quarantine", escalate: "unready", rbac: true}
	ns, pod := startNative(t, k, o)
	waitEndpoint(t, k, ns, "true")
	waitEvents(t, k, ns, pod, "BaselineCreated")

	tamperNative(t, k, ns, pod.name)
	waitEvents(t, k, ns, pod, "FileChanged", "PodQuarantined")
	k.waitUntil(t, ns, "the quarantine label", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		v := podLabel(t, k, ns, pod.name, "podfim.io/quarantined")
		return v == "true", v
	})
	// The first finding may be the page's directory (the write copies /www
	// up on overlayfs); the annotation names the page at its next rewrite,
	// which the reporter spaces by kube.annotationEvery (10 s).
	k.waitUntil(t, ns, "the quarantine annotation naming the page", 30*time.Second, 250*time.Millisecond, func() (bool, string) {
		ann := k.must(t, "-n", ns, "get", "pod", pod.name, "-o", `jsonpath={.metadata.annotations.podfim\.io/quarantine}`)
		return strings.Contains(ann, `"/www/index.html"`), ann
	})
	left := waitEndpoint(t, k, ns, "false")
	t.Logf("the pod left the Service's ready endpoints %v after the Events were seen", left.Round(time.Millisecond))
	t.Logf("kubectl get events:\n%s", k.must(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name="+pod.name))

	// Resolve: the app container restarts from its image (the kubelet's
	// answer to a crash, or podfim's kill), and its first full check is
	// clean.
	restartApp(t, k, ns, pod.name)
	waitEvents(t, k, ns, pod, "ViolationResolved", "PodReleased")
	k.waitUntil(t, ns, "the quarantine label removed", 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		v := podLabel(t, k, ns, pod.name, "podfim.io/quarantined")
		return v == "", v
	})
	back := waitEndpoint(t, k, ns, "true")
	t.Logf("back in the Service's ready endpoints %v after the violation was resolved", back.Round(time.Millisecond))
	if v := sidecarMetric(t, o.sidecarPort, `podfim_kube_requests_total{operation="patch_pod",result="ok"}`); v < 2 {
		t.Errorf("patch_pod ok = %v, want at least 2 (label, unlabel)", v)
	}
	if v := sidecarMetric(t, o.sidecarPort, `podfim_kube_events_total{result="sent"}`); v < 5 {
		t.Errorf("events sent = %v, want at least 5", v)
	}
	if v := sidecarMetric(t, o.sidecarPort, "podfim_pod_quarantined"); v != 0 {
		t.Errorf("podfim_pod_quarantined = %v after the release", v)
	}
}

// TestKubeNativeDelete: delete -> the pod is deleted and its ReplicaSet
// starts a fresh one (PodDeleted Event on the old pod); the guard refuses
// to delete the replacement while it is younger than --delete-min-age and
// escalates to quarantine instead.
func TestKubeNativeDelete(t *testing.T) {
	k := newKube(t)
	const minAge = 20 * time.Second
	o := nativeOpts{appPort: 18220, sidecarPort: 18221, respond: "log,event,delete", escalate: "unready,quarantine", rbac: true,
		extraArgs: []string{"--delete-min-age=" + minAge.String()}}
	ns, pod := startNative(t, k, o)
	created, err := time.Parse(time.RFC3339, strings.TrimSpace(k.must(t, "-n", ns, "get", "pod", pod.name, "-o", "jsonpath={.metadata.creationTimestamp}")))
	if err != nil {
		t.Fatal(err)
	}
	if wait := time.Until(created.Add(minAge + 2*time.Second)); wait > 0 {
		time.Sleep(wait)
	}

	tamperNative(t, k, ns, pod.name)
	waitEvents(t, k, ns, pod, "FileChanged", "PodDeleted")
	var next nativePod
	k.waitUntil(t, ns, "a replacement pod", 2*time.Minute, 500*time.Millisecond, func() (bool, string) {
		pods := k.pods(t, ns, "app=hello-d")
		for _, p := range pods {
			if p.Name != pod.name && p.Phase == "Running" && p.Ready == 2 {
				next.name = p.Name
				return true, ""
			}
		}
		return false, fmt.Sprint(pods)
	})
	next.uid = podUID(t, k, ns, next.name)
	k.waitUntil(t, ns, "the old pod gone", time.Minute, 500*time.Millisecond, func() (bool, string) {
		r := k.run(t, 30*time.Second, "-n", ns, "get", "pod", pod.name)
		return r.Err != nil && strings.Contains(r.Stderr, "NotFound"), r.Out()
	})

	// The replacement is tampered at once: deleting it again would be a
	// loop. The guard escalates to quarantine instead.
	tamperNative(t, k, ns, next.name)
	waitEvents(t, k, ns, next, "FileChanged", "DeleteRefused", "PodQuarantined")
	if v := podLabel(t, k, ns, next.name, "podfim.io/quarantined"); v != "true" {
		t.Errorf("the replacement is not quarantined: %q", v)
	}
	if got := k.pods(t, ns, "app=hello-d"); len(got) != 1 || got[0].Name != next.name {
		t.Errorf("pods after the refused delete: %v", got)
	}
}

// TestKubeNativeDeleteForbidden: the Role lacks delete on pods, so the
// API server refuses the deletion the guard let through: the pod stays,
// and the escalation (unready, quarantine) runs for the finding instead of
// nothing at all.
func TestKubeNativeDeleteForbidden(t *testing.T) {
	k := newKube(t)
	o := nativeOpts{appPort: 18260, sidecarPort: 18261, respond: "log,event,delete", escalate: "unready,quarantine", rbac: true,
		rbacFor: "event,quarantine", extraArgs: []string{"--delete-min-age=0s"}}
	ns, pod := startNative(t, k, o)
	waitEndpoint(t, k, ns, "true")
	waitEvents(t, k, ns, pod, "BaselineCreated")

	tamperNative(t, k, ns, pod.name)
	waitEvents(t, k, ns, pod, "FileChanged", "PodDeleted", "DeleteRefused", "PodQuarantined")
	if v := podLabel(t, k, ns, pod.name, "podfim.io/quarantined"); v != "true" {
		t.Errorf("not quarantined after the refused deletion: %q", v)
	}
	waitEndpoint(t, k, ns, "false")
	if got := k.pods(t, ns, "app=hello-d"); len(got) != 1 || got[0].Name != pod.name {
		t.Errorf("pods after the refused deletion: %v", got)
	}
	// The tamper may be two findings (the page, and its directory's
	// copy-up): the second is refused without a request.
	if v := sidecarMetric(t, o.sidecarPort, `podfim_kube_requests_total{operation="delete_pod",result="error"}`); v != 1 {
		t.Errorf("delete_pod errors = %v, want 1 (a refusal is not retried)", v)
	}
	if v := sidecarMetric(t, o.sidecarPort, `podfim_actions_total{action="delete",result="error"}`); v < 1 {
		t.Errorf("delete action errors = %v, want at least 1", v)
	}
}

// TestKubeNativeNoRBAC: the same pod with the namespace's default service
// account and no Role. The sidecar still detects, and the quarantine that
// needs no RBAC works: /readyz fails while the violation is open, the pod
// leaves its Service's EndpointSlice, and comes back once the restarted
// app is verified clean. The API's refusals are logged, never fatal.
func TestKubeNativeNoRBAC(t *testing.T) {
	k := newKube(t)
	o := nativeOpts{appPort: 18230, sidecarPort: 18231, respond: "log,metric,event,unready,quarantine", escalate: "unready", rbac: false}
	ns, pod := startNative(t, k, o)
	waitEndpoint(t, k, ns, "true")
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", o.sidecarPort)

	tamperNative(t, k, ns, pod.name)
	logs := func() string { return k.logs(t, ns, pod.name, "podfim") }
	waitLog(t, logs, "integrity violation", "/www/index.html", time.Minute)
	body, _ := waitStatus(t, readyz, http.StatusServiceUnavailable, 30*time.Second)
	if !strings.Contains(body, "integrity violation: /www/index.html") {
		t.Errorf("/readyz says %q", body)
	}
	left := waitEndpoint(t, k, ns, "false")
	t.Logf("without RBAC the pod left the Service's ready endpoints too (%v)", left.Round(time.Millisecond))

	// The refusals, logged with the permission to grant.
	k.waitUntil(t, ns, "the RBAC refusal in the log", 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		l := logs()
		return strings.Contains(l, "Kubernetes API request failed") && strings.Contains(l, "forbidden by RBAC"), lastLines(l, 5)
	})
	for _, want := range []string{`verbs: [create], resources: [events]`, `verbs: [patch], resources: [pods]`} {
		if !strings.Contains(logs(), want) {
			t.Errorf("the sidecar's log does not name the missing permission %q", want)
		}
	}
	if v := sidecarMetric(t, o.sidecarPort, `podfim_kube_requests_total{operation="write_event",result="error"}`); v < 1 {
		t.Errorf("write_event errors = %v", v)
	}

	restartApp(t, k, ns, pod.name)
	waitStatus(t, readyz, http.StatusOK, 30*time.Second)
	back := waitEndpoint(t, k, ns, "true")
	t.Logf("back in the Service's ready endpoints %v after the restarted app was verified", back.Round(time.Millisecond))
	waitBody(t, fmt.Sprintf("http://127.0.0.1:%d/", o.appPort), "Hello, world!\n", 30*time.Second)

	// Nothing was posted, and the sidecar never restarted.
	if evs := podEvents(t, k, ns, pod.name); slices.ContainsFunc(evs, func(e string) bool { return strings.HasSuffix(e, " podfim") }) {
		t.Errorf("Events posted without RBAC: %v", evs)
	}
	if p := k.pods(t, ns, "app=hello-d"); len(p) != 1 || p[0].Restarts["podfim"] != 0 {
		t.Errorf("pods %v: the sidecar must not restart over API errors", p)
	}
}

// TestKubeNativeChart renders the chart's sidecar RBAC and monitoring parts
// (the monitoring CRDs are not installed in the test cluster, so the
// structure is checked here; the RBAC is applied by the tests above).
func TestKubeNativeChart(t *testing.T) {
	type object struct {
		Kind     string
		Metadata struct {
			Name, Namespace string
			Labels          map[string]string
		}
		Rules []struct {
			Resources, Verbs []string
		}
		RoleRef  struct{ Kind, Name string }
		Subjects []struct{ Kind, Name, Namespace string }
		Spec     map[string]any
		Data     map[string]string
	}
	render := func(args ...string) []object {
		t.Helper()
		out := helmTemplate(t, "r", "podfim-d-chart", append([]string{"--set", "demo.enabled=false"}, args...)...)
		var objs []object
		for _, doc := range strings.Split(out, "\n---") {
			var o object
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("rendered YAML: %v\n%s", err, doc)
			}
			if o.Kind != "" {
				objs = append(objs, o)
			}
		}
		return objs
	}
	kinds := func(objs []object) []string {
		var k []string
		for _, o := range objs {
			k = append(k, o.Kind+"/"+o.Metadata.Namespace+"/"+o.Metadata.Name)
		}
		slices.Sort(k)
		return k
	}

	// Off by default: no API access for sidecars, no CRD objects.
	if got := render(); len(got) != 0 {
		t.Errorf("default values render %v, want nothing (demo off)", kinds(got))
	}

	// Least privilege per response. Events only with event: without it
	// the sidecar posts none (not even those of other responses).
	for _, tc := range []struct {
		responses string
		podVerbs  []string
		events    bool
	}{
		{"{log,metric,unready}", []string{"get"}, false},
		{"{log,event,unready}", []string{"get"}, true},
		{"{event,quarantine}", []string{"get", "patch"}, true},
		{"{quarantine}", []string{"get", "patch"}, false},
		{"{event,delete}", []string{"get", "delete"}, true},
		{"{event,quarantine,delete,kill,restore}", []string{"get", "patch", "delete"}, true},
	} {
		objs := render("--set", "sidecarRBAC.enabled=true", "--set", "sidecarRBAC.responses="+tc.responses,
			"--set", "sidecarRBAC.serviceAccounts={web,api}")
		if got, want := kinds(objs), []string{"Role/podfim-d-chart/r-podfim-sidecar", "RoleBinding/podfim-d-chart/r-podfim-sidecar"}; !slices.Equal(got, want) {
			t.Fatalf("%s: %v, want %v", tc.responses, got, want)
		}
		role, binding := objs[0], objs[1]
		wantRules := 1
		if tc.events {
			wantRules = 2
		}
		if len(role.Rules) != wantRules || !slices.Equal(role.Rules[0].Resources, []string{"pods"}) || !slices.Equal(role.Rules[0].Verbs, tc.podVerbs) ||
			tc.events && (!slices.Equal(role.Rules[1].Resources, []string{"events"}) || !slices.Equal(role.Rules[1].Verbs, []string{"create", "patch"})) {
			t.Errorf("%s: rules %+v, want pods %v and events create/patch: %v", tc.responses, role.Rules, tc.podVerbs, tc.events)
		}
		if binding.RoleRef.Kind != "Role" || binding.RoleRef.Name != role.Metadata.Name || len(binding.Subjects) != 2 ||
			binding.Subjects[1].Name != "api" || binding.Subjects[1].Namespace != "podfim-d-chart" || binding.Subjects[1].Kind != "ServiceAccount" {
			t.Errorf("%s: binding %+v", tc.responses, binding)
		}
	}
	// Without responses of its own, sidecarRBAC follows sidecar.respond.
	objs := render("--set", "sidecarRBAC.enabled=true", "--set", "sidecar.respond={log,kill}")
	if len(objs) != 2 || len(objs[0].Rules) != 1 || !slices.Equal(objs[0].Rules[0].Verbs, []string{"get"}) {
		t.Errorf("from sidecar.respond: %+v", objs)
	}
	// One ClusterRole, bound per namespace: still a namespaced grant.
	objs = render("--set", "sidecarRBAC.enabled=true", "--set", "sidecarRBAC.clusterRole=true", "--set", "sidecarRBAC.namespaces={shop,blog}")
	if got, want := kinds(objs), []string{"ClusterRole//r-podfim-sidecar", "RoleBinding/blog/r-podfim-sidecar", "RoleBinding/shop/r-podfim-sidecar"}; !slices.Equal(got, want) {
		t.Errorf("clusterRole: %v, want %v", got, want)
	}
	for _, o := range objs {
		if o.Kind == "ClusterRoleBinding" || (o.Kind == "RoleBinding" && o.RoleRef.Kind != "ClusterRole") {
			t.Errorf("clusterRole: %s %s binds %+v", o.Kind, o.Metadata.Name, o.RoleRef)
		}
	}
	// The schema refuses what the sidecar would refuse.
	if r := helmRun(t, "template", "r", helmChart(t), "--set", "sidecarRBAC.responses={page}"); r.Err == nil || !strings.Contains(r.Out(), "sidecarRBAC") {
		t.Errorf("an unknown response passed the schema: %v %s", r.Err, r.Out())
	}

	// Monitoring: the metrics Service selects the pods and the ServiceMonitor
	// selects that Service's port; the rule's job is that Service.
	objs = render("--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.prometheusRule.enabled=true",
		"--set", "monitoring.dashboard.enabled=true", "--set", "monitoring.podSelector.app=shop",
		"--set", "monitoring.serviceMonitor.labels.release=prom")
	if got, want := kinds(objs), []string{"ConfigMap/podfim-d-chart/r-podfim-dashboard", "PrometheusRule/podfim-d-chart/r-podfim-sidecar-metrics",
		"Service/podfim-d-chart/r-podfim-sidecar-metrics", "ServiceMonitor/podfim-d-chart/r-podfim-sidecar-metrics"}; !slices.Equal(got, want) {
		t.Fatalf("monitoring: %v, want %v", got, want)
	}
	byKind := map[string]object{}
	for _, o := range objs {
		byKind[o.Kind] = o
	}
	svc, sm, rule, cm := byKind["Service"], byKind["ServiceMonitor"], byKind["PrometheusRule"], byKind["ConfigMap"]
	if sel, _ := svc.Spec["selector"].(map[string]any); sel["app"] != "shop" || svc.Spec["clusterIP"] != "None" {
		t.Errorf("metrics Service spec %v", svc.Spec)
	}
	if sm.Metadata.Labels["release"] != "prom" {
		t.Errorf("ServiceMonitor labels %v", sm.Metadata.Labels)
	}
	smSel, _ := sm.Spec["selector"].(map[string]any)["matchLabels"].(map[string]any)
	for k, v := range smSel {
		if svc.Metadata.Labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%v, the Service has %q", k, v, svc.Metadata.Labels[k])
		}
	}
	ep := sm.Spec["endpoints"].([]any)[0].(map[string]any)
	if ep["port"] != "podfim-metrics" || ep["path"] != "/metrics" {
		t.Errorf("ServiceMonitor endpoint %v", ep)
	}
	var alerts []string
	for _, g := range rule.Spec["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			r := r.(map[string]any)
			alerts = append(alerts, r["alert"].(string))
			if !strings.Contains(r["expr"].(string), `job="r-podfim-sidecar-metrics"`) {
				t.Errorf("alert %s does not select the scrape job: %s", r["alert"], r["expr"])
			}
		}
	}
	for _, want := range []string{"PodfimViolationOpen", "PodfimNoFullCheck", "PodfimSidecarDown"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts %v lack %s", alerts, want)
		}
	}
	if cm.Metadata.Labels["grafana_dashboard"] != "1" || !strings.Contains(cm.Data["podfim.json"], `"uid": "podfim"`) {
		t.Errorf("dashboard ConfigMap labels %v, %d bytes of JSON", cm.Metadata.Labels, len(cm.Data["podfim.json"]))
	}
}

// TestKubeNativeImageChange: the app container of a bare Pod is given a new
// image in place (kubectl set image: the kubelet restarts it from the new
// image, the sidecar and its state stay). The new image serves another
// page: that is a new baseline (Events ImageChanged, BaselineCreated), not
// an alert.
func TestKubeNativeImageChange(t *testing.T) {
	k := newKube(t)
	img := kubeImages(t, k)
	v2 := buildHelloV2(t, img)
	o := nativeOpts{appPort: 18240, sidecarPort: 18241, respond: "log,metric,event,unready", escalate: "unready", rbac: true, bare: true}
	ns, pod := startNative(t, k, o)
	waitEvents(t, k, ns, pod, "BaselineCreated")

	k.must(t, "-n", ns, "set", "image", "pod/"+pod.name, "app="+v2)
	waitEvents(t, k, ns, pod, "ImageChanged")
	k.waitUntil(t, ns, "a second BaselineCreated", time.Minute, 500*time.Millisecond, func() (bool, string) {
		n := 0
		for _, e := range podEvents(t, k, ns, pod.name) {
			if strings.HasPrefix(e, "BaselineCreated ") {
				n++
			}
		}
		// The correlator counts a repeated Event into one: look at count.
		out := k.must(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.name="+pod.name+",reason=BaselineCreated",
			"-o", "jsonpath={range .items[*]}{.count} {end}")
		return n >= 2 || strings.Contains(out, "2"), out
	})
	waitBody(t, fmt.Sprintf("http://127.0.0.1:%d/", o.appPort), "Hello, v2!\n", 30*time.Second)
	waitStatus(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", o.sidecarPort), http.StatusOK, 30*time.Second)
	logs := k.logs(t, ns, pod.name, "podfim")
	if v := matching(parseLog(logs), "integrity violation", ""); len(v) != 0 {
		t.Errorf("the new image was reported as %d violations: %v", len(v), v)
	}
	if !strings.Contains(logs, "the app container runs a new image") {
		t.Errorf("the image change is not logged:\n%s", lastLines(logs, 10))
	}
	for _, e := range podEvents(t, k, ns, pod.name) {
		if strings.HasPrefix(e, "File") {
			t.Errorf("Event %s after a legitimate image change", e)
		}
	}
	// The new baseline holds: a tamper of the new image is an alert.
	tamperNative(t, k, ns, pod.name)
	waitEvents(t, k, ns, pod, "FileChanged")
}

// buildHelloV2 builds and imports localhost/hello:<tag>-v2: the hello image
// with another page (a new layer, so another image ID).
func buildHelloV2(t *testing.T, img kubeImageRefs) string {
	t.Helper()
	root := repoRoot(t)
	env := []string{"CONTAINERS_CONF=" + root + "/build/containers.conf"}
	ctx := t.TempDir()
	writeFileMode(t, ctx+"/index.html", "Hello, v2!\n", 0o600)
	writeFileMode(t, ctx+"/Dockerfile", "FROM "+img.Hello+"\nCOPY --chown=65532:65532 index.html /www/index.html\n", 0o644)
	ref := "localhost/hello:" + img.Tag + "-v2"
	if r := runCmd(t, 5*time.Minute, env, "", "podman", "--log-level=error", "build", "--pull=never", "-q", "-t", ref, ctx); r.Err != nil {
		t.Fatalf("podman build %s: %v\n%s", ref, r.Err, r.Out())
	}
	archive := t.TempDir() + "/hello-v2.tar"
	if r := runCmd(t, 5*time.Minute, env, "", "podman", "--log-level=error", "save", "--format", "docker-archive", "-o", archive, ref); r.Err != nil {
		t.Fatalf("podman save %s: %v\n%s", ref, r.Err, r.Out())
	}
	if r := runCmd(t, 5*time.Minute, nil, "", root+"/bin/cluster", "import", archive); r.Err != nil {
		t.Fatalf("bin/cluster import: %v\n%s", r.Err, r.Out())
	}
	return ref
}

func writeFileMode(t *testing.T, name, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil {
		t.Fatal(err)
	}
}

// TestKubeNativeStorm: 1000 files added at once are 1000 findings and a
// bounded number of Event writes (client-go's spam filter and aggregation).
func TestKubeNativeStorm(t *testing.T) {
	k := newKube(t)
	o := nativeOpts{appPort: 18250, sidecarPort: 18251, respond: "log,metric,event,unready", escalate: "unready", rbac: true}
	ns, pod := startNative(t, k, o)
	waitEvents(t, k, ns, pod, "BaselineCreated")

	k.must(t, "-n", ns, "exec", pod.name, "-c", "app", "--", "/bin/busybox", "sh", "-c",
		"i=0; while [ $i -lt 1000 ]; do echo x > /www/storm-$i; i=$((i+1)); done")
	k.waitUntil(t, ns, "1000 findings", time.Minute, 500*time.Millisecond, func() (bool, string) {
		v := sidecarMetric(t, o.sidecarPort, `podfim_findings_total{kind="added",origin="container"}`)
		return v >= 1000, fmt.Sprint(v)
	})
	waitEvents(t, k, ns, pod, "FileAdded")
	// Let the worker finish what it accepted.
	k.waitUntil(t, ns, "the Event queue to drain", 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		sent := sidecarMetric(t, o.sidecarPort, `podfim_kube_events_total{result="sent"}`)
		filtered := sidecarMetric(t, o.sidecarPort, `podfim_kube_events_total{result="filtered"}`)
		dropped := sidecarMetric(t, o.sidecarPort, `podfim_kube_events_total{result="dropped"}`)
		failed := sidecarMetric(t, o.sidecarPort, `podfim_kube_events_total{result="failed"}`)
		return sent+filtered+dropped+failed >= 1001, fmt.Sprintf("sent %v filtered %v dropped %v failed %v", sent, filtered, dropped, failed)
	})
	writes := sidecarMetric(t, o.sidecarPort, `podfim_kube_requests_total{operation="write_event",result="ok"}`)
	filtered := sidecarMetric(t, o.sidecarPort, `podfim_kube_events_total{result="filtered"}`)
	objects := 0
	for _, e := range podEvents(t, k, ns, pod.name) {
		if strings.HasSuffix(e, " podfim") {
			objects++
		}
	}
	t.Logf("1000 files added: %v Event writes, %d Event objects of podfim on the pod, %v Events filtered", writes, objects, filtered)
	// A burst of 25 per reason (FileAdded, FileChanged for /www), a few
	// others (BaselineCreated), aggregation patches among them.
	if writes > 60 || objects > 60 {
		t.Errorf("%v writes and %d Event objects for a storm of 1000 findings, want a bounded few dozen", writes, objects)
	}
	if filtered < 900 {
		t.Errorf("%v Events filtered, want most of the 1000", filtered)
	}
}
