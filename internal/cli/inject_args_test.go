package cli

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/inject"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/respond"
)

// TestInjectedArgsParse: the arguments and environment the admission
// webhook gives a sidecar are parsed by the sidecar's own command and flag
// set, build a valid configuration, and mean what the annotations said, so
// that the two vocabularies (annotations, sidecar flags) cannot drift
// apart. The pods are inject's golden pods plus one with the webhook and
// API responses.
func TestInjectedArgsParse(t *testing.T) {
	pods, _ := filepath.Glob("../inject/testdata/mutate/*.pod.yaml")
	if len(pods) == 0 {
		t.Fatal("no golden pods")
	}
	var cases []*corev1.Pod
	for _, p := range pods {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.Pod
		if err := yaml.UnmarshalStrict(data, &pod); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		pod.Name = strings.TrimSuffix(filepath.Base(p), ".pod.yaml") // the subtest's name
		cases = append(cases, &pod)
	}
	responses := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "x"}}}}
	responses.Name = "responses"
	responses.Annotations = map[string]string{
		inject.AnnRespond: "log,event,webhook,kill", inject.AnnEscalate: "quarantine,unready",
		inject.AnnWebhook: "https://alerts.example/podfim", inject.AnnKillWin: "90s", inject.AnnQuick: "0",
		inject.AnnBaseline: "file:/etc/podfim/www.pfb", inject.AnnExclude: "/srv/cache/**",
	}
	cases = append(cases, responses)
	c := &inject.Config{Image: "localhost/podfim:dev", Respond: []string{"log", "metric", "unready"}}
	for _, pod := range cases {
		t.Run(pod.Name, func(t *testing.T) {
			s, err := inject.ParseAnnotations(pod.Annotations, c.Respond)
			if err != nil {
				t.Fatal(err)
			}
			sc := injectedSidecar(t, c, pod)
			checkParsedBySidecar(t, sc, s, c.Respond)
		})
	}
}

// injectedSidecar runs the webhook's mutation and returns the sidecar it
// adds.
func injectedSidecar(t *testing.T, c *inject.Config, pod *corev1.Pod) corev1.Container {
	t.Helper()
	ops, outcome, _, err := c.Mutate(pod.DeepCopy())
	if err != nil || outcome != inject.Injected {
		t.Fatalf("%s: %v", outcome, err)
	}
	for _, op := range ops {
		if ct, ok := op.Value.(corev1.Container); ok && ct.Name == inject.ContainerName {
			return ct
		}
	}
	t.Fatalf("no sidecar in the patch %+v", ops)
	return corev1.Container{}
}

// checkParsedBySidecar parses sc's arguments with the real command and the
// sidecar's flag set, builds its configuration from them and sc's
// environment, and compares it with what the annotations (s) asked for.
func checkParsedBySidecar(t *testing.T, sc corev1.Container, s inject.Settings, defaultRespond []string) {
	t.Helper()
	root := New(io.Discard, io.Discard)
	cmd, flags, err := root.Find(sc.Args)
	if err != nil || cmd.Name() != "sidecar" {
		t.Fatalf("args %q: command %v, %v", sc.Args, cmd.Name(), err)
	}
	if err := cmd.ParseFlags(flags); err != nil || len(cmd.Flags().Args()) != 0 {
		t.Fatalf("the sidecar command refuses %q: %v (left %q)", flags, err, cmd.Flags().Args())
	}
	env := map[string]string{"POD_NAMESPACE": "shop", "POD_NAME": "web-1", "POD_UID": "u-1"}
	for _, e := range sc.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	var f sidecarFlags
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(sc.Args[1:]); err != nil {
		t.Fatal(err)
	}
	if err := f.resolve(fs, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	f.inCluster = func(p kube.Pod) (*kube.Client, error) {
		return kube.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"}, p) // no request is sent
	}
	// The key file is in a ConfigMap volume that exists only in the pod:
	// a key of the test's stands in for it (the registry and configmap
	// sources refuse to start without one).
	if s.VerifyKey != nil {
		if !strings.HasSuffix(f.verifyKey, refName(s.VerifyKey)) {
			t.Errorf("--verify-key=%s for %s", f.verifyKey, s.VerifyKey)
		}
		dir := t.TempDir()
		f.verifyKey = filepath.Join(dir, "ci.pub")
		if _, err := baseline.GenerateKey(filepath.Join(dir, "ci.key"), f.verifyKey); err != nil {
			t.Fatal(err)
		}
	}
	cfg, _, err := f.build(func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("the sidecar refuses its injected configuration %q: %v", sc.Args, err)
	}
	if s.Registry != (cfg.Source() == metrics.BaselineRegistry) {
		t.Errorf("baseline source %s, podfim.io/baseline registry %v", cfg.Source(), s.Registry)
	}
	if s.MapSource != (cfg.Source() == metrics.BaselineConfigMap) || s.MapSource && cfg.BaselineFile != "/etc/podfim/baseline" {
		t.Errorf("baseline source %s in %q, podfim.io/baseline configmap %v", cfg.Source(), cfg.BaselineFile, s.MapSource)
	}
	want := s.Respond
	if want == nil {
		want = defaultRespond
	}
	if !slices.Equal(cfg.Plan.Actions, respond.ParseActions(want...)) || !slices.Equal(cfg.Plan.Escalate, respond.ParseActions(s.Escalate...)) && s.Escalate != nil {
		t.Errorf("plan %v / %v, annotations %v / %v", cfg.Plan.Actions, cfg.Plan.Escalate, want, s.Escalate)
	}
	if s.KillLimit != 0 && cfg.Plan.KillLimit != s.KillLimit || s.KillWin != 0 && cfg.Plan.KillWindow != s.KillWin {
		t.Errorf("kill limit %d/%s, annotations %d/%s", cfg.Plan.KillLimit, cfg.Plan.KillWindow, s.KillLimit, s.KillWin)
	}
	if s.Webhook != "" && (cfg.Plan.Webhook == nil || cfg.Plan.Webhook.URL != s.Webhook) {
		t.Errorf("webhook %+v, annotation %q", cfg.Plan.Webhook, s.Webhook)
	}
	if s.Quick != nil && cfg.Quick != *s.Quick || s.Full != nil && cfg.Full != *s.Full {
		t.Errorf("intervals %s/%s, annotations %v/%v", cfg.Quick, cfg.Full, s.Quick, s.Full)
	}
	if s.Baseline != nil && !strings.HasSuffix(cfg.BaselineFile, refName(s.Baseline)) || s.Baseline == nil && !s.MapSource && cfg.BaselineFile != "" {
		t.Errorf("baseline %q, annotation %v", cfg.BaselineFile, s.Baseline)
	}
	if s.LogLevel != "" && f.logLevel != s.LogLevel {
		t.Errorf("log level %q, annotation %q", f.logLevel, s.LogLevel)
	}
	if cfg.Subject != s.Subject {
		t.Errorf("subject %q, annotation %q", cfg.Subject, s.Subject)
	}
	if s.Target != "" && cfg.TargetName != s.Target {
		t.Errorf("target %q, annotation %q", cfg.TargetName, s.Target)
	}
	if pol, _ := s.Policy(); pol != nil && cfg.Policy.Digest() != pol.Digest() {
		t.Errorf("the sidecar's policy %+v is not the annotations' %+v", cfg.Policy, pol)
	}
}

// refName is how the sidecar's path of r ends: the file's path in its
// image, or the ConfigMap key's name in the volume the webhook mounts.
func refName(r *inject.Ref) string {
	if r.Source == inject.SourceFile {
		return r.Path
	}
	return "/" + r.Key
}
