//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/podfim/podfim/internal/policy"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// The manifests of deploy/ against the real apiserver: every kustomization
// and every chart rendering below must pass `kubectl apply
// --dry-run=server --validate=strict` (parsed, defaulted, validated and
// admitted, nothing stored), and the pods they describe must keep the
// security settings the design promises. The chart's schema must reject
// bad values.

// The sidecar's capabilities by response: SYS_PTRACE and DAC_READ_SEARCH
// always, KILL for kill, CHOWN, FOWNER and DAC_OVERRIDE for restore.
var (
	capsKill    = []string{"SYS_PTRACE", "DAC_READ_SEARCH", "KILL"}
	capsRestore = []string{"SYS_PTRACE", "DAC_READ_SEARCH", "CHOWN", "FOWNER", "DAC_OVERRIDE"}
	capsReport  = []string{"SYS_PTRACE", "DAC_READ_SEARCH"}
	capsAll     = []string{"SYS_PTRACE", "DAC_READ_SEARCH", "KILL", "CHOWN", "FOWNER", "DAC_OVERRIDE"}
)

// demoWant is what a rendering of the demo must contain.
type demoWant struct {
	kinds       []string // kinds that must be among the objects
	workload    string   // Pod or Deployment
	caps        []string // the sidecar's added capabilities
	hostNetwork bool
	appPort     int32 // 0: do not check
	// builtinPolicy: the sidecar runs without --policy; otherwise it reads
	// the demo's policy from a ConfigMap mounted read-only into it alone.
	builtinPolicy bool
	// apiToken: the sidecar (and only it) mounts a projected service-account
	// token, for the responses that use the API.
	apiToken bool
}

// serverObjects applies manifests with --dry-run=server in ns and returns
// the objects as the apiserver answered them (defaulted and validated).
func serverObjects(t *testing.T, k *kube, ns, manifests string) []json.RawMessage {
	t.Helper()
	r := k.stdin(t, manifests, "apply", "-n", ns, "--dry-run=server", "--validate=strict", "-o", "json")
	if r.Err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s\nmanifests:\n%s", r.Err, r.Stderr, manifests)
	}
	var head struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &head); err != nil {
		t.Fatalf("kubectl apply -o json: %v\n%s", err, r.Stdout)
	}
	if head.Kind == "List" {
		return head.Items
	}
	return []json.RawMessage{json.RawMessage(r.Stdout)}
}

// checkDemo checks the objects of one rendering of the demo.
func checkDemo(t *testing.T, objs []json.RawMessage, want demoWant) {
	t.Helper()
	var kinds []string
	var specs []corev1.PodSpec
	for _, raw := range objs {
		var meta struct{ Kind string }
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, meta.Kind)
		switch meta.Kind {
		case "Pod":
			var p corev1.Pod
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatal(err)
			}
			specs = append(specs, p.Spec)
		case "Deployment":
			var d appsv1.Deployment
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			specs = append(specs, d.Spec.Template.Spec)
		}
	}
	for _, kind := range want.kinds {
		if !slices.Contains(kinds, kind) {
			t.Errorf("kinds %v: no %s", kinds, kind)
		}
	}
	if n := strings.Count(strings.Join(kinds, " "), want.workload); len(specs) != 1 || n != 1 {
		t.Fatalf("kinds %v: want exactly one workload, a %s", kinds, want.workload)
	}
	checkPodSpec(t, specs[0], want)
}

