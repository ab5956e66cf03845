//go:build e2e

package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The admission webhook on the test cluster (docs/cluster.md): the chart's
// webhook part installed with the harness's values (hostNetwork, one
// replica on 127.0.0.1:18100, self-signed TLS), a namespace that opts in, a
// plain Deployment of the hello app with podfim annotations only.
//
//	eval "$(bin/cluster env)"; go test -tags e2e -run KubeWebhook -v ./test/e2e/
//
// Everything it makes is named podfim-c-*: the namespaces podfim-c-system-N
// (the webhook) and podfim-c-app-N, the MutatingWebhookConfiguration
// podfim-c-e2e (scoped to namespaces labelled podfim.io/e2e-owner=c, so it
// never intercepts another test's pods) and its RBAC; the images are
// tagged PODFIM_E2E_TAG (c). All of it is deleted at the end, the webhook
// configuration first. Ports: 18100-18106 on 127.0.0.1.
const (
	whRelease = "podfim-c-e2e" // also the MutatingWebhookConfiguration's name
	whTag     = "c"
	whPort    = 18100 // the webhook, on the node's loopback
	whAppPort = 18101 // the hello app
	whSidecar = 18102 // the injected sidecar's /metrics, /healthz, /readyz
	whRestApp = 18103 // the restore scenario's app
	whRestSC  = 18104 // and its sidecar
	whNameApp = 18105 // the target-by-name scenario's app
	whNameSC  = 18106 // and its sidecar
	whOwner   = "podfim.io/e2e-owner"
)

// installWebhook renders the chart's webhook part with the harness's values
// into namespace ns and applies it. Cleanup deletes the configuration first
// (so that it never intercepts anything once the webhook is gone), then the
// cluster-scoped RBAC; the namespace goes with k.namespace.
func installWebhook(t *testing.T, k *kube, ns string, img kubeImageRefs) {
	t.Helper()
	installWebhookAs(t, k, ns, img, whRelease, whTag, whPort)
}

// installWebhookAs installs the webhook as release (also the name of its
// MutatingWebhookConfiguration), listening on 127.0.0.1:port and
// intercepting only namespaces labelled podfim.io/e2e-owner=owner, so that
// tests of their own can run beside TestKubeWebhook.
func installWebhookAs(t *testing.T, k *kube, ns string, img kubeImageRefs, release, owner string, port int) {
	t.Helper()
	set := []string{
		"fullnameOverride=" + release,
		"demo.enabled=false",
		"webhook.enabled=true",
		"webhook.replicas=1", // one hostNetwork node: replicas would share the port
		"webhook.port=" + strconv.Itoa(port),
		"webhook.logLevel=debug",
		"webhook.namespaceLabels.podfim\\.io/e2e-owner=" + owner,
		"hostNetwork.enabled=true",
		"hostNetwork.bindAddress=127.0.0.1",
		"hostNetwork.apiServerHost=127.0.0.1",
		"hostNetwork.apiServerPort=6443",
		"sidecar.image.registry=",
		"sidecar.image.repository=" + strings.Split(img.Podfim, ":")[0],
		"sidecar.image.tag=" + img.Tag,
		"sidecar.image.pullPolicy=Never",
	}
	var args []string
	for _, s := range set {
		args = append(args, "--set", s)
	}
	manifest := helmTemplate(t, release, ns, args...)
	t.Cleanup(func() {
		k.run(t, time.Minute, "delete", "mutatingwebhookconfiguration", release, "--ignore-not-found")
		k.run(t, time.Minute, "delete", "clusterrole,clusterrolebinding", release+"-webhook", "--ignore-not-found")
	})
	k.apply(t, ns, manifest)
}

