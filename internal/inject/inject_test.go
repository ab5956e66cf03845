package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/podfim/podfim/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden patches in testdata/mutate")

func testConfig() *Config {
	return &Config{
		Image:      "localhost/podfim:dev",
		PullPolicy: corev1.PullNever,
		Respond:    []string{"log", "metric", "unready"},
		Env:        []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "127.0.0.1"}},
	}
}

func readPod(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(data, &pod); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &pod
}

// TestMutateGolden compares the patch of each testdata/mutate/NAME.pod.yaml
// with NAME.patch.json (go test -update rewrites them), applies it, and
// checks that the result is injected once and stays so on re-admission.
func TestMutateGolden(t *testing.T) {
	pods, _ := filepath.Glob("testdata/mutate/*.pod.yaml")
	if len(pods) == 0 {
		t.Fatal("no test pods")
	}
	for _, path := range pods {
		name := strings.TrimSuffix(filepath.Base(path), ".pod.yaml")
		t.Run(name, func(t *testing.T) {
			c := testConfig()
			pod := readPod(t, path)
			ops, outcome, _, err := c.Mutate(pod)
			if err != nil || outcome != Injected {
				t.Fatalf("outcome %s, %v", outcome, err)
			}
			got, err := json.MarshalIndent(ops, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata/mutate", name+".patch.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("patch differs from %s (go test -update rewrites it):\n%s", golden, got)
			}
			// Deterministic: the same pod gives the same bytes.
			again, _, _, _ := c.Mutate(readPod(t, path))
			if b, _ := json.MarshalIndent(again, "", "  "); !bytes.Equal(append(b, '\n'), got) {
				t.Error("a second Mutate of the same pod gave another patch")
			}

			injected := applyPatch(t, pod, ops)
			if n := countContainers(injected, ContainerName); n != 1 {
				t.Fatalf("%d sidecars after the patch", n)
			}
			if injected.Spec.ShareProcessNamespace == nil || !*injected.Spec.ShareProcessNamespace {
				t.Error("shareProcessNamespace is not true")
			}
			if injected.Annotations[AnnStatus] != StatusDone {
				t.Errorf("status annotation %q", injected.Annotations[AnnStatus])
			}
			for k, v := range pod.Annotations {
				if injected.Annotations[k] != v {
					t.Errorf("annotation %s changed to %q", k, injected.Annotations[k])
				}
			}
			checkSidecar(t, pod, injected)
			// Re-admission (reinvocation, or a copy of the injected spec)
			// changes nothing.
			ops2, outcome2, reason, err := c.Mutate(injected)
			if err != nil || outcome2 != Skipped || len(ops2) != 0 {
				t.Errorf("re-admission: %s (%s) with %d ops, %v", outcome2, reason, len(ops2), err)
			}
		})
	}
}