// checkPodSpec checks the security settings and probes of the demo pod.
func checkPodSpec(t *testing.T, s corev1.PodSpec, want demoWant) {
	t.Helper()
	if s.ShareProcessNamespace == nil || !*s.ShareProcessNamespace {
		t.Error("shareProcessNamespace is not true: the sidecar could not see the app")
	}
	if sc := s.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("the pod's seccomp profile is not RuntimeDefault")
	}
	if s.HostNetwork != want.hostNetwork {
		t.Errorf("hostNetwork = %v, want %v", s.HostNetwork, want.hostNetwork)
	}
	var app, side *corev1.Container
	for i := range s.Containers {
		switch s.Containers[i].Name {
		case "app":
			app = &s.Containers[i]
		case "podfim":
			side = &s.Containers[i]
		}
	}
	if app == nil || side == nil || len(s.Containers) != 2 {
		t.Fatalf("containers %d: want app and podfim", len(s.Containers))
	}

	// The app: non-root, nothing added.
	asc := app.SecurityContext
	if asc == nil || asc.RunAsNonRoot == nil || !*asc.RunAsNonRoot || asc.RunAsUser == nil || *asc.RunAsUser == 0 {
		t.Error("app: not runAsNonRoot with a numeric non-root user")
	}
	checkDropAll(t, "app", asc, nil)

	// The sidecar: read-only root, drop ALL, only the response's capabilities.
	ssc := side.SecurityContext
	if ssc == nil || ssc.ReadOnlyRootFilesystem == nil || !*ssc.ReadOnlyRootFilesystem {
		t.Error("podfim: root filesystem is not read-only")
	}
	checkDropAll(t, "podfim", ssc, want.caps)

	// The baseline volume is mounted into the sidecar only.
	for _, m := range app.VolumeMounts {
		if m.Name == "podfim-state" {
			t.Error("app mounts podfim-state: the app could reach its own baseline")
		}
	}
	if !slices.ContainsFunc(side.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "podfim-state" }) {
		t.Error("podfim does not mount podfim-state")
	}
	policyArg := slices.Contains(side.Args, "--policy=/etc/podfim/policy.yaml")
	policyMount := slices.ContainsFunc(side.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == "podfim-policy" && m.MountPath == "/etc/podfim" && m.ReadOnly
	})
	policyCM := slices.ContainsFunc(s.Volumes, func(v corev1.Volume) bool {
		return v.Name == "podfim-policy" && v.ConfigMap != nil && strings.Contains(v.ConfigMap.Name, "podfim-demo-policy")
	})
	if want.builtinPolicy == (policyArg || policyMount || policyCM) {
		t.Errorf("policy: --policy %v, read-only mount %v, ConfigMap volume %v; want all %v", policyArg, policyMount, policyCM, !want.builtinPolicy)
	}
	const tokenDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	tokenMount := slices.ContainsFunc(side.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.MountPath == tokenDir && m.ReadOnly
	})
	tokenVol := slices.ContainsFunc(s.Volumes, func(v corev1.Volume) bool {
		return v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(p corev1.VolumeProjection) bool { return p.ServiceAccountToken != nil })
	})
	if tokenMount != want.apiToken || tokenVol != want.apiToken {
		t.Errorf("sidecar token: mount %v, projected volume %v; want %v", tokenMount, tokenVol, want.apiToken)
	}
	if slices.ContainsFunc(app.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == tokenDir }) {
		t.Error("app mounts a service-account token: it needs none")
	}

	// Probes: hello's /healthz; the sidecar's /healthz (liveness) and /readyz (readiness).
	probes := []struct {
		who   string
		p     *corev1.Probe
		path  string
		named string
	}{
		{"app liveness", app.LivenessProbe, "/healthz", "http"},
		{"app readiness", app.ReadinessProbe, "/healthz", "http"},
		{"podfim liveness", side.LivenessProbe, "/healthz", "podfim-http"},
		{"podfim readiness", side.ReadinessProbe, "/readyz", "podfim-http"},
	}
	for _, pr := range probes {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("%s probe: no httpGet", pr.who)
			continue
		}
		g := pr.p.HTTPGet
		if g.Path != pr.path || g.Port.String() != pr.named {
			t.Errorf("%s probe: GET %s on %s, want %s on %s", pr.who, g.Path, g.Port.String(), pr.path, pr.named)
		}
		// On the host network the pod IP is the node's: probes must ask 127.0.0.1.
		if want.hostNetwork && g.Host != "127.0.0.1" {
			t.Errorf("%s probe: host %q on the host network, want 127.0.0.1", pr.who, g.Host)
		}
		if !want.hostNetwork && g.Host != "" {
			t.Errorf("%s probe: host %q, want the pod IP", pr.who, g.Host)
		}
	}

	if want.hostNetwork {
		for _, c := range []*corev1.Container{app, side} {
			if c.ImagePullPolicy != corev1.PullNever {
				t.Errorf("%s: imagePullPolicy %s on the test cluster, want Never", c.Name, c.ImagePullPolicy)
			}
		}
		env := map[string]string{}
		for _, e := range side.Env {
			env[e.Name] = e.Value
		}
		if env["KUBERNETES_SERVICE_HOST"] != "127.0.0.1" || env["KUBERNETES_SERVICE_PORT"] != "6443" {
			t.Errorf("podfim env: KUBERNETES_SERVICE_HOST=%q PORT=%q, want 127.0.0.1 6443", env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"])
		}
	}
	if want.appPort != 0 {
		if len(app.Ports) != 1 || app.Ports[0].ContainerPort != want.appPort {
			t.Errorf("app ports %v, want %d", app.Ports, want.appPort)
		}
	}
}