func TestKubeWebhook(t *testing.T) {
	k := newKube(t)
	// The port is the test's lock: a second run of this test (or a copy of
	// it) at the same time would share the configuration's name and ports.
	requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", whPort))
	// A leftover configuration of an interrupted run would intercept the
	// new namespaces with a CA nobody serves.
	k.run(t, time.Minute, "delete", "mutatingwebhookconfiguration", whRelease, "--ignore-not-found")
	img := kubeImages(t, k)
	sys := k.namespace(t, "podfim-c-system-")
	app := k.namespace(t, "podfim-c-app-")
	installWebhook(t, k, sys, img)
	took := k.waitUntil(t, sys, "the webhook Deployment to be available", 2*time.Minute, time.Second, func() (bool, string) {
		r := k.run(t, 30*time.Second, "-n", sys, "get", "deployment", whRelease+"-webhook", "-o", "jsonpath={.status.availableReplicas}")
		return strings.TrimSpace(r.Stdout) == "1", r.Out()
	})
	t.Logf("webhook available after %s", took.Round(time.Millisecond))

	// Self-signed TLS: the CA in the Secret is the caBundle of both webhooks.
	ca := k.must(t, "-n", sys, "get", "secret", whRelease+"-webhook-tls", "-o", "jsonpath={.data.ca\\.crt}")
	bundles := strings.Fields(k.must(t, "get", "mutatingwebhookconfiguration", whRelease, "-o", "jsonpath={.webhooks[*].clientConfig.caBundle}"))
	if ca == "" || len(bundles) != 2 || bundles[0] != ca || bundles[1] != ca {
		t.Fatalf("caBundles %q are not the Secret's CA %q", bundles, ca)
	}
	if pem, _ := base64.StdEncoding.DecodeString(ca); !strings.Contains(string(pem), "BEGIN CERTIFICATE") {
		t.Fatalf("ca.crt is not a PEM certificate: %q", pem)
	}

	k.must(t, "label", "namespace", app, "podfim.io/inject=enabled", whOwner+"="+whTag)

	t.Run("inject", func(t *testing.T) { testWebhookInject(t, k, app, img) })
	t.Run("restore", func(t *testing.T) { testWebhookRestore(t, k, app, img) })
	t.Run("target-name", func(t *testing.T) { testWebhookTargetName(t, k, app, img) })
	t.Run("readmission", func(t *testing.T) { testWebhookReadmission(t, k, app) })
	t.Run("reject", func(t *testing.T) { testWebhookReject(t, k, app, img) })
	t.Run("opt-out", func(t *testing.T) { testWebhookOptOut(t, k, app, img) })

	logs := k.must(t, "-n", sys, "logs", "deployment/"+whRelease+"-webhook")
	if !strings.Contains(logs, `"outcome":"injected"`) || !strings.Contains(logs, `"outcome":"rejected"`) {
		t.Errorf("the webhook's log lacks the admissions:\n%s", lastLines(logs, 20))
	}
	t.Run("metrics", func(t *testing.T) { testWebhookMetrics(t, ca) })
	t.Run("failure-policy", func(t *testing.T) { testWebhookDown(t, k, sys, app, img) })
}

// testWebhookMetrics reads the webhook's /metrics over TLS, trusting only
// the CA of its Secret: the serving certificate covers 127.0.0.1.
func testWebhookMetrics(t *testing.T, caB64 string) {
	pem, err := base64.StdEncoding.DecodeString(caB64)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in the Secret")
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/metrics", whPort))
	if err != nil {
		t.Fatalf("GET /metrics with the Secret's CA: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	for _, want := range []string{
		`podfim_webhook_admissions_total{result="injected"} 3`, // hello, hello-restore, two
		`podfim_webhook_admissions_total{result="rejected"} 5`,
		`podfim_webhook_ca_published 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "podfim_webhook_admissions_total") {
			t.Log(l)
		}
	}
}

// testWebhookDown shows failurePolicy Fail: with no webhook replica, a pod
// of an opted-in namespace is refused (it would start unprotected), and a
// pod elsewhere is not affected.
func testWebhookDown(t *testing.T, k *kube, sys, app string, img kubeImageRefs) {
	k.must(t, "-n", sys, "scale", "deployment", whRelease+"-webhook", "--replicas=0")
	k.waitUntil(t, sys, "the webhook to stop", time.Minute, 250*time.Millisecond, func() (bool, string) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", whPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil, fmt.Sprint(err)
	})
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"while-down"},
"spec":{"hostNetwork":true,"containers":[{"name":"app","image":%q,"imagePullPolicy":"Never"}]}}`, img.Hello)
	r := k.stdin(t, pod, "-n", app, "create", "--dry-run=server")
	if r.Err == nil || !strings.Contains(r.Stderr, `failed calling webhook "namespace.inject.podfim.io"`) {
		t.Errorf("opted-in namespace with the webhook down: %v %s", r.Err, r.Out())
	}
	t.Logf("kubectl: %s", strings.TrimSpace(r.Stderr))
	if r := k.stdin(t, pod, "-n", sys, "create", "--dry-run=server"); r.Err != nil {
		t.Errorf("a namespace that did not opt in is affected: %v %s", r.Err, r.Out())
	}
}

// whHelloDeployment is a plain Deployment of the hello app: only
// annotations ask for the sidecar (the namespace opted in).
func whHelloDeployment(img kubeImageRefs, name string, port int, annotations map[string]string) string {
	ann, _ := json.Marshal(annotations)
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[4]s
spec:
  replicas: 1
  selector: {matchLabels: {app: %[4]s}}
  template:
    metadata:
      labels: {app: %[4]s}
      annotations: %[1]s
    spec:
      hostNetwork: true          # the test cluster has no pod network
      terminationGracePeriodSeconds: 2
      automountServiceAccountToken: false
      containers:
      - name: app
        image: %[2]s
        imagePullPolicy: Never
        args: [--dir=/www, --addr=127.0.0.1:%[3]d]
        securityContext:
          runAsNonRoot: true
          runAsUser: 65532
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
`, ann, img.Hello, port, name)
}

// whPod is what the tests read of an admitted pod.
type whPod struct {
	Metadata struct {
		Name        string            `json:"name"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		ShareProcessNamespace *bool `json:"shareProcessNamespace"`
		Containers            []struct {
			Name            string   `json:"name"`
			Args            []string `json:"args"`
			SecurityContext struct {
				Capabilities struct {
					Add []string `json:"add"`
				} `json:"capabilities"`
			} `json:"securityContext"`
		} `json:"containers"`
		Volumes []struct {
			Name string `json:"name"`
		} `json:"volumes"`
	} `json:"spec"`
}