// checkSidecar checks the security properties of the injected sidecar
// independently of the golden file.
func checkSidecar(t *testing.T, before, pod *corev1.Pod) {
	t.Helper()
	var sc corev1.Container
	for _, c := range pod.Spec.Containers {
		if c.Name == ContainerName {
			sc = c
		}
	}
	sec := sc.SecurityContext
	if sec == nil || sec.ReadOnlyRootFilesystem == nil || !*sec.ReadOnlyRootFilesystem ||
		sec.AllowPrivilegeEscalation == nil || *sec.AllowPrivilegeEscalation ||
		sec.Privileged == nil || *sec.Privileged ||
		sec.SeccompProfile == nil || sec.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		sec.Capabilities == nil || !slices.Equal(sec.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatalf("insecure sidecar security context: %+v", sec)
	}
	args := strings.Join(sc.Args, " ")
	psa := podSecurity(pod)
	if before.Annotations[AnnPrivileges] == PrivilegesRestricted {
		checkRestricted(t, before, sc)
		if len(psa) > 0 {
			t.Errorf("the injected pod fails Pod Security restricted: %s", strings.Join(psa, "; "))
		}
		return
	}
	if !slices.ContainsFunc(psa, func(r string) bool { return strings.Contains(r, `container "podfim"`) }) {
		t.Errorf("a default-mode sidecar passes Pod Security restricted (%q): restricted mode would not be needed", psa)
	}
	add := sec.Capabilities.Add
	for _, c := range []corev1.Capability{"SYS_PTRACE", "DAC_READ_SEARCH"} {
		if !slices.Contains(add, c) {
			t.Errorf("capability %s missing: %v", c, add)
		}
	}
	restores := strings.Contains(args, "restore")
	for _, c := range capsRestore {
		if slices.Contains(add, c) != restores {
			t.Errorf("capability %s present = %v, but restore in the response = %v", c, !restores, restores)
		}
	}
	if slices.Contains(add, "KILL") != strings.Contains(args, "kill") {
		t.Errorf("KILL capability does not follow the kill action: %v, args %s", add, args)
	}
	// The state volume is mounted by the sidecar only.
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(m.Name, "podfim-") && c.Name != ContainerName {
				t.Errorf("container %s mounts %s", c.Name, m.Name)
			}
		}
	}
	var env []string
	for _, e := range sc.Env {
		env = append(env, e.Name)
		if e.Name == EnvPolicy {
			if _, err := policy.Parse([]byte(e.Value)); err != nil {
				t.Errorf("the policy the sidecar gets does not parse: %v", err)
			}
		}
	}
	for _, want := range []string{"POD_NAME", "POD_NAMESPACE", "POD_UID"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %s missing: %v", want, env)
		}
	}
	if sc.ReadinessProbe == nil || sc.ReadinessProbe.HTTPGet == nil || sc.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v", sc.ReadinessProbe)
	}
	if pod.Spec.HostNetwork != (sc.ReadinessProbe.HTTPGet.Host == "127.0.0.1") || pod.Spec.HostNetwork != strings.Contains(args, "--listen=127.0.0.1:") {
		t.Errorf("hostNetwork %v: probe host %q, args %s", pod.Spec.HostNetwork, sc.ReadinessProbe.HTTPGet.Host, args)
	}
	api := strings.Contains(args, "--target-name=") || strings.Contains(args, "event") || strings.Contains(args, "quarantine") || strings.Contains(args, "delete") ||
		strings.Contains(args, "--baseline-source=registry") || strings.Contains(args, "--baseline-source=configmap") // reads the app container's imageID
	// Only the sidecar mounts the pull secret and the baselines.
	for _, c := range pod.Spec.Containers {
		if c.Name != ContainerName && slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == VolumePull || m.Name == VolumeBaseline }) {
			t.Errorf("container %s mounts the pull secret or the baselines", c.Name)
		}
	}
	hasToken := slices.ContainsFunc(sc.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == VolumeToken && m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount" && m.ReadOnly
	})
	if api != hasToken {
		t.Errorf("the sidecar uses the API: %v, has its token: %v (args %s)", api, hasToken, args)
	}
	if len(before.Spec.Containers) > 1 != strings.Contains(args, "--target-name=") {
		t.Errorf("%d app containers, args %s", len(before.Spec.Containers), args)
	}
}

func countContainers(pod *corev1.Pod, name string) int {
	n := 0
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			n++
		}
	}
	return n
}

// applyPatch applies the operations Mutate makes ("add" to an object member
// or the end of an array) the way the API server does, on the pod's JSON.
func applyPatch(t *testing.T, pod *corev1.Pod, ops []PatchOp) *corev1.Pod {
	t.Helper()
	data, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Op != "add" {
			t.Fatalf("unexpected op %q", op.Op)
		}
		v, _ := json.Marshal(op.Value)
		var val any
		if err := json.Unmarshal(v, &val); err != nil {
			t.Fatal(err)
		}
		doc = addAt(t, doc, strings.Split(op.Path, "/")[1:], val)
	}
	out, _ := json.Marshal(doc)
	var res corev1.Pod
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	return &res
}

