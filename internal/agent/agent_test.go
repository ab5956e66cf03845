package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/inject"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/policy"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/testwait"
)

const wait = 10 * time.Second

// fakeList is a ListerWatcher of an initial list and a watch the test
// drives.
type fakeList struct {
	list runtime.Object
	w    *watch.FakeWatcher
}

func newFakeList(list runtime.Object) *fakeList {
	return &fakeList{list: list, w: watch.NewFakeWithChanSize(64, false)}
}

func (f *fakeList) List(metav1.ListOptions) (runtime.Object, error) {
	return f.list.DeepCopyObject(), nil
}
func (f *fakeList) Watch(metav1.ListOptions) (watch.Interface, error) { return f.w, nil }

var _ cache.ListerWatcher = (*fakeList)(nil)

// fakeAPI records the patches of one pod's status.
type fakeAPI struct {
	mu      sync.Mutex
	patches []map[string]any
	fail    error
	cms     map[string]*corev1.ConfigMap
}

func (f *fakeAPI) GetConfigMap(_ context.Context, name string) (*corev1.ConfigMap, error) {
	if cm, ok := f.cms[name]; ok {
		return cm, nil
	}
	return nil, errors.New("configmaps " + name + " not found")
}

func (f *fakeAPI) GetPod(context.Context) (*corev1.Pod, error) { return nil, errors.New("not served") }
func (f *fakeAPI) PatchPod(context.Context, []byte) error      { return nil }
func (f *fakeAPI) DeletePod(context.Context, string) error     { return nil }
func (f *fakeAPI) CreateEvent(_ context.Context, ev *corev1.Event) (*corev1.Event, error) {
	return ev, nil
}
func (f *fakeAPI) PatchEvent(_ context.Context, ev *corev1.Event, _ []byte) (*corev1.Event, error) {
	return ev, nil
}

func (f *fakeAPI) PatchPodStatus(_ context.Context, patch []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return err
	}
	f.patches = append(f.patches, m)
	return nil
}

// last returns the status, reason and message of the last condition
// patched, and the number of patches.
func (f *fakeAPI) last() (status, reason, message string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.patches) == 0 {
		return "", "", "", 0
	}
	conds := f.patches[len(f.patches)-1]["status"].(map[string]any)["conditions"].([]any)
	c := conds[0].(map[string]any)
	return c["status"].(string), c["reason"].(string), c["message"].(string), len(f.patches)
}

const (
	uidA = "0a0a0a0a-0000-4000-8000-00000000000a"
	uidB = "0b0b0b0b-0000-4000-8000-00000000000b"
)

func testPod(ns, name, uid string, labels, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Labels: labels, Annotations: ann, ResourceVersion: "1"},
		Spec:       corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "app", Image: "hello"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

func testNamespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, ResourceVersion: "1"}}
}

// harness is an agent on fake lists and APIs.
type harness struct {
	a         *Agent
	pods, nss *fakeList
	state     string
	reg       *prometheus.Registry
	mu        sync.Mutex
	apis      map[string]*fakeAPI // by pod name
	cancel    context.CancelFunc
	done      chan error
}

func newHarness(t *testing.T, state string, pods []corev1.Pod, nss []corev1.Namespace) *harness {
	t.Helper()
	h := &harness{
		pods: newFakeList(&corev1.PodList{Items: pods}), nss: newFakeList(&corev1.NamespaceList{Items: nss}),
		state: state, reg: prometheus.NewRegistry(), apis: map[string]*fakeAPI{},
	}
	cfg := Config{
		NodeName: "node1", StateDir: state, Version: "test", Registry: h.reg,
		Defaults: Defaults{Policy: policy.Default(), Respond: []string{"log", "unready"}, Inotify: true,
			Plan: respond.Plan{Actions: respond.ParseActions("log", "unready")}},
		Pods: h.pods, Namespaces: h.nss,
		API: func(p kube.Pod) PodAPI { return h.api(p.Name) },
	}
	a, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h.a = a
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.done; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	return h
}

func (h *harness) api(pod string) *fakeAPI {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.apis[pod] == nil {
		h.apis[pod] = &fakeAPI{}
	}
	return h.apis[pod]
}