func (p whPod) containers() []string {
	var names []string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	return names
}

func (p whPod) volumes() []string {
	var names []string
	for _, v := range p.Spec.Volumes {
		names = append(names, v.Name)
	}
	return names
}

func decodePod(t *testing.T, text string) whPod {
	t.Helper()
	var p whPod
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		t.Fatalf("%v: %s", err, text)
	}
	return p
}

func testWebhookInject(t *testing.T, k *kube, ns string, img kubeImageRefs) {
	requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", whAppPort))
	requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", whSidecar))
	// The event response needs RBAC for the pod's service account (the
	// namespace's default here); the webhook gives the sidecar, and only
	// the sidecar, a token (the app has automountServiceAccountToken off).
	k.apply(t, ns, `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: podfim-sidecar}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get]}
- {apiGroups: [""], resources: [events], verbs: [create, patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: podfim-sidecar}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: podfim-sidecar}
subjects:
- {kind: ServiceAccount, name: default}
`)
	start := time.Now()
	k.apply(t, ns, whHelloDeployment(img, "hello", whAppPort, map[string]string{
		"podfim.io/paths":          "/www",
		"podfim.io/respond":        "log,metric,event,unready,kill",
		"podfim.io/port":           strconv.Itoa(whSidecar),
		"podfim.io/quick-interval": "10s",
	}))
	ps := k.waitReady(t, ns, "app=hello", 2, 2*time.Minute)
	t.Logf("pod %s 2/2 ready %s after the Deployment was applied", ps.Name, time.Since(start).Round(time.Millisecond))
	pod := decodePod(t, k.must(t, "-n", ns, "get", "pod", ps.Name, "-o", "json"))
	if !slices.Equal(pod.containers(), []string{"app", "podfim"}) || pod.Spec.ShareProcessNamespace == nil || !*pod.Spec.ShareProcessNamespace ||
		pod.Metadata.Annotations["podfim.io/status"] != "injected" || !slices.Contains(pod.volumes(), "podfim-state") || !slices.Contains(pod.volumes(), "podfim-token") {
		t.Fatalf("injection: containers %v, shareProcessNamespace %v, volumes %v, annotations %v",
			pod.containers(), pod.Spec.ShareProcessNamespace, pod.volumes(), pod.Metadata.Annotations)
	}
	args := strings.Join(pod.Spec.Containers[1].Args, " ")
	caps := pod.Spec.Containers[1].SecurityContext.Capabilities.Add
	if !strings.Contains(args, "--respond=log,metric,event,unready,kill") || !strings.Contains(args, fmt.Sprintf("--listen=127.0.0.1:%d", whSidecar)) ||
		!slices.Contains(caps, "KILL") || slices.Contains(caps, "CHOWN") {
		t.Fatalf("sidecar args %q, capabilities %v", args, caps)
	}
	pageURL := fmt.Sprintf("http://127.0.0.1:%d/", whAppPort)
	waitBody(t, pageURL, hello, 30*time.Second)
	if code, body, err := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", whSidecar)); err != nil || code != 200 {
		t.Fatalf("sidecar /readyz: %d %q %v", code, body, err)
	}
	logs := func() string { return k.logs(t, ns, ps.Name, "podfim") }

	// Tamper with the page: the sidecar finds it and kills the app; the
	// kubelet starts a fresh container from the image, and the page heals.
	tampered := time.Now()
	k.run(t, 30*time.Second, "-n", ns, "exec", ps.Name, "-c", "app", "--", "/bin/busybox", "sh", "-c", tamperCmd)
	finding := waitLog(t, logs, "integrity violation", page, 30*time.Second)
	t.Logf("finding: %s", finding)
	k.waitUntil(t, ns, "the app container to restart once", time.Minute, 250*time.Millisecond, func() (bool, string) {
		pods := k.pods(t, ns, "app=hello")
		return len(pods) == 1 && pods[0].Restarts["app"] == 1, fmt.Sprint(pods)
	})
	t.Logf("app restarted %s after the tamper", time.Since(tampered).Round(time.Millisecond))
	waitBody(t, pageURL, hello, time.Minute)
	after := k.waitReady(t, ns, "app=hello", 2, time.Minute)
	if after.Name != ps.Name || after.Restarts["app"] != 1 || after.Restarts["podfim"] != 0 {
		t.Errorf("after the restart: %s, want the same pod with RESTARTS 1 for app only", after)
	}
	// The kill answers the first finding: the page, or its directory when
	// the copy-up of the write (new nlink and ctime of /www) is seen first.
	var kills []logLine
	for _, l := range parseLog(logs()) {
		if l.str("action") == "kill" && strings.HasPrefix(page, l.str("path")) && l.str("path") != "" {
			kills = append(kills, l)
		}
	}
	if len(kills) != 1 {
		t.Errorf("the sidecar logged %d kills for %s or its directory, want 1:\n%s", len(kills), page, lastLines(logs(), 10))
	}
	checkKubeEvidence(t, k, ns, ps.Name, finding)
	// The finding and the kill as Events on the pod, what `kubectl get
	// events` and `kubectl describe pod` show.
	for _, ev := range []struct{ reason, path string }{{"FileChanged", page}, {"ContainerKilled", "/www"}} {
		k.waitUntil(t, ns, "Event "+ev.reason+" on the pod", 30*time.Second, 500*time.Millisecond, func() (bool, string) {
			r := k.run(t, 30*time.Second, "-n", ns, "get", "events", "--field-selector", "involvedObject.name="+ps.Name+",reason="+ev.reason, "-o", "jsonpath={.items[*].message}")
			return r.Err == nil && strings.Contains(r.Stdout, ev.path), r.Out()
		})
	}
	t.Logf("events of the pod:\n%s", k.run(t, 30*time.Second, "-n", ns, "get", "events", "--field-selector", "involvedObject.name="+ps.Name).Out())
}