// checkDropAll checks that a container drops every capability, adds
// exactly add, and cannot gain privileges.
func checkDropAll(t *testing.T, name string, sc *corev1.SecurityContext, add []string) {
	t.Helper()
	if sc == nil || sc.Capabilities == nil {
		t.Errorf("%s: no capabilities settings", name)
		return
	}
	if !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: drop %v, want [ALL]", name, sc.Capabilities.Drop)
	}
	var got []string
	for _, c := range sc.Capabilities.Add {
		got = append(got, string(c))
	}
	if !slices.Equal(sorted(got), sorted(add)) {
		t.Errorf("%s: add %v, want %v", name, got, add)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", name)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", name)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestKubeManifests(t *testing.T) {
	k := newKube(t)
	ns := k.namespace(t, "podfim-b-")
	ports := map[string]string{"ports.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: podfim-demo-hostnetwork
  annotations: {config.kubernetes.io/local-config: "true"}
data: {appListen: "127.0.0.1:18080", appPort: "18080", sidecarListen: "127.0.0.1:18090", sidecarPort: "18090"}
`}

	t.Run("Kustomize", func(t *testing.T) {
		const kd = "deploy/kubernetes/"
		cases := []struct {
			name       string
			resources  []string
			components []string
			files      map[string]string
			want       demoWant
		}{
			{"base", []string{kd + "base"}, nil, nil,
				demoWant{kinds: []string{"Service", "Pod"}, workload: "Pod", caps: capsKill, appPort: 8080}},
			{"deployment", []string{kd + "deployment"}, nil, nil,
				demoWant{kinds: []string{"Service", "Deployment"}, workload: "Deployment", caps: capsKill}},
			{"overlays/demo", []string{kd + "overlays/demo"}, nil, nil,
				demoWant{kinds: []string{"Namespace", "Service", "Pod"}, workload: "Pod", caps: capsKill}},
			{"overlays/hostnetwork", []string{kd + "overlays/hostnetwork"}, nil, nil,
				demoWant{kinds: []string{"Namespace", "Service", "Pod"}, workload: "Pod", caps: capsKill, hostNetwork: true, appPort: 8080}},
			{"base+restore", []string{kd + "base"}, []string{kd + "components/restore"}, nil,
				demoWant{kinds: []string{"Pod"}, workload: "Pod", caps: capsRestore}},
			{"deployment+hostnetwork+restore, ports 18080/18090",
				[]string{kd + "deployment", "./ports.yaml"}, []string{kd + "components/hostnetwork", kd + "components/restore"}, ports,
				demoWant{kinds: []string{"Deployment"}, workload: "Deployment", caps: capsRestore, hostNetwork: true, appPort: 18080}},
		}
		for _, c := range cases {
			t.Run(strings.ReplaceAll(c.name, "/", "_"), func(t *testing.T) {
				dir := overlay(t, c.resources, c.components, "namespace: "+ns+"\n", c.files)
				out := k.kustomize(t, dir)
				checkDemo(t, serverObjects(t, k, ns, out), c.want)
			})
		}
	})

	// podman's Pods (deploy/podman, `podman kube play`) are Kubernetes Pods
	// too: the apiserver must accept them as written, and their sidecars
	// get exactly the capabilities of their responses.
	t.Run("PodmanPods", func(t *testing.T) {
		for f, caps := range map[string][]string{"pod.yaml": capsRestore, "pod-kill.yaml": capsKill} {
			b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/podman", f))
			if err != nil {
				t.Fatal(err)
			}
			objs := serverObjects(t, k, ns, string(b))
			if len(objs) != 1 {
				t.Fatalf("%s: %d objects, want one Pod", f, len(objs))
			}
			var p corev1.Pod
			if err := json.Unmarshal(objs[0], &p); err != nil || p.Kind != "Pod" || p.Spec.ShareProcessNamespace == nil || !*p.Spec.ShareProcessNamespace {
				t.Fatalf("%s: %v %s", f, err, objs[0])
			}
			if len(p.Spec.Containers) != 2 {
				t.Fatalf("%s: %d containers, want app and podfim", f, len(p.Spec.Containers))
			}
			for _, c := range p.Spec.Containers {
				switch c.Name {
				case "podfim":
					checkDropAll(t, f+": podfim", c.SecurityContext, caps)
				default:
					checkDropAll(t, f+": "+c.Name, c.SecurityContext, nil)
				}
			}
		}
	})

	// The hostnetwork overlay's ports ConfigMap reaches every place a port is.
	t.Run("HostnetworkPorts", func(t *testing.T) {
		dir := overlay(t, []string{"deploy/kubernetes/base", "./ports.yaml"}, []string{"deploy/kubernetes/components/hostnetwork"}, "namespace: "+ns+"\n", ports)
		out := k.kustomize(t, dir)
		for _, want := range []string{"value: 127.0.0.1:18080", "containerPort: 18080", "value: 127.0.0.1:18090", "containerPort: 18090"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
		if strings.Contains(out, "podfim-demo-hostnetwork") {
			t.Error("the local-config ConfigMap of the ports is in the output")
		}
	})

	// The demo's policy: one text in the kustomize tree and in the chart,
	// and podfim accepts it.
	t.Run("DemoPolicy", func(t *testing.T) {
		root := repoRoot(t)
		a, err := os.ReadFile(filepath.Join(root, "deploy/kubernetes/common/policy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(root, "deploy/helm/podfim/files/hello-policy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Fatal("deploy/kubernetes/common/policy.yaml and deploy/helm/podfim/files/hello-policy.yaml differ")
		}
		p, err := policy.Parse(a)
		if err != nil {
			t.Fatalf("the demo policy: %v", err)
		}
		if len(p.Rules) == 0 {
			t.Fatal("the demo policy has no rules")
		}
	})

	// The Deployment's pod template is the seed's Pod.
	t.Run("DeploymentMatchesPod", func(t *testing.T) {
		var pod corev1.Pod
		var dep appsv1.Deployment
		readYAML(t, "deploy/kubernetes/base/pod.yaml", &pod)
		readYAML(t, "deploy/kubernetes/deployment/deployment.yaml", &dep)
		if !reflect.DeepEqual(pod.Spec, dep.Spec.Template.Spec) {
			a, _ := json.MarshalIndent(pod.Spec, "", " ")
			b, _ := json.MarshalIndent(dep.Spec.Template.Spec, "", " ")
			t.Fatalf("the Deployment's pod spec differs from the Pod's:\npod: %s\ndeployment: %s", a, b)
		}
	})

	t.Run("HelmLint", func(t *testing.T) {
		for _, args := range [][]string{nil, {"--set", "hostNetwork.enabled=true", "--set", "demo.kind=Deployment"},
			{"--set", "mode=agent"}, {"--set", "mode=agent", "--set", "agent.respond={log,metric,event,unready,restore,kill,quarantine,delete}"}} {
			r := helmRun(t, append([]string{"lint", "--strict", helmChart(t)}, args...)...)
			if r.Err != nil {
				t.Fatalf("helm lint --strict %v: %v\n%s", args, r.Err, r.Out())
			}
		}
	})

	t.Run("Helm", func(t *testing.T) {
		cases := []struct {
			name string
			sets []string
			want demoWant
		}{
			{"defaults", nil, demoWant{kinds: []string{"Service", "Pod"}, workload: "Pod", caps: capsKill, appPort: 8080}},
			{"deployment", []string{"demo.kind=Deployment", "demo.replicas=2"},
				demoWant{kinds: []string{"Service", "Deployment"}, workload: "Deployment", caps: capsKill}},
			{"restore", []string{"sidecar.respond={log,metric,unready,restore}"},
				demoWant{kinds: []string{"Pod"}, workload: "Pod", caps: capsRestore}},
			{"api responses", []string{"sidecar.respond={log,metric,event,quarantine,kill}"},
				demoWant{kinds: []string{"Pod"}, workload: "Pod", caps: capsKill, apiToken: true}},
			{"registry baseline", []string{"sidecar.baseline.source=registry", "sidecar.baseline.verifyKey.configMap=podfim-keys",
				"sidecar.baseline.registrySecret=regcred"},
				demoWant{kinds: []string{"Pod"}, workload: "Pod", caps: capsKill, apiToken: true}},
			{"builtin policy", []string{"demo.policy.builtin=true"},
				demoWant{kinds: []string{"Pod"}, workload: "Pod", caps: capsKill, builtinPolicy: true}},
			{"report only", []string{"sidecar.respond={log,metric,unready}", "demo.service.type=ClusterIP"},
				demoWant{kinds: []string{"Pod", "Service"}, workload: "Pod", caps: capsReport}},
			{"hostnetwork", []string{"hostNetwork.enabled=true", "hostNetwork.apiServerHost=127.0.0.1", "hostNetwork.apiServerPort=6443",
				"sidecar.image.pullPolicy=Never", "demo.app.image.pullPolicy=Never", "demo.app.port=18080", "sidecar.port=18090"},
				demoWant{kinds: []string{"Pod"}, workload: "Pod", caps: capsKill, hostNetwork: true, appPort: 18080}},
		}
		for _, c := range cases {
			t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
				var args []string
				for _, s := range c.sets {
					args = append(args, "--set", s)
				}
				out := helmTemplate(t, "t", ns, args...)
				checkDemo(t, serverObjects(t, k, ns, out), c.want)
			})
		}
		t.Run("no_service", func(t *testing.T) {
			out := helmTemplate(t, "t", ns, "--set", "demo.service.enabled=false")
			if strings.Contains(out, "kind: Service\n") {
				t.Fatalf("demo.service.enabled=false still renders a Service:\n%s", out)
			}
		})
	})

	// Mode agent: the node agent's DaemonSet and ClusterRole, and the demo
	// protected through its readiness gate, as the apiserver takes them.
	t.Run("HelmAgent", func(t *testing.T) {
		for _, c := range agentCases {
			t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
				out := helmTemplate(t, "t", ns, setArgs(c.sets)...)
				checkAgent(t, serverObjects(t, k, ns, out), c.want)
			})
		}
	})

	// An image-bound baseline source without a key fails closed at render time.
	t.Run("HelmBaselineNeedsKey", func(t *testing.T) {
		r := helmRun(t, "template", "t", helmChart(t), "--set", "sidecar.baseline.source=registry")
		if r.Err == nil || !strings.Contains(r.Stderr, "needs sidecar.baseline.verifyKey.configMap") {
			t.Errorf("source registry without a key: %v %q", r.Err, r.Stderr)
		}
	})

	// Values that break the schema are refused by helm, with the reason.
	t.Run("HelmSchemaRejects", func(t *testing.T) {
		cases := []struct{ set, reason string }{
			{"sidecar.respond={log,explode}", "/sidecar/respond/1"},
			{"sidecar.respond={}", "/sidecar/respond"},
			{"demo.kind=StatefulSet", "/demo/kind"},
			{"demo.app.port=0", "/demo/app/port"},
			{"sidecar.quickInterval=often", "/sidecar/quickInterval"},
			{"sidecar.image.pullPolicy=Sometimes", "/sidecar/image/pullPolicy"},
			{"demo.service.type=ExternalName", "/demo/service/type"},
			{"demo.colour=blue", "additional properties 'colour' not allowed"},
			{"sidecar.logLevel=verbose", "/sidecar/logLevel"},
			{"sidecar.baseline.source=s3", "/sidecar/baseline/source"},
			{"sidecar.image.digest=sha256:1234", "/sidecar/image/digest"},
			{"demo.app.image.tag=v1 latest", "/demo/app/image/tag"},
			{"sidecar.image.registry=ghcr.io:port", "/sidecar/image/registry"},
			{"mode=node", "/mode"},
			{"agent.respond={log,explode}", "/agent/respond/1"},
			{"agent.escalate={kill}", "/agent/escalate/0"},
			{"agent.stateDir=/var/lib/../../etc", "/agent/stateDir"},
			{"agent.killWindow=soon", "/agent/killWindow"},
			{"agent.webhookURL=https://user:secret@alerts.example/", "/agent/webhookURL"},
		}
		for _, c := range cases {
			r := helmRun(t, "template", "t", helmChart(t), "--set", c.set)
			if r.Err == nil {
				t.Errorf("--set %s: helm accepted it", c.set)
				continue
			}
			if !strings.Contains(r.Stderr, "values don't meet the specifications of the schema") || !strings.Contains(r.Stderr, c.reason) {
				t.Errorf("--set %s: helm refused with %q; want the schema naming %q", c.set, strings.TrimSpace(r.Stderr), c.reason)
			}
		}
	})
}

// TestKubeHelmImageValues: the chart's image references from its values:
// by default the project's published images at the chart's appVersion
// (docs/install.md); registry, repository, tag and digest each change
// them, and a digest wins over a tag. No cluster needed.
func TestKubeHelmImageValues(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(helmChart(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil || chart.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion %q: %v", chart.AppVersion, err)
	}
	const dig = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		name        string
		sets        []string
		podfim, app string
	}{
		{"defaults", nil, "ghcr.io/podfim/podfim:" + chart.AppVersion, "ghcr.io/podfim/hello:" + chart.AppVersion},
		{"tag", []string{"sidecar.image.tag=v1.2.3", "demo.app.image.tag=v1.2.4"}, "ghcr.io/podfim/podfim:v1.2.3", "ghcr.io/podfim/hello:v1.2.4"},
		{"digest wins", []string{"sidecar.image.tag=v1.2.3", "sidecar.image.digest=" + dig, "demo.app.image.digest=" + dig},
			"ghcr.io/podfim/podfim@" + dig, "ghcr.io/podfim/hello@" + dig},
		{"registry", []string{"sidecar.image.registry=127.0.0.1:5000/mirror/", "demo.app.image.registry=127.0.0.1:5000"},
			"127.0.0.1:5000/mirror/podfim/podfim:" + chart.AppVersion, "127.0.0.1:5000/podfim/hello:" + chart.AppVersion},
		{"local images", []string{"sidecar.image.registry=", "sidecar.image.repository=localhost/podfim", "sidecar.image.tag=dev",
			"demo.app.image.registry=", "demo.app.image.repository=localhost/hello", "demo.app.image.tag=dev"},
			"localhost/podfim:dev", "localhost/hello:dev"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			args := []string{"--set", "webhook.enabled=true"}
			for _, s := range c.sets {
				args = append(args, "--set", s)
			}
			out := helmTemplate(t, "t", "default", args...)
			for what, want := range map[string]string{
				"the demo's sidecar":  `- name: podfim\n\s+image: ` + regexp.QuoteMeta(strconv.Quote(c.podfim)) + `\n`,
				"the demo's app":      `- name: app\n\s+image: ` + regexp.QuoteMeta(strconv.Quote(c.app)) + `\n`,
				"the webhook":         `- name: webhook\n\s+image: ` + regexp.QuoteMeta(strconv.Quote(c.podfim)) + `\n`,
				"the injected images": `- --sidecar-image=` + regexp.QuoteMeta(c.podfim) + `\n`,
			} {
				if !regexp.MustCompile(want).MatchString(out) {
					t.Errorf("helm template %v: %s: no match for %s in\n%s", c.sets, what, want, out)
				}
			}
		})
	}
}

// setArgs turns --set values into helm's arguments.
func setArgs(sets []string) []string {
	var args []string
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return args
}

// agentWant is what a rendering in mode agent must contain.
type agentWant struct {
	caps       []string // the agent's added capabilities
	podVerbs   []string // its ClusterRole's verbs on pods
	configMaps bool     // get on configmaps (agent.readConfigMaps)
}

// agentCases: the agent's capabilities and RBAC derive from its responses,
// agent.respond and agent.escalate together.
var agentCases = []struct {
	name string
	sets []string
	want agentWant
}{
	{"defaults", []string{"mode=agent"}, agentWant{caps: capsReport, podVerbs: []string{"get", "list", "watch"}}},
	{"every response", []string{"mode=agent", "agent.respond={log,metric,event,unready,restore,kill,quarantine,delete}"},
		agentWant{caps: capsAll, podVerbs: []string{"get", "list", "watch", "patch", "delete"}}},
	{"escalate and configmaps", []string{"mode=agent", "agent.respond={log,metric,kill}", "agent.escalate={quarantine,restore}",
		"agent.readConfigMaps=true", "demo.kind=Deployment"},
		agentWant{caps: capsAll, podVerbs: []string{"get", "list", "watch", "patch"}, configMaps: true}},
}

// agentStateDir is agent.stateDir's default: the agent's only hostPath.
const agentStateDir = "/var/lib/podfim/agent"

// agentRules are exactly the rules the agent's ClusterRole must hold.
func agentRules(want agentWant) []rbacv1.PolicyRule {
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: want.podVerbs},
		{APIGroups: []string{""}, Resources: []string{"pods/status"}, Verbs: []string{"patch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
	}
	if want.configMaps {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}})
	}
	return rules
}

// checkAgent checks the objects of one rendering in mode agent: the
// DaemonSet (hostPID, not privileged, only the response's capabilities,
// the state directory its only hostPath), its ServiceAccount, ClusterRole
// and binding, and the demo without a sidecar.
func checkAgent(t *testing.T, objs []json.RawMessage, want agentWant) {
	t.Helper()
	var (
		dss   []appsv1.DaemonSet
		sas   []corev1.ServiceAccount
		roles []rbacv1.ClusterRole
		binds []rbacv1.ClusterRoleBinding
		demos []corev1.PodTemplateSpec
	)
	for _, raw := range objs {
		var meta struct{ Kind string }
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		var err error
		switch meta.Kind {
		case "DaemonSet":
			var d appsv1.DaemonSet
			err = json.Unmarshal(raw, &d)
			dss = append(dss, d)
		case "ServiceAccount":
			var sa corev1.ServiceAccount
			err = json.Unmarshal(raw, &sa)
			sas = append(sas, sa)
		case "ClusterRole":
			var r rbacv1.ClusterRole
			err = json.Unmarshal(raw, &r)
			roles = append(roles, r)
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			err = json.Unmarshal(raw, &b)
			binds = append(binds, b)
		case "Pod":
			var p corev1.Pod
			err = json.Unmarshal(raw, &p)
			demos = append(demos, corev1.PodTemplateSpec{ObjectMeta: p.ObjectMeta, Spec: p.Spec})
		case "Deployment":
			var d appsv1.Deployment
			err = json.Unmarshal(raw, &d)
			demos = append(demos, d.Spec.Template)
		}
		if err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	if len(dss) != 1 || len(sas) != 1 || len(roles) != 1 || len(binds) != 1 || len(demos) != 1 {
		t.Fatalf("%d DaemonSets, %d ServiceAccounts, %d ClusterRoles, %d ClusterRoleBindings, %d demo workloads: want one each",
			len(dss), len(sas), len(roles), len(binds), len(demos))
	}
	ds, sa := dss[0], sas[0]
	s := ds.Spec.Template.Spec
	if !s.HostPID {
		t.Error("agent: hostPID is not true: it could not see the protected containers' processes")
	}
	if s.HostNetwork || s.HostIPC {
		t.Errorf("agent: hostNetwork %v, hostIPC %v; want neither", s.HostNetwork, s.HostIPC)
	}
	if s.AutomountServiceAccountToken == nil || !*s.AutomountServiceAccountToken || s.ServiceAccountName != sa.Name {
		t.Errorf("agent: service account %q (automount %v), want %q with its token", s.ServiceAccountName, s.AutomountServiceAccountToken, sa.Name)
	}
	if l := ds.Spec.Template.Labels; l["podfim.io/inject"] != "disabled" || l["podfim.io/protect"] != "disabled" {
		t.Errorf("agent pod labels %v: want podfim.io/inject and podfim.io/protect disabled (never injected, never protecting itself)", l)
	}
	if u := ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil ||
		u.RollingUpdate.MaxUnavailable == nil || u.RollingUpdate.MaxUnavailable.String() != "1" {
		t.Errorf("agent: update strategy %+v, want RollingUpdate with maxUnavailable 1", u)
	}
	if len(s.Containers) != 1 || len(s.InitContainers) != 0 {
		t.Fatalf("agent: %d containers, %d init containers; want the agent alone", len(s.Containers), len(s.InitContainers))
	}
	c := s.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "agent" || !slices.Contains(c.Args, "--state-dir="+agentStateDir) {
		t.Errorf("agent: args %v, want agent ... --state-dir=%s", c.Args, agentStateDir)
	}

	// Not privileged: uid 0 with only the capabilities of its responses.
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged {
		t.Fatal("agent: privileged is not false")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("agent: securityContext %+v, want uid 0, a read-only root and seccomp RuntimeDefault", sc)
	}
	checkDropAll(t, "agent", sc, want.caps)

	// The downward API: its node (required), its own pod.
	fields := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			fields[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	for name, path := range map[string]string{"NODE_NAME": "spec.nodeName", "POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"} {
		if fields[name] != path {
			t.Errorf("agent env %s from %q, want the field %s", name, fields[name], path)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" {
		t.Errorf("agent ports %v, want one named metrics", c.Ports)
	}
	for _, pr := range []struct {
		who  string
		p    *corev1.Probe
		path string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if pr.p == nil || pr.p.HTTPGet == nil || pr.p.HTTPGet.Path != pr.path || pr.p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("agent %s probe %+v, want GET %s on metrics", pr.who, pr.p, pr.path)
		}
	}

	// The state directory is the only hostPath, mounted read-write at its own path.
	var hostPaths []corev1.Volume
	for _, v := range s.Volumes {
		if v.HostPath != nil {
			hostPaths = append(hostPaths, v)
		}
	}
	if len(hostPaths) != 1 || hostPaths[0].HostPath.Path != agentStateDir || hostPaths[0].HostPath.Type == nil ||
		*hostPaths[0].HostPath.Type != corev1.HostPathDirectoryOrCreate {
		t.Fatalf("agent: hostPath volumes %+v, want only %s (DirectoryOrCreate)", hostPaths, agentStateDir)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == hostPaths[0].Name && m.MountPath == agentStateDir && !m.ReadOnly
	}) {
		t.Errorf("agent: mounts %+v, want %s read-write at %s", c.VolumeMounts, hostPaths[0].Name, agentStateDir)
	}

	// RBAC: exactly the rules of its responses, bound to its account only.
	if got, wantRules := roles[0].Rules, agentRules(want); !reflect.DeepEqual(got, wantRules) {
		t.Errorf("agent ClusterRole rules\n%+v\nwant\n%+v", got, wantRules)
	}
	b := binds[0]
	wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: ds.Namespace}}
	if b.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: roles[0].Name}) || !reflect.DeepEqual(b.Subjects, wantSubjects) {
		t.Errorf("agent ClusterRoleBinding %+v -> %+v, want %s -> %+v", b.RoleRef, b.Subjects, roles[0].Name, wantSubjects)
	}

	// The demo: opted in, gated, no sidecar.
	demo := demos[0]
	if demo.Labels["podfim.io/protect"] != "enabled" {
		t.Errorf("demo labels %v, want podfim.io/protect=enabled", demo.Labels)
	}
	if want := []corev1.PodReadinessGate{{ConditionType: "podfim.io/integrity"}}; !reflect.DeepEqual(demo.Spec.ReadinessGates, want) {
		t.Errorf("demo readiness gates %v, want %v", demo.Spec.ReadinessGates, want)
	}
	if len(demo.Spec.Containers) != 1 || demo.Spec.Containers[0].Name != "app" || len(demo.Spec.Volumes) != 0 ||
		demo.Spec.ShareProcessNamespace != nil && *demo.Spec.ShareProcessNamespace {
		t.Errorf("demo: %d containers, %d volumes, shareProcessNamespace %v; want the app alone", len(demo.Spec.Containers), len(demo.Spec.Volumes), demo.Spec.ShareProcessNamespace)
	}
}

// renderedObjects splits helm's output into its objects, as JSON.
func renderedObjects(t *testing.T, manifests string) []json.RawMessage {
	t.Helper()
	var objs []json.RawMessage
	for _, doc := range strings.Split(manifests, "\n---") {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if s := strings.TrimSpace(string(j)); s != "null" && s != "" {
			objs = append(objs, j)
		}
	}
	return objs
}

// strictObjects decodes the objects of the kinds it knows with unknown
// fields refused, as --validate=strict would.
func strictObjects(t *testing.T, objs []json.RawMessage) {
	t.Helper()
	for _, raw := range objs {
		var meta struct{ Kind string }
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		var v any
		switch meta.Kind {
		case "DaemonSet":
			v = &appsv1.DaemonSet{}
		case "Deployment":
			v = &appsv1.Deployment{}
		case "Pod":
			v = &corev1.Pod{}
		case "Service":
			v = &corev1.Service{}
		case "ServiceAccount":
			v = &corev1.ServiceAccount{}
		case "ClusterRole":
			v = &rbacv1.ClusterRole{}
		case "ClusterRoleBinding":
			v = &rbacv1.ClusterRoleBinding{}
		default:
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Errorf("%s: %v", meta.Kind, err)
		}
	}
}

// TestKubeHelmAgent: the chart in mode agent, as helm renders it (what
// TestKubeManifests/HelmAgent checks again after the apiserver's dry run),
// its monitoring, and the refusals the schema cannot express. No cluster
// needed.
func TestKubeHelmAgent(t *testing.T) {
	for _, c := range agentCases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			objs := renderedObjects(t, helmTemplate(t, "t", "podfim-agent", setArgs(c.sets)...))
			strictObjects(t, objs)
			checkAgent(t, objs, c.want)
		})
	}

	// Optional flags are left out unless set, so the agent's defaults apply.
	t.Run("args", func(t *testing.T) {
		args := func(sets ...string) []string {
			for _, raw := range renderedObjects(t, helmTemplate(t, "t", "default", setArgs(append([]string{"mode=agent"}, sets...))...)) {
				var d appsv1.DaemonSet
				if err := json.Unmarshal(raw, &d); err == nil && d.Kind == "DaemonSet" {
					return d.Spec.Template.Spec.Containers[0].Args
				}
			}
			t.Fatal("no DaemonSet")
			return nil
		}
		want := []string{"agent", "--state-dir=" + agentStateDir, "--listen=:9090", "--respond=log,metric,event,unready", "--escalate=unready",
			"--quick-interval=5m", "--full-interval=1h", "--exec-drift=false", "--log-level=info"}
		if got := args(); !slices.Equal(got, want) {
			t.Errorf("default args %v, want %v", got, want)
		}
		got := args("agent.killLimit=5", "agent.killWindow=15m", "agent.deleteMinAge=", "agent.evidenceMaxBytes=17179869184",
			"agent.respond={log,webhook}", "agent.webhookURL=https://alerts.example/podfim", "agent.execDrift=true", "agent.extraArgs={--x=1}")
		for _, a := range []string{"--kill-limit=5", "--kill-window=15m", "--evidence-max-bytes=17179869184",
			"--webhook-url=https://alerts.example/podfim", "--exec-drift=true"} {
			if !slices.Contains(got, a) {
				t.Errorf("args %v lack %s", got, a)
			}
		}
		if got[len(got)-1] != "--x=1" || slices.ContainsFunc(got, func(a string) bool { return strings.HasPrefix(a, "--delete-min-age") }) {
			t.Errorf("args %v: extra args last, no --delete-min-age when empty", got)
		}
		// Keys are per pod (podfim.io/verify-key): podfim agent has no --verify-key.
		if slices.ContainsFunc(got, func(a string) bool { return strings.HasPrefix(a, "--verify-key") }) {
			t.Errorf("args %v: podfim agent has no --verify-key", got)
		}
	})

	// On the host network the agent listens on hostNetwork.bindAddress, and
	// its probes ask that host, as the sidecar's and the demo app's do.
	t.Run("host network", func(t *testing.T) {
		out := helmTemplate(t, "t", "default", setArgs([]string{"mode=agent", "hostNetwork.enabled=true", "hostNetwork.bindAddress=127.0.0.2"})...)
		var ds *appsv1.DaemonSet
		for _, raw := range renderedObjects(t, out) {
			var d appsv1.DaemonSet
			if err := json.Unmarshal(raw, &d); err == nil && d.Kind == "DaemonSet" {
				ds = &d
			}
		}
		if ds == nil {
			t.Fatal("no DaemonSet")
		}
		s := ds.Spec.Template.Spec
		if !s.HostNetwork || s.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("agent: hostNetwork %v, dnsPolicy %q; want true, ClusterFirstWithHostNet", s.HostNetwork, s.DNSPolicy)
		}
		c := s.Containers[0]
		if !slices.Contains(c.Args, "--listen=127.0.0.2:9090") {
			t.Errorf("agent args %v, want --listen=127.0.0.2:9090", c.Args)
		}
		for who, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Host != "127.0.0.2" {
				t.Errorf("agent %s probe %+v, want httpGet on host 127.0.0.2", who, p)
			}
		}
	})

	// Values of the agent that do not exist are refused, not ignored: the
	// agent has no key of its own, and readConfigMaps replaced
	// configMapBaselines.
	for _, c := range []struct{ set, reason string }{
		{"agent.verifyKey.configMap=keys", "additional properties 'verifyKey' not allowed"},
		{"agent.configMapBaselines=true", "additional properties 'configMapBaselines' not allowed"},
	} {
		r := helmRun(t, "template", "t", helmChart(t), "--set", "mode=agent", "--set", c.set)
		if r.Err == nil || !strings.Contains(r.Stderr, c.reason) {
			t.Errorf("--set %s: %v %q, want the schema naming %q", c.set, r.Err, strings.TrimSpace(r.Stderr), c.reason)
		}
	}

	// The webhook action needs its URL (the agent would refuse to start).
	for _, sets := range [][]string{{"agent.respond={log,webhook}"}, {"agent.escalate={unready,webhook}"}} {
		r := helmRun(t, append([]string{"template", "t", helmChart(t), "--set", "mode=agent"}, setArgs(sets)...)...)
		if r.Err == nil || !strings.Contains(r.Stderr, "agent.webhookURL") {
			t.Errorf("%v: %v %q, want a refusal naming agent.webhookURL", sets, r.Err, r.Stderr)
		}
	}

	// Monitoring: the agent's pods are scraped with their metrics' own
	// namespace, pod and container labels (honorLabels); the demo has no
	// sidecar to scrape unless monitoring.podSelector names pods that do.
	type object struct {
		Kind     string
		Metadata struct {
			Name   string
			Labels map[string]string
		}
		Spec map[string]any
	}
	monitoring := func(sets ...string) map[string]object {
		byName := map[string]object{}
		out := helmTemplate(t, "t", "default", setArgs(append([]string{"mode=agent", "monitoring.serviceMonitor.enabled=true",
			"monitoring.prometheusRule.enabled=true"}, sets...))...)
		for _, raw := range renderedObjects(t, out) {
			var o object
			if err := json.Unmarshal(raw, &o); err != nil {
				t.Fatal(err)
			}
			byName[o.Kind+"/"+o.Metadata.Name] = o
		}
		return byName
	}
	alerts := func(rule object) map[string]string {
		exprs := map[string]string{}
		for _, g := range rule.Spec["groups"].([]any) {
			for _, r := range g.(map[string]any)["rules"].([]any) {
				r := r.(map[string]any)
				exprs[r["alert"].(string)] = r["expr"].(string)
			}
		}
		return exprs
	}
	objs := monitoring()
	svc, sm := objs["Service/t-podfim-agent-metrics"], objs["ServiceMonitor/t-podfim-agent-metrics"]
	if _, ok := objs["ServiceMonitor/t-podfim-sidecar-metrics"]; ok || svc.Kind == "" || sm.Kind == "" {
		t.Fatalf("mode agent renders %v; want the agent's metrics Service and ServiceMonitor, no sidecars'", slices.Sorted(maps.Keys(objs)))
	}
	if sel, _ := svc.Spec["selector"].(map[string]any); sel["app.kubernetes.io/component"] != "agent" {
		t.Errorf("agent metrics Service selects %v", sel)
	}
	smSel, _ := sm.Spec["selector"].(map[string]any)["matchLabels"].(map[string]any)
	for k, v := range smSel {
		if svc.Metadata.Labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%v, the Service has %q", k, v, svc.Metadata.Labels[k])
		}
	}
	if ep := sm.Spec["endpoints"].([]any)[0].(map[string]any); ep["port"] != "metrics" || ep["honorLabels"] != true {
		t.Errorf("agent ServiceMonitor endpoint %v, want port metrics with honorLabels", ep)
	}
	exprs := alerts(objs["PrometheusRule/t-podfim-sidecar-metrics"])
	if _, ok := exprs["PodfimSidecarDown"]; ok || exprs["PodfimAgentDown"] == "" {
		t.Errorf("alerts %v: want PodfimAgentDown and no PodfimSidecarDown", exprs)
	}
	for name, e := range exprs {
		if !strings.Contains(e, `job="t-podfim-agent-metrics"`) {
			t.Errorf("alert %s does not select the agent's job: %s", name, e)
		}
	}
	if e := exprs["PodfimViolationOpen"]; !strings.Contains(e, "by (namespace, pod, container)") {
		t.Errorf("PodfimViolationOpen %s: want the protected container", e)
	}
	// Sidecars elsewhere (monitoring.podSelector): both jobs.
	objs = monitoring("monitoring.podSelector.app=shop")
	if _, ok := objs["ServiceMonitor/t-podfim-sidecar-metrics"]; !ok {
		t.Errorf("with monitoring.podSelector: %v, want the sidecars' ServiceMonitor too", slices.Sorted(maps.Keys(objs)))
	}
	exprs = alerts(objs["PrometheusRule/t-podfim-sidecar-metrics"])
	if e := exprs["PodfimViolationOpen"]; !strings.Contains(e, `job=~"t-podfim-sidecar-metrics|t-podfim-agent-metrics"`) {
		t.Errorf("PodfimViolationOpen %s: want both jobs", e)
	}
	if exprs["PodfimSidecarDown"] == "" || exprs["PodfimAgentDown"] == "" {
		t.Errorf("alerts %v: want PodfimSidecarDown and PodfimAgentDown", slices.Sorted(maps.Keys(exprs)))
	}
}

// readYAML decodes a YAML file of the repository into v, strictly.
func readYAML(t *testing.T, rel string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatal(fmt.Errorf("%s: %w", rel, err))
	}
}

// TestKubeHelmValuesDocumented: every value of the chart carries a "# --"
// comment in values.yaml (itself or the map holding it), and every
// documented value has its row in docs/helm.md. No cluster needed.
func TestKubeHelmValuesDocumented(t *testing.T) {
	root := repoRoot(t)
	text, err := os.ReadFile(filepath.Join(root, "deploy/helm/podfim/values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	documented := documentedValues(string(text))
	var values map[string]any
	if err := yaml.Unmarshal(text, &values); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	var leaves []string
	collectLeaves("", values, &leaves)
	for _, leaf := range leaves {
		ok := false
		for p := leaf; p != ""; p = parentKey(p) {
			if documented[p] {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("values.yaml: %s has no \"# --\" comment (on itself or a map holding it)", leaf)
		}
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs/helm.md"))
	if err != nil {
		t.Fatal(err)
	}
	for key := range documented {
		if !strings.Contains(string(doc), "| `"+key+"` |") {
			t.Errorf("docs/helm.md has no row for %s", key)
		}
	}
	if len(documented) < 20 {
		t.Fatalf("only %d documented values found: the parser is broken", len(documented))
	}
}

// documentedValues returns the dotted keys of values.yaml preceded by a
// "# -- description" comment (helm-docs' convention).
func documentedValues(text string) map[string]bool {
	out := map[string]bool{}
	var stack []string
	pending := false
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "# --"):
			pending = true
			continue
		case strings.HasPrefix(trimmed, "#"):
			continue // continuation lines and section headers
		case trimmed == "":
			pending = false
			continue
		}
		key, _, found := strings.Cut(trimmed, ":")
		if !found || strings.HasPrefix(trimmed, "-") || strings.ContainsAny(key, " \"'{[") {
			pending = false
			continue
		}
		depth := (len(line) - len(strings.TrimLeft(line, " "))) / 2
		if depth > len(stack) {
			depth = len(stack)
		}
		stack = append(stack[:depth], key)
		if pending {
			out[strings.Join(stack, ".")] = true
		}
		pending = false
	}
	return out
}

// collectLeaves lists the dotted keys of values that are not maps, or are
// empty maps (a place for the user's own keys).
func collectLeaves(prefix string, v any, out *[]string) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		*out = append(*out, prefix)
		return
	}
	for k, sub := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		collectLeaves(key, sub, out)
	}
}

func parentKey(key string) string {
	i := strings.LastIndex(key, ".")
	if i < 0 {
		return ""
	}
	return key[:i]
}