func addAt(t *testing.T, doc any, path []string, val any) any {
	t.Helper()
	tok := strings.ReplaceAll(strings.ReplaceAll(path[0], "~1", "/"), "~0", "~")
	switch d := doc.(type) {
	case map[string]any:
		if len(path) == 1 {
			d[tok] = val
			return d
		}
		child, ok := d[tok]
		if !ok {
			t.Fatalf("patch path through missing member %q", tok)
		}
		d[tok] = addAt(t, child, path[1:], val)
		return d
	case []any:
		if len(path) == 1 && tok == "-" {
			return append(d, val)
		}
		i, err := strconv.Atoi(tok)
		if err != nil || i >= len(d) {
			t.Fatalf("bad array index %q", tok)
		}
		d[i] = addAt(t, d[i], path[1:], val)
		return d
	}
	t.Fatalf("patch path through a %T", doc)
	return nil
}

func TestParseAnnotationsErrors(t *testing.T) {
	for _, tt := range []struct {
		ann       map[string]string
		key, want string
	}{
		{map[string]string{"podfim.io/respnd": "log"}, "podfim.io/respnd", "unknown podfim annotation"},
		{map[string]string{AnnRespond: "log,explode"}, AnnRespond, `Unsupported value: "explode"`},
		{map[string]string{AnnRespond: "log,log"}, AnnRespond, `Duplicate value: "log"`},
		{map[string]string{AnnRespond: "  "}, AnnRespond, "empty value"},
		{map[string]string{AnnEscalate: "kill"}, AnnEscalate, "kill cannot be an escalation"},
		{map[string]string{AnnRespond: "log,webhook"}, AnnRespond, "needs the annotation " + AnnWebhook},
		{map[string]string{AnnRespond: "log,webhook", AnnWebhook: "ftp://x"}, AnnWebhook, "not http or https"},
		{map[string]string{AnnWebhook: "https://x"}, AnnWebhook, "neither"},
		{map[string]string{AnnPaths: "/www:Readonly"}, AnnPaths, `unknown preset "Readonly"`},
		{map[string]string{AnnPaths: "www"}, AnnPaths, "absolute and clean"},
		{map[string]string{AnnPaths: "/www/../etc"}, AnnPaths, "absolute and clean"},
		{map[string]string{AnnPaths: "/a,/a:Growing"}, AnnPaths, "duplicate path"},
		{map[string]string{AnnExclude: "*.swp"}, AnnExclude, "must start with"},
		{map[string]string{AnnTarget: "App"}, AnnTarget, "not a container name"},
		{map[string]string{AnnKillLimit: "0"}, AnnKillLimit, "from 1 to 1000"},
		{map[string]string{AnnKillWin: "-1m"}, AnnKillWin, "positive duration"},
		{map[string]string{AnnBaseline: "configmap:x"}, AnnBaseline, "NAME/KEY"},
		{map[string]string{AnnBaseline: "s3://bucket/x"}, AnnBaseline, "want configmap:NAME/KEY or file:/PATH"},
		{map[string]string{AnnBaseline: "file:relative"}, AnnBaseline, "ABSOLUTE"},
		{map[string]string{AnnBaseline: "file:/proc/2/root/b.pfb"}, AnnBaseline, "under /proc"},
		{map[string]string{AnnBaseline: "file:/b.pfb", AnnVerifyKey: "file:/proc/self/root/k.pub"}, AnnVerifyKey, "under /proc"},
		{map[string]string{AnnVerifyKey: "file:/k.pub"}, AnnVerifyKey, "only a baseline file can be verified"},
		{map[string]string{AnnBaseline: "registry"}, AnnBaseline, "needs " + AnnVerifyKey},
		{map[string]string{AnnQuick: "soon"}, AnnQuick, "not a duration"},
		{map[string]string{AnnFull: "-1h"}, AnnFull, "negative"},
		{map[string]string{AnnQuick: "10ms"}, AnnQuick, "below 1s"},
		{map[string]string{AnnPort: "70000"}, AnnPort, "from 1 to 65535"},
		{map[string]string{AnnLogLevel: "loud"}, AnnLogLevel, "not one of"},
		{map[string]string{AnnExecDrift: "off"}, AnnExecDrift, "not true or false"},
		{map[string]string{AnnEvidenceMax: "0"}, AnnEvidenceMax, "from 1 to 16Gi"},
		{map[string]string{AnnEvidenceMax: "lots"}, AnnEvidenceMax, "from 1 to 16Gi"},
		{map[string]string{AnnEvidenceMax: "17Gi"}, AnnEvidenceMax, "from 1 to 16Gi"},
		{map[string]string{AnnPaths: strings.Repeat("/a", 3000)}, AnnPaths, "bytes, more than"},
		{map[string]string{AnnBaseline: "configmap", AnnVerifyKey: "file:/k.pub"}, AnnBaseline, "needs " + AnnBaselineMap},
		{map[string]string{AnnBaseline: "configmap", AnnBaselineMap: "web"}, AnnBaseline, "needs " + AnnVerifyKey},
		{map[string]string{AnnBaselineMap: "web"}, AnnBaselineMap, "is not \"configmap\""},
		{map[string]string{AnnBaseline: "registry", AnnVerifyKey: "file:/k.pub", AnnBaselineMap: "web"}, AnnBaselineMap, "is not \"configmap\""},
		{map[string]string{AnnBaseline: "configmap", AnnVerifyKey: "file:/k.pub", AnnBaselineMap: "Web_Baselines"}, AnnBaselineMap, "not a ConfigMap name"},
		{map[string]string{AnnBaseline: "configmap", AnnVerifyKey: "file:/k.pub", AnnBaselineMap: "web/x"}, AnnBaselineMap, "not a ConfigMap name"},
		{map[string]string{AnnSubject: "web/www"}, AnnSubject, "needs " + AnnBaseline},
		{map[string]string{AnnSubject: "web/www", AnnBaseline: "first-sight"}, AnnSubject, "needs " + AnnBaseline},
		{map[string]string{AnnSubject: strings.Repeat("s", 1025), AnnBaseline: "file:/b.pfb"}, AnnSubject, "more than 1024"},
		{map[string]string{AnnSubject: "web\n--respond=log", AnnBaseline: "file:/b.pfb"}, AnnSubject, "not printable"},
		{map[string]string{AnnSubject: "web\x1b[2J", AnnBaseline: "file:/b.pfb"}, AnnSubject, "not printable"},
		{map[string]string{AnnSubject: "web\xff", AnnBaseline: "file:/b.pfb"}, AnnSubject, "not printable"},
	} {
		_, err := ParseAnnotations(tt.ann, []string{"log"})
		var ae *AnnotationError
		if !errors.As(err, &ae) {
			t.Errorf("%v: %v, want an AnnotationError", tt.ann, err)
			continue
		}
		if ae.Key != tt.key || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q naming %s", tt.ann, err, tt.want, tt.key)
		}
	}
	// Every problem is reported at once.
	_, err := ParseAnnotations(map[string]string{AnnPort: "x", AnnQuick: "y"}, []string{"log"})
	if err == nil || !strings.Contains(err.Error(), AnnPort) || !strings.Contains(err.Error(), AnnQuick) {
		t.Errorf("two problems: %v", err)
	}
}

