package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/sidecar"
)

// parseSidecar parses args and resolves env and the config file the way the
// sidecar command does, without starting anything.
func parseSidecar(t *testing.T, args []string, env map[string]string) (*sidecarFlags, error) {
	t.Helper()
	var f sidecarFlags
	fs := pflag.NewFlagSet("sidecar", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &f, f.resolve(fs, func(k string) string { return env[k] })
}

func TestSidecarSettingsPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "podfim.yaml")
	if err := os.WriteFile(cfg, []byte("quick-interval: 30s\nfull-interval: 2h\nrespond: [log, kill]\nkill-limit: 5\nlisten: 127.0.0.1:9999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := parseSidecar(t,
		[]string{"--config", cfg, "--quick-interval", "10s"},
		map[string]string{"PODFIM_FULL_INTERVAL": "3h", "PODFIM_KILL_LIMIT": "7"})
	if err != nil {
		t.Fatal(err)
	}
	if f.quick != 10*time.Second {
		t.Errorf("quick = %v: the flag must win over the file", f.quick)
	}
	if f.full != 3*time.Hour || f.killLimit != 7 {
		t.Errorf("full = %v, kill-limit = %d: the environment must win over the file", f.full, f.killLimit)
	}
	if !slices.Equal(f.respond, []string{"log", "kill"}) || f.listen != "127.0.0.1:9999" {
		t.Errorf("respond = %q, listen = %q: taken from the file", f.respond, f.listen)
	}
	if f.retarget != 200*time.Millisecond || f.stateDir != "/var/lib/podfim" {
		t.Errorf("defaults changed: retarget %v, state-dir %q", f.retarget, f.stateDir)
	}
	// The config file can come from the environment too.
	f, err = parseSidecar(t, nil, map[string]string{"PODFIM_CONFIG": cfg})
	if err != nil || f.killLimit != 5 {
		t.Errorf("PODFIM_CONFIG: kill-limit %d, %v", f.killLimit, err)
	}
}

func TestSidecarSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("quick-intervall: 1s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := parseSidecar(t, []string{"--config", bad}, nil); err == nil || !strings.Contains(err.Error(), `unknown setting "quick-intervall"`) {
		t.Errorf("typo in config: %v", err)
	}
	if _, err := parseSidecar(t, nil, map[string]string{"PODFIM_QUICK_INTERVAL": "soon"}); err == nil || !strings.Contains(err.Error(), "PODFIM_QUICK_INTERVAL") {
		t.Errorf("bad env value: %v", err)
	}
	if _, err := parseSidecar(t, []string{"--config", filepath.Join(dir, "missing.yaml")}, nil); ExitCode(err) != ExitIO {
		t.Errorf("missing config: %v (exit %d)", err, ExitCode(err))
	}
	// Validation happens before anything starts, with the reason.
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--respond", "log,explode"}, `Unsupported value: "explode"`},
		{[]string{"--inotify=false", "--quick-interval", "0", "--full-interval", "0"}, "nothing would detect changes"},
		{[]string{"--target-container", "xyz"}, "container"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--respond", "log,restore", "--state-dir", ""}, "--state-dir"},
		{[]string{"--baseline-source", "registry"}, "needs --verify-key"},
		{[]string{"--baseline-source", "s3"}, "unknown --baseline-source"},
	} {
		f, err := parseSidecar(t, tt.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = f.build(os.Getenv)
		if err == nil || !strings.Contains(err.Error(), tt.msg) || ExitCode(err) != ExitUsage {
			t.Errorf("%q: %v (exit %d), want usage error containing %q", tt.args, err, ExitCode(err), tt.msg)
		}
	}
	f, err := parseSidecar(t, []string{"--respond", "log,metric,kill", "--escalate", "unready"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := f.build(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Plan.Actions, []respond.Action{"log", "metric", "kill"}) || cfg.Source() != "first-sight" {
		t.Errorf("plan %v source %s", cfg.Plan.Actions, cfg.Source())
	}
}

func TestSidecarTargetName(t *testing.T) {
	downward := map[string]string{"POD_NAMESPACE": "shop", "POD_NAME": "web-7d9f8", "POD_UID": "3d2a1c5e"}
	getenv := func(env map[string]string) func(string) string { return func(k string) string { return env[k] } }
	// A client for an address nothing listens on: building sends no
	// request, and none is sent in this test.
	var made []kube.Pod
	fakeCluster := func(p kube.Pod) (*kube.Client, error) {
		made = append(made, p)
		return kube.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"}, p)
	}
	build := func(args []string, env map[string]string, inCluster func(kube.Pod) (*kube.Client, error)) (sidecar.Config, error) {
		t.Helper()
		f, err := parseSidecar(t, args, env)
		if err != nil {
			t.Fatal(err)
		}
		f.inCluster = inCluster
		cfg, _, err := f.build(getenv(env))
		return cfg, err
	}

	// From the flag, the environment or the config file.
	file := filepath.Join(t.TempDir(), "podfim.yaml")
	if err := os.WriteFile(file, []byte("target-name: app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--target-name", "app"}, downward},
		{nil, map[string]string{"PODFIM_TARGET_NAME": "app", "POD_NAMESPACE": "shop", "POD_NAME": "web-7d9f8", "POD_UID": "3d2a1c5e"}},
		{[]string{"--config", file}, downward},
	} {
		made = nil
		cfg, err := build(tc.args, tc.env, fakeCluster)
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if cfg.TargetName != "app" || cfg.Names == nil || !cfg.Selector.IsZero() {
			t.Errorf("%q: target name %q, names %v, selector %v", tc.args, cfg.TargetName, cfg.Names, cfg.Selector)
		}
		if want := (kube.Pod{Namespace: "shop", Name: "web-7d9f8", UID: "3d2a1c5e"}); !slices.Equal(made, []kube.Pod{want}) {
			t.Errorf("%q: clients for %v, want one for %v", tc.args, made, want)
		}
	}

	// Without the flag the client serves Events, quarantine, delete and
	// the image check, not the target selection.
	made = nil
	if cfg, err := build([]string{"--target-exe", "/app"}, downward, fakeCluster); err != nil || cfg.Names != nil || len(made) != 1 || cfg.Kube == nil || cfg.Images == nil {
		t.Errorf("no --target-name: names %v, %d clients, kube %v, %v", cfg.Names, len(made), cfg.Kube, err)
	}
	// Outside a pod (podman) that is no error: the Kubernetes responses
	// are skipped and everything else works.
	if cfg, err := build([]string{"--target-exe", "/app", "--respond", "log,event,quarantine"}, nil, fakeCluster); err != nil || cfg.Kube != nil || cfg.Images != nil {
		t.Errorf("no downward API: kube %v, %v", cfg.Kube, err)
	}

	notInCluster := func(kube.Pod) (*kube.Client, error) {
		return nil, fmt.Errorf("no access to the Kubernetes API from this pod: %w", rest.ErrNotInCluster)
	}
	for _, tc := range []struct {
		args      []string
		env       map[string]string
		inCluster func(kube.Pod) (*kube.Client, error)
		msgs      []string
	}{
		{[]string{"--target-name", "app", "--target-exe", "/app"}, downward, fakeCluster,
			[]string{"--target-name and --target-exe are mutually exclusive"}},
		{[]string{"--target-name", "app", "--target-container", strings.Repeat("a", 64)}, downward, fakeCluster,
			[]string{"--target-name and --target-container are mutually exclusive"}},
		{[]string{"--target-name", "App_1"}, downward, fakeCluster,
			[]string{`invalid --target-name "App_1"`}},
		// Every problem at once.
		{[]string{"--target-name", "app", "--target-exe", "/app"}, nil, fakeCluster,
			[]string{"--target-name and --target-exe are mutually exclusive", "--target-name: the pod's namespace and name are unknown: set POD_NAMESPACE and POD_NAME from the downward API"}},
		{[]string{"--target-name", "app"}, map[string]string{"POD_NAMESPACE": "shop"}, fakeCluster,
			[]string{"set POD_NAME from the downward API"}},
		{[]string{"--target-name", "app"}, downward, notInCluster,
			[]string{"--target-name: no access to the Kubernetes API", "KUBERNETES_SERVICE_HOST"}},
	} {
		_, err := build(tc.args, tc.env, tc.inCluster)
		if err == nil || ExitCode(err) != ExitUsage {
			t.Errorf("%q %v: %v (exit %d), want a usage error", tc.args, tc.env, err, ExitCode(err))
			continue
		}
		for _, msg := range tc.msgs {
			if !strings.Contains(err.Error(), msg) {
				t.Errorf("%q %v: %v\nwant it to say %q", tc.args, tc.env, err, msg)
			}
		}
	}

	// The real in-cluster client outside a cluster.
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := build([]string{"--target-name", "app"}, downward, nil); err == nil || !strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Errorf("outside a cluster: %v", err)
	}
}