// checkKubeEvidence (issue 12, evidence before repair, on the kubelet):
// the finding names evidence kept of the tampered page, by its sha256, and
// after the kill restarted the app, `podfim evidence show --content` in
// the sidecar (kubectl exec, as an incident responder would) returns the
// bytes the kill's fresh container no longer holds.
func checkKubeEvidence(t *testing.T, k *kube, ns, pod string, finding logLine) {
	t.Helper()
	sum := sha256.Sum256([]byte("Hacked\n"))
	id := finding.str("evidence_id")
	if id == "" || finding.str("evidence_result") != "kept" || finding.str("evidence_sha256") != hex.EncodeToString(sum[:]) {
		t.Fatalf("the finding names no evidence kept of \"Hacked\\n\" (sha256 %x): %s", sum, finding)
	}
	got := k.must(t, "-n", ns, "exec", pod, "-c", "podfim", "--", "/podfim", "evidence", "show", "--state-dir", "/var/lib/podfim", "--content", id)
	if got != "Hacked\n" {
		t.Errorf("podfim evidence show --content %s in the sidecar: %q, want %q", id, got, "Hacked\n")
	}
}

// testWebhookRestore: with restore annotated, the sidecar gets the
// capabilities restore needs and writes the page back without a restart.
func testWebhookRestore(t *testing.T, k *kube, ns string, img kubeImageRefs) {
	requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", whRestApp))
	requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", whRestSC))
	k.apply(t, ns, whHelloDeployment(img, "hello-restore", whRestApp, map[string]string{
		"podfim.io/paths":   "/www",
		"podfim.io/respond": "log,metric,event,unready,restore",
		"podfim.io/port":    strconv.Itoa(whRestSC),
	}))
	ps := k.waitReady(t, ns, "app=hello-restore", 2, 2*time.Minute)
	pod := decodePod(t, k.must(t, "-n", ns, "get", "pod", ps.Name, "-o", "json"))
	caps := pod.Spec.Containers[1].SecurityContext.Capabilities.Add
	for _, c := range []string{"CHOWN", "FOWNER", "DAC_OVERRIDE"} {
		if !slices.Contains(caps, c) {
			t.Errorf("restore without %s: %v", c, caps)
		}
	}
	if slices.Contains(caps, "KILL") {
		t.Errorf("KILL without the kill response: %v", caps)
	}
	pageURL := fmt.Sprintf("http://127.0.0.1:%d/", whRestApp)
	waitBody(t, pageURL, hello, 30*time.Second)
	logs := func() string { return k.logs(t, ns, ps.Name, "podfim") }
	// Wait for the first full check (ready) so the page's bytes are kept.
	waitStatus(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", whRestSC), 200, 30*time.Second)
	k.run(t, 30*time.Second, "-n", ns, "exec", ps.Name, "-c", "app", "--", "/bin/busybox", "sh", "-c", tamperCmd)
	waitLog(t, logs, "integrity violation", page, 30*time.Second)
	restored := waitLog(t, logs, "file restored", page, 30*time.Second)
	t.Logf("restored: %s", restored)
	waitBody(t, pageURL, hello, 30*time.Second)
	if after := k.pods(t, ns, "app=hello-restore"); len(after) != 1 || after[0].Restarts["app"] != 0 {
		t.Errorf("restore restarted the app: %v", after)
	}
	k.waitUntil(t, ns, "Event FileRestored on the pod", 30*time.Second, 500*time.Millisecond, func() (bool, string) {
		r := k.run(t, 30*time.Second, "-n", ns, "get", "events", "--field-selector", "involvedObject.name="+ps.Name+",reason=FileRestored", "-o", "jsonpath={.items[*].message}")
		return r.Err == nil && strings.Contains(r.Stdout, page), r.Out()
	})
}

// testWebhookTargetName: in a pod of two containers the annotation names
// the target; the sidecar resolves it through the API with the token the
// webhook gave it (the Role of the inject scenario grants get on pods). The
// other container runs the same image, so only a sidecar that watches the
// named one sees the change.
func testWebhookTargetName(t *testing.T, k *kube, ns string, img kubeImageRefs) {
	requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", whNameApp))
	requireFreePort(t, fmt.Sprintf("127.0.0.1:%d", whNameSC))
	k.apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: two
  labels: {app: two}
  annotations:
    podfim.io/target: app
    podfim.io/paths: /www
    podfim.io/respond: log,metric,event,unready
    podfim.io/port: "%[3]d"
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 2
  automountServiceAccountToken: false
  containers:
  - name: helper
    image: %[1]s
    imagePullPolicy: Never
    command: [/bin/busybox, sleep, "3600"]
  - name: app
    image: %[1]s
    imagePullPolicy: Never
    args: [--dir=/www, --addr=127.0.0.1:%[2]d]
`, img.Hello, whNameApp, whNameSC))
	ps := k.waitReady(t, ns, "app=two", 3, 2*time.Minute)
	pod := decodePod(t, k.must(t, "-n", ns, "get", "pod", ps.Name, "-o", "json"))
	if !slices.Equal(pod.containers(), []string{"helper", "app", "podfim"}) || !slices.Contains(pod.Spec.Containers[2].Args, "--target-name=app") {
		t.Fatalf("containers %v, sidecar args %v", pod.containers(), pod.Spec.Containers[2].Args)
	}
	logs := func() string { return k.logs(t, ns, ps.Name, "podfim") }
	looked := waitLog(t, logs, "target container name looked up", "", 30*time.Second)
	t.Logf("%s", looked)
	k.run(t, 30*time.Second, "-n", ns, "exec", ps.Name, "-c", "app", "--", "/bin/busybox", "sh", "-c", tamperCmd)
	waitLog(t, logs, "integrity violation", page, 30*time.Second)
	waitStatus(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", whNameSC), 503, 30*time.Second)
	k.must(t, "-n", ns, "delete", "pod", ps.Name, "--wait=true", "--timeout=60s")
}

// testWebhookReadmission sends the injected pod's spec through admission
// again (server-side dry run: the webhook is called, nothing is stored):
// nothing is added twice.
func testWebhookReadmission(t *testing.T, k *kube, ns string) {
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(k.must(t, "-n", ns, "get", "pods", "-l", "app=hello", "-o", "json")), &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("pods: %v", err)
	}
	pod := list.Items[0]
	meta := pod["metadata"].(map[string]any)
	pod["metadata"] = map[string]any{"name": meta["name"].(string) + "-again", "labels": map[string]any{"again": "yes"}, "annotations": meta["annotations"]}
	delete(pod, "status")
	delete(pod["spec"].(map[string]any), "nodeName")
	body, _ := json.Marshal(pod)
	r := k.stdin(t, string(body), "-n", ns, "create", "--dry-run=server", "-o", "json")
	if r.Err != nil {
		t.Fatalf("re-admission: %v\n%s", r.Err, r.Out())
	}
	again, orig := decodePod(t, r.Stdout), decodePod(t, string(body))
	if !slices.Equal(again.containers(), []string{"app", "podfim"}) || !slices.Equal(again.volumes(), orig.volumes()) {
		t.Errorf("re-admission changed the pod: containers %v, volumes %v (were %v)", again.containers(), again.volumes(), orig.volumes())
	}
}

// testWebhookReject: invalid annotations are refused at admission, and
// kubectl shows the annotation and the reason.
func testWebhookReject(t *testing.T, k *kube, ns string, img kubeImageRefs) {
	for _, tt := range []struct {
		ann    map[string]string
		mounts string // the app's volumeMounts
		want   string
	}{
		{map[string]string{"podfim.io/respond": "log,explode"}, "", `annotation "podfim.io/respond": actions[1]: Unsupported value: "explode"`},
		{map[string]string{"podfim.io/paths": "/www:Readonly"}, "", `annotation "podfim.io/paths": "/www:Readonly": unknown preset "Readonly"`},
		{map[string]string{"podfim.io/target": "db"}, "", `annotation "podfim.io/target": the pod has no container "db"`},
		{map[string]string{"podfim.io/quick-intervall": "1m"}, "", `annotation "podfim.io/quick-intervall": unknown podfim annotation`},
		// Valid once the sidecar's volume is added: the app would reach
		// the baseline.
		{map[string]string{}, `[{"name":"podfim-state","mountPath":"/state"}]`, `container "app" mounts the volume "podfim-state"`},
	} {
		ann, _ := json.Marshal(tt.ann)
		mounts := tt.mounts
		if mounts == "" {
			mounts = "[]"
		}
		pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad","annotations":%s},
"spec":{"hostNetwork":true,"containers":[{"name":"app","image":%q,"imagePullPolicy":"Never","volumeMounts":%s}]}}`, ann, img.Hello, mounts)
		r := k.stdin(t, pod, "-n", ns, "create")
		if r.Err == nil {
			k.run(t, 30*time.Second, "-n", ns, "delete", "pod", "bad", "--wait=false")
			t.Errorf("%v: created", tt.ann)
			continue
		}
		if !strings.Contains(r.Stderr, `admission webhook "namespace.inject.podfim.io" denied the request`) || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("%v: kubectl said %q, want the denial with %q", tt.ann, r.Stderr, tt.want)
		}
		t.Logf("kubectl: %s", strings.TrimSpace(r.Stderr))
	}
}

// testWebhookOptOut: a pod labelled podfim.io/inject=disabled in an opted-in
// namespace is not sent to the webhook (objectSelector) and gets no sidecar.
func testWebhookOptOut(t *testing.T, k *kube, ns string, img kubeImageRefs) {
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"plain","labels":{"podfim.io/inject":"disabled"}},
"spec":{"hostNetwork":true,"containers":[{"name":"app","image":%q,"imagePullPolicy":"Never"}]}}`, img.Hello)
	r := k.stdin(t, pod, "-n", ns, "create", "--dry-run=server", "-o", "json")
	if r.Err != nil {
		t.Fatalf("%v\n%s", r.Err, r.Out())
	}
	if p := decodePod(t, r.Stdout); !slices.Equal(p.containers(), []string{"app"}) {
		t.Errorf("opted-out pod got containers %v", p.containers())
	}
}