func TestParseAnnotationsValues(t *testing.T) {
	s, err := ParseAnnotations(map[string]string{
		AnnPaths:   " /www , /var/log:Growing ,",
		AnnRespond: "log, restore",
		AnnQuick:   "0",
		"other":    "ignored",
	}, []string{"log"})
	if err != nil {
		t.Fatal(err)
	}
	want := []PathRule{{"/www", "ReadOnly"}, {"/var/log", "Growing"}}
	if !reflect.DeepEqual(s.Paths, want) || !slices.Equal(s.Respond, []string{"log", "restore"}) || s.Quick == nil || *s.Quick != 0 {
		t.Errorf("%+v", s)
	}
	p, err := s.Policy()
	if err != nil || len(p.Rules) != 2 || p.Rules[0].Path != "/www" {
		t.Errorf("policy %+v, %v", p, err)
	}
	// No paths and no excludes: the sidecar's own default.
	if p, err := (Settings{}).Policy(); p != nil || err != nil {
		t.Errorf("empty settings give policy %v, %v", p, err)
	}
	// Excludes alone add to the default rules.
	s, err = ParseAnnotations(map[string]string{AnnExclude: "/srv/cache/**"}, []string{"log"})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := s.Policy(); err != nil || len(p.Rules) != len(policy.Default().Rules) || p.Exclude[0] != "/srv/cache/**" {
		t.Errorf("exclude only: %+v, %v", p, err)
	}
	// The default response is validated like an annotated one.
	if _, err := ParseAnnotations(nil, []string{"bogus"}); err == nil {
		t.Error("an invalid default response passed")
	}
}