func (h *harness) protected(uid string) bool {
	h.a.mu.Lock()
	defer h.a.mu.Unlock()
	return h.a.byUID[uid] != nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestOptedIn(t *testing.T) {
	on := map[string]string{inject.LabelProtect: inject.InjectOn}
	off := map[string]string{inject.LabelProtect: inject.InjectOff}
	h := newHarness(t, t.TempDir(), nil, []corev1.Namespace{*testNamespace("prot", on), *testNamespace("plain", nil)})
	testwait.Eventually(t, wait, 10*time.Millisecond, "namespaces listed", testwait.True(func() bool { return h.a.namespaces.HasSynced() }))
	for _, c := range []struct {
		ns     string
		labels map[string]string
		want   bool
	}{
		{"prot", nil, true},
		{"prot", off, false},
		{"plain", nil, false},
		{"plain", on, true},
		{"missing", nil, false},
		{"plain", map[string]string{inject.LabelProtect: "yes"}, false},
	} {
		if got := h.a.optedIn(testPod(c.ns, "p", uidA, c.labels, nil)); got != c.want {
			t.Errorf("namespace %s, pod labels %v: opted in %v, want %v", c.ns, c.labels, got, c.want)
		}
	}
}

func TestWanted(t *testing.T) {
	on := map[string]string{inject.LabelProtect: inject.InjectOn}
	h := newHarness(t, t.TempDir(), nil, nil)
	testwait.Eventually(t, wait, 10*time.Millisecond, "namespaces listed", testwait.True(func() bool { return h.a.namespaces.HasSynced() }))
	two := testPod("ns", "p", uidA, on, nil)
	two.Spec.Containers = append(two.Spec.Containers, corev1.Container{Name: "log"}, corev1.Container{Name: inject.ContainerName})
	w, err := h.a.wanted(two)
	if err != nil || w.invalid != nil || strings.Join(w.containers, ",") != "app,log" {
		t.Fatalf("two containers and a podfim sidecar: %+v, %v; want app and log", w, err)
	}
	targeted := two.DeepCopy()
	targeted.Annotations = map[string]string{inject.AnnTarget: "log"}
	if w, _ = h.a.wanted(targeted); w.invalid != nil || strings.Join(w.containers, ",") != "log" {
		t.Fatalf("podfim.io/target log: %+v", w)
	}
	if w2, _ := h.a.wanted(targeted); w2.digest != w.digest {
		t.Error("the same pod twice has two digests")
	}
	changed := targeted.DeepCopy()
	changed.Annotations[inject.AnnQuick] = "1m"
	if w2, _ := h.a.wanted(changed); w2.digest == w.digest {
		t.Error("an annotation changed and the digest did not")
	}
	for ann, want := range map[string]string{
		inject.AnnTarget:           "no container",
		inject.Prefix + "tpyo":     "unknown podfim annotation",
		inject.AnnBaseline:         "",
		inject.AnnQuick + "-wrong": "unknown",
	} {
		p := two.DeepCopy()
		p.Annotations = map[string]string{ann: "nope"}
		w, err := h.a.wanted(p)
		if err != nil || w.invalid == nil || !strings.Contains(w.invalid.Error(), want) {
			t.Errorf("annotation %s: invalid %v, want an error with %q", ann, w.invalid, want)
		}
	}
	ended := two.DeepCopy()
	ended.Status.Phase = corev1.PodSucceeded
	if _, err := h.a.wanted(ended); !errors.Is(err, errNotProtected) {
		t.Errorf("a pod that ended: %v, want not protected", err)
	}
}

// TestRefs: the baselines and keys a pod's annotations name are read
// from the ConfigMaps of its namespace into the container's state; a key
// missing is an error that names the annotation.
func TestRefs(t *testing.T) {
	kd := t.TempDir()
	pub, err := baseline.GenerateKey(filepath.Join(kd, "key"), filepath.Join(kd, "pub"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(kd, "pub"))
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeAPI{cms: map[string]*corev1.ConfigMap{
		"keys":      {Data: map[string]string{"pub": string(keyPEM)}},
		"baselines": {BinaryData: map[string][]byte{"v1": []byte("one"), "v2": []byte("two")}},
		"one":       {BinaryData: map[string][]byte{"b": []byte("base")}},
	}}
	for _, c := range []struct {
		ann  map[string]string
		want string // source, or the error
	}{
		{nil, "first-sight"},
		{map[string]string{inject.AnnBaseline: "registry", inject.AnnVerifyKey: "configmap:keys/pub"}, "registry"},
		{map[string]string{inject.AnnBaseline: "configmap", inject.AnnBaselineMap: "baselines", inject.AnnVerifyKey: "configmap:keys/pub"}, "configmap"},
		{map[string]string{inject.AnnBaseline: "configmap:one/b"}, "file"},
		{map[string]string{inject.AnnBaseline: "configmap:one/missing"}, `annotation "podfim.io/baseline": ConfigMap one has no key "missing"`},
		{map[string]string{inject.AnnBaseline: "registry", inject.AnnVerifyKey: "configmap:absent/pub"}, `annotation "podfim.io/verify-key": configmaps absent not found`},
	} {
		s, err := inject.ParseAnnotations(c.ann, []string{"log"})
		if err != nil {
			t.Fatalf("%v: %v", c.ann, err)
		}
		dir := t.TempDir()
		r, err := resolveRefs(context.Background(), api, s, dir)
		got := string(r.source)
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%v: %s, want %s", c.ann, got, c.want)
		}
		if err != nil {
			continue
		}
		if s.VerifyKey != nil && err == nil && !pub.Equal(r.verifyKey) {
			t.Errorf("%v: key not read", c.ann)
		}
		switch r.source {
		case "configmap":
			if data, err := os.ReadFile(filepath.Join(r.baselineFile, "v2")); err != nil || string(data) != "two" {
				t.Errorf("baselines dir: %q, %v", data, err)
			}
		case "file":
			if data, err := os.ReadFile(r.baselineFile); err != nil || string(data) != "base" || !strings.HasPrefix(r.baselineFile, dir) {
				t.Errorf("baseline file %s: %q, %v", r.baselineFile, data, err)
			}
		}
	}
	if _, err := writeRef(t.TempDir(), "..", nil); err == nil {
		t.Error("a key \"..\" was written")
	}
}

// series counts the metric series labelled with pod.
func series(t *testing.T, reg *prometheus.Registry, pod string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pod" && l.GetValue() == pod {
					n++
				}
			}
		}
	}
	return n
}