func TestMutateRejects(t *testing.T) {
	f := false
	for _, tt := range []struct {
		name string
		edit func(*corev1.Pod)
		want string
	}{
		{"no process sharing", func(p *corev1.Pod) { p.Spec.ShareProcessNamespace = &f }, "shareProcessNamespace is false"},
		{"hostPID", func(p *corev1.Pod) { p.Spec.HostPID = true }, "hostPID"},
		{"windows", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }, "Linux only"},
		{"volume clash", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: VolumeState})
		}, `volume named "podfim-state"`},
		{"mount of the sidecar's state", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: VolumeState, MountPath: "/s"}}
		}, `container "app" mounts the volume "podfim-state"`},
		{"mount of the sidecar's token", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", VolumeMounts: []corev1.VolumeMount{{Name: VolumeToken, MountPath: "/t"}}}}
		}, `container "init" mounts the volume "podfim-token"`},
		{"unknown target", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnTarget: "db"} }, `no container "db" (containers: app)`},
		{"port clash", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "metrics", ContainerPort: DefaultPort}}
		}, AnnPort},
		{"bad annotation", func(p *corev1.Pod) { p.Annotations = map[string]string{AnnRespond: "lgo"} }, `annotation "podfim.io/respond": actions[0]: Unsupported value: "lgo"`},
	} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "x"}}}}
		tt.edit(pod)
		ops, outcome, _, err := testConfig().Mutate(pod)
		if outcome != Rejected || ops != nil || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %s %v, want rejected with %q", tt.name, outcome, err, tt.want)
		}
	}
	// Opted out, or already injected: skipped without a patch.
	for _, pod := range []*corev1.Pod{
		{ObjectMeta: metaLabels(LabelInject, InjectOff), Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}},
		{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: ContainerName}}}},
	} {
		if ops, outcome, _, err := testConfig().Mutate(pod); outcome != Skipped || ops != nil || err != nil {
			t.Errorf("%+v: %s %v", pod.Spec.Containers, outcome, err)
		}
	}
}

func TestTargetName(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := func(names ...string) *corev1.Pod {
		p := &corev1.Pod{}
		for _, n := range names {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n})
		}
		return p
	}
	native := pod("app")
	native.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always}, {Name: "setup"}}
	for _, tt := range []struct {
		pod        *corev1.Pod
		want, name string
		err        bool
	}{
		{pod("app"), "", "", false},
		{pod("app"), "app", "", false},
		{pod("a", "b"), "", "a", false},
		{pod("a", "b"), "b", "b", false},
		{pod("a", "b"), "c", "", true},
		{native, "", "app", false}, // two containers run: name it
		{native, "proxy", "proxy", false},
		{native, "setup", "", true}, // an init container that has ended
	} {
		got, err := targetName(tt.pod, tt.want)
		if got != tt.name || (err != nil) != tt.err {
			t.Errorf("%d containers, want %q: %q, %v", len(tt.pod.Spec.Containers), tt.want, got, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{PullPolicy: "Sometimes", Respond: []string{"explode"}, Env: []corev1.EnvVar{{Name: "A=B"}}}
	err := c.Validate()
	for _, want := range []string{"image is required", "Sometimes", "explode", `"A=B"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want %q", err, want)
		}
	}
	if err := testConfig().Validate(); err != nil {
		t.Error(err)
	}
}

func metaLabels(kv ...string) (m metav1.ObjectMeta) {
	m.Labels = map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Labels[kv[i]] = kv[i+1]
	}
	return m
}

func ExampleSettings_Annotations() {
	s, _ := ParseAnnotations(map[string]string{AnnPaths: "/www", AnnRespond: "log, kill"}, nil)
	fmt.Println(s.Annotations())
	// Output: map[podfim.io/paths:/www:ReadOnly podfim.io/respond:log,kill]
}

// TestPolicyKeepsRuntimeIgnores: annotated paths replace the built-in rules
// but not its Ignore rules under them, so "podfim.io/paths: /" never walks
// /proc or /sys (issue 11 item 5); a path the annotation names itself wins.
func TestPolicyKeepsRuntimeIgnores(t *testing.T) {
	for _, tc := range []struct {
		paths          string
		descend, skips []string // directories entered / paths not recorded
		records        []string
	}{
		{"/", []string{"/", "/etc", "/var"}, []string{"/proc/self/pagemap", "/sys/kernel/x", "/dev/null", "/run/secrets/x", "/var/run/x", "/tmp/a"},
			[]string{"/etc/passwd", "/www/index.html", "/var/log/app.log", "/etc/hosts"}},
		{"/var", []string{"/var", "/var/lib"}, []string{"/var/run/x", "/var/tmp/x", "/var/cache/x", "/proc/1/mem", "/etc/passwd"}, []string{"/var/lib/x", "/var/log/a"}},
		{"/www,/srv", []string{"/www"}, []string{"/proc/1/mem", "/etc/passwd"}, []string{"/www/a", "/srv/b"}},
		// Named explicitly: watched.
		{"/,/etc/hosts:ReadOnly,/tmp:Growing", nil, []string{"/proc/1/mem"}, []string{"/etc/hosts", "/tmp/a"}},
	} {
		s, err := ParseAnnotations(map[string]string{AnnPaths: tc.paths}, []string{"log"})
		if err != nil {
			t.Fatalf("%s: %v", tc.paths, err)
		}
		p, err := s.Policy()
		if err != nil {
			t.Fatalf("%s: %v", tc.paths, err)
		}
		m, err := p.Compile()
		if err != nil {
			t.Fatalf("%s: %v", tc.paths, err)
		}
		for _, d := range tc.descend {
			if !m.Descend(d) {
				t.Errorf("%s: does not enter %s", tc.paths, d)
			}
		}
		for _, d := range []string{"/proc", "/sys", "/dev"} {
			if m.Descend(d) {
				t.Errorf("%s: enters %s", tc.paths, d)
			}
		}
		for _, f := range tc.skips {
			if _, skip := m.Match(f); !skip {
				t.Errorf("%s: records %s", tc.paths, f)
			}
		}
		for _, f := range tc.records {
			if _, skip := m.Match(f); skip {
				t.Errorf("%s: does not record %s", tc.paths, f)
			}
		}
	}
}

// TestDefaultEvidenceMax: the webhook's --default-evidence-max-bytes
// bounds the evidence of pods that do not annotate one; the annotation
// wins; 0 leaves the sidecar's own default; out of range is refused.
func TestDefaultEvidenceMax(t *testing.T) {
	argsOf := func(c *Config, ann map[string]string) string {
		t.Helper()
		pod := readPod(t, "testdata/mutate/default.pod.yaml")
		pod.Annotations = ann
		ops, outcome, _, err := c.Mutate(pod)
		if err != nil || outcome != Injected {
			t.Fatalf("Mutate: %v, %v", outcome, err)
		}
		for _, ct := range applyPatch(t, pod, ops).Spec.Containers {
			if ct.Name == ContainerName {
				return strings.Join(ct.Args, " ")
			}
		}
		t.Fatal("no sidecar injected")
		return ""
	}
	c := testConfig()
	if a := argsOf(c, nil); strings.Contains(a, "--evidence-max-bytes") {
		t.Errorf("no default, no annotation: %s", a)
	}
	c.EvidenceMax = 1 << 20
	if a := argsOf(c, nil); !strings.Contains(a, "--evidence-max-bytes=1048576") {
		t.Errorf("default 1 MiB: %s", a)
	}
	if a := argsOf(c, map[string]string{AnnEvidenceMax: "2Mi"}); !strings.Contains(a, "--evidence-max-bytes=2097152") || strings.Contains(a, "1048576") {
		t.Errorf("annotated 2Mi over a default of 1 MiB: %s", a)
	}
	for _, bad := range []int64{-1, 17 << 30} {
		c.EvidenceMax = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "evidence") {
			t.Errorf("default evidence bound %d: %v", bad, err)
		}
	}
}