// TestLifecycle: the state of a pod deleted while the agent was down is
// collected at start, the live pod's is kept; an opted-in pod is protected
// (its gate condition says unverified while its container is not found, its
// metrics carry its labels), a pod that does not opt in is left alone;
// deleting the pod stops its protection and removes its state and series.
func TestLifecycle(t *testing.T) {
	state := t.TempDir()
	marker := filepath.Join(state, "pods", uidA, "app", "baseline")
	stale := filepath.Join(state, "pods", uidB, "app", "baseline")
	for _, f := range []string{marker, stale} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("kept"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	on := map[string]string{inject.LabelProtect: inject.InjectOn}
	a := testPod("prot", "a", uidA, nil, nil)
	c := testPod("plain", "c", "0c0c0c0c-0000-4000-8000-00000000000c", nil, nil)
	h := newHarness(t, state, []corev1.Pod{*a, *c}, []corev1.Namespace{*testNamespace("prot", on), *testNamespace("plain", nil)})

	testwait.Eventually(t, wait, 10*time.Millisecond, "the stale pod's state removed", testwait.True(func() bool { return !exists(filepath.Dir(stale)) }))
	testwait.Eventually(t, wait, 10*time.Millisecond, "pod a protected, its condition set", func() (bool, string) {
		s, r, m, n := h.api("a").last()
		return h.protected(uidA) && n > 0 && s == "False" && r == kube.GateUnverified, s + " " + r + " " + m
	})
	if data, err := os.ReadFile(marker); err != nil || string(data) != "kept" {
		t.Fatalf("the live pod's baseline: %q, %v; want it kept", data, err)
	}
	if data, err := os.ReadFile(filepath.Join(state, "pods", uidA, "pod")); err != nil || string(data) != "prot/a\n" {
		t.Errorf("pods/<uid>/pod: %q, %v", data, err)
	}
	testwait.Eventually(t, wait, 10*time.Millisecond, "pod a's metrics", func() (bool, string) {
		n := series(t, h.reg, "a")
		return n > 0, "no series"
	})
	if _, _, _, n := h.api("c").last(); n != 0 || h.protected(string(c.UID)) {
		t.Errorf("pod c does not opt in: %d patches, protected %v", n, h.protected(string(c.UID)))
	}

	h.pods.w.Delete(a)
	testwait.Eventually(t, wait, 10*time.Millisecond, "pod a's protection and state gone", func() (bool, string) {
		return !h.protected(uidA) && !exists(filepath.Join(state, "pods", uidA)), "still there"
	})
	if n := series(t, h.reg, "a"); n != 0 {
		t.Errorf("%d series of the deleted pod left", n)
	}
}

// TestInvalidPod: a pod that opts in with an annotation the agent cannot
// honour is not protected as it asks, and its condition says why, False.
func TestInvalidPod(t *testing.T) {
	on := map[string]string{inject.LabelProtect: inject.InjectOn}
	h := newHarness(t, t.TempDir(), nil, nil)
	testwait.Eventually(t, wait, 10*time.Millisecond, "pods listed", testwait.True(func() bool { return h.a.pods.HasSynced() }))
	h.pods.w.Add(testPod("ns", "bad", uidA, on, map[string]string{inject.Prefix + "tpyo": "x"}))
	testwait.Eventually(t, wait, 10*time.Millisecond, "the condition of the invalid pod", func() (bool, string) {
		s, r, m, _ := h.api("bad").last()
		return s == "False" && r == kube.GateUnverified && strings.Contains(m, "unknown podfim annotation"), s + " " + r + " " + m
	})
	h.pods.w.Add(testPod("ns", "nokey", uidB, on, map[string]string{inject.AnnBaseline: "configmap:cm/key"}))
	testwait.Eventually(t, wait, 10*time.Millisecond, "the condition of a pod whose baseline is missing", func() (bool, string) {
		s, r, m, _ := h.api("nokey").last()
		return s == "False" && r == kube.GateUnverified && strings.Contains(m, "configmaps cm not found"), s + " " + r + " " + m
	})
}

// TestGate: the condition is patched when it changes, not again while it
// holds; a pod showing another one is patched back; a failed patch is
// retried.
func TestGate(t *testing.T) {
	api := &fakeAPI{}
	var mu sync.Mutex
	want := kube.GateCondition{Status: corev1.ConditionFalse, Reason: kube.GateUnverified, Message: "starting"}
	g := newGate(api, uidA, func() kube.GateCondition { mu.Lock(); defer mu.Unlock(); return want }, nil, slog.New(slog.DiscardHandler))
	set := func(c kube.GateCondition) { mu.Lock(); want = c; mu.Unlock(); g.poke() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	patched := func(n int, status string) func() (bool, string) {
		return func() (bool, string) {
			s, r, m, got := api.last()
			return got == n && s == status, s + " " + r + " " + m
		}
	}
	testwait.Eventually(t, wait, 5*time.Millisecond, "first patch", patched(1, "False"))
	set(kube.GateCondition{Status: corev1.ConditionTrue, Reason: kube.GateVerified, Message: "ok"})
	testwait.Eventually(t, wait, 5*time.Millisecond, "ready", patched(2, "True"))
	// The same condition again: the gate's sync of it must not patch. A
	// poke after it tells when the gate has looked.
	g.poke()
	if err := g.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, n := api.last(); n != 2 {
		t.Fatalf("%d patches for an unchanged condition, want 2", n)
	}
	// Someone set it False: the gate puts it back.
	pod := testPod("ns", "p", uidA, nil, nil)
	pod.Status.Conditions = []corev1.PodCondition{{Type: kube.ConditionIntegrity, Status: corev1.ConditionFalse, Reason: "Other"}}
	g.podChanged(pod)
	testwait.Eventually(t, wait, 5*time.Millisecond, "patched back", patched(3, "True"))
	// A failure is retried.
	api.mu.Lock()
	api.fail = errors.New("apiserver down")
	api.mu.Unlock()
	set(kube.GateCondition{Status: corev1.ConditionFalse, Reason: kube.GateViolation, Message: "app: integrity violation: /www/index.html"})
	api.mu.Lock()
	api.fail = nil
	api.mu.Unlock()
	testwait.Eventually(t, wait, 5*time.Millisecond, "retried", patched(4, "False"))
	if _, r, m, _ := api.last(); r != kube.GateViolation || !strings.Contains(m, "/www/index.html") {
		t.Errorf("violation condition: %s %s", r, m)
	}
}
