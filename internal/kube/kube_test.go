package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

const (
	idApp  = "0e768f8db752fcd648adb264498daa1d8f31562320e881d6a9ec593d24b1f779"
	idOld  = "abddff03dfd7710c79a750ce3e730365cbb2c8247a974170c1062683bc3e9152"
	idSide = "5c1f9eafb52cf4c1aeddecfcb8dd2bed0dc5fdc9913b15a412a15654e4582788"
	ns     = "shop"
	name   = "web-7d9f8"
	uid    = "3d2a1c5e-8f0b-4c1a-9e2d-7b6c5a4f3e21"
)

// apiserver is a fake API server on 127.0.0.1 that serves one pod, or an
// error status.
type apiserver struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex // the test sets these, the handler reads them
	pod    *corev1.Pod
	status *metav1.Status // served instead of the pod when set
	agent  string         // User-Agent of the last request
}

func newAPIServer(t *testing.T, pod *corev1.Pod) *apiserver {
	t.Helper()
	a := &apiserver{t: t, pod: pod}
	a.srv = serveLoopback(t, http.HandlerFunc(a.serve))
	return a
}

// serveLoopback serves h on 127.0.0.1 (whatever httptest's defaults) until
// the test ends.
func serveLoopback(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func (a *apiserver) set(pod *corev1.Pod, st *metav1.Status) {
	a.mu.Lock()
	a.pod, a.status = pod, st
	a.mu.Unlock()
}

func (a *apiserver) userAgent() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.agent
}

func (a *apiserver) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.agent = r.UserAgent()
	w.Header().Set("Content-Type", "application/json")
	if a.status != nil {
		w.WriteHeader(int(a.status.Code))
		json.NewEncoder(w).Encode(a.status)
		return
	}
	want := "/api/v1/namespaces/" + ns + "/pods/" + name
	if r.Method != http.MethodGet || r.URL.Path != want {
		a.t.Errorf("request %s %s, want GET %s", r.Method, r.URL.Path, want)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	json.NewEncoder(w).Encode(a.pod)
}

func (a *apiserver) client(t *testing.T, pod Pod) *Client {
	t.Helper()
	c, err := NewForConfig(&rest.Config{Host: a.srv.URL}, pod)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// status is an API server error, as the API server sends it.
func status(code int32, reason metav1.StatusReason, msg string) *metav1.Status {
	return &metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: code, Reason: reason, Message: msg,
	}
}

// testPod is a pod with an app container restarted once, a classic
// sidecar, a native sidecar (an init container that keeps running), an
// init container that completed and a container not started yet.
func testPod() *corev1.Pod {
	terminated := func(id string) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, ContainerID: id}}
	}
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "setup", Image: "busybox:1.36"},
				{Name: "proxy", Image: "envoy:1.31"},
			},
			Containers: []corev1.Container{
				{Name: "app", Image: "hello:1"},
				{Name: "podfim", Image: "podfim:1"},
				{Name: "late", Image: "late:1"},
			},
		},
		Status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "setup", State: terminated("containerd://" + idOld[:40] + "000000000000000000000000"), Image: "docker.io/library/busybox:1.36"},
				{Name: "proxy", ContainerID: "cri-o://" + strings.ToUpper(idSide), Image: "docker.io/envoyproxy/envoy:1.31"},
			},
			ContainerStatuses: []corev1.ContainerStatus{
				{
					Name: "app", ContainerID: "containerd://" + idApp, Image: "docker.io/library/hello:1",
					RestartCount: 1, LastTerminationState: terminated("containerd://" + idOld),
				},
				{Name: "podfim", ContainerID: "docker://" + idSide[:12] + idApp[12:], Image: "podfim:1"},
				// Waiting for its image: listed, no ID.
				{Name: "late", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
			},
		},
	}
}

func TestContainerIDs(t *testing.T) {
	a := newAPIServer(t, testPod())
	c := a.client(t, Pod{Namespace: ns, Name: name, UID: uid})
	ctx := context.Background()
	for _, tc := range []struct {
		container string
		ids       []string
		image     string
	}{
		// Current first, then the one it replaced; prefix stripped.
		{"app", []string{idApp, idOld}, "docker.io/library/hello:1"},
		{"podfim", []string{idSide[:12] + idApp[12:]}, "podfim:1"},
		// A native sidecar; cri-o's prefix, upper case folded.
		{"proxy", []string{idSide}, "docker.io/envoyproxy/envoy:1.31"},
		// A completed init container: the ID of its terminated state.
		{"setup", []string{idOld[:40] + "000000000000000000000000"}, "docker.io/library/busybox:1.36"},
		// Not started: no ID, no error; the image from the spec.
		{"late", nil, "late:1"},
	} {
		ids, image, err := c.ContainerIDs(ctx, tc.container)
		if err != nil || !slices.Equal(ids, tc.ids) || image != tc.image {
			t.Errorf("%s: got %q, %q, %v; want %q, %q", tc.container, ids, image, err, tc.ids, tc.image)
		}
	}
	if ua := a.userAgent(); !strings.HasPrefix(ua, "podfim/") {
		t.Errorf("User-Agent %q, want podfim/<version>", ua)
	}

	// A container of the spec the kubelet has not reported yet.
	p := testPod()
	p.Status = corev1.PodStatus{}
	a.set(p, nil)
	if ids, image, err := c.ContainerIDs(ctx, "app"); err != nil || ids != nil || image != "hello:1" {
		t.Errorf("no status yet: %q, %q, %v", ids, image, err)
	}

	// A name that is no container of the pod: the error lists them.
	a.set(testPod(), nil)
	_, _, err := c.ContainerIDs(ctx, "ap")
	if !errors.Is(err, ErrNoContainer) || !strings.Contains(err.Error(), `"ap" is not a container of pod shop/web-7d9f8 (containers: app, podfim, late, setup, proxy)`) {
		t.Errorf("missing container: %v", err)
	}

	// The pod was replaced by one of the same name.
	p = testPod()
	p.UID = "another"
	a.set(p, nil)
	if _, _, err := c.ContainerIDs(ctx, "app"); !errors.Is(err, ErrPodNotFound) || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("other UID: %v", err)
	}
	// Without POD_UID the name is enough.
	a.set(testPod(), nil)
	if ids, _, err := a.client(t, Pod{Namespace: ns, Name: name}).ContainerIDs(ctx, "app"); err != nil || len(ids) != 2 {
		t.Errorf("no UID: %q, %v", ids, err)
	}
}

func TestContainerIDsErrors(t *testing.T) {
	a := newAPIServer(t, testPod())
	c := a.client(t, Pod{Namespace: ns, Name: name})
	ctx := context.Background()

	// RBAC missing: the error names the verb, the resource and the
	// namespace, and keeps the API server's error.
	a.set(nil, status(http.StatusForbidden, metav1.StatusReasonForbidden,
		`pods "web-7d9f8" is forbidden: User "system:serviceaccount:shop:default" cannot get resource "pods" in API group "" in the namespace "shop"`))
	_, _, err := c.ContainerIDs(ctx, "app")
	if !errors.Is(err, ErrForbidden) || !apierrors.IsForbidden(err) {
		t.Fatalf("403: %v", err)
	}
	for _, want := range []string{`may not "get" "pods" in namespace "shop"`, "verbs: [get], resources: [pods]", "RoleBinding", "system:serviceaccount:shop:default"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("403 error %q does not say %q", err, want)
		}
	}

	a.set(nil, status(http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized"))
	if _, _, err := c.ContainerIDs(ctx, "app"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("401: %v", err)
	}

	a.set(nil, status(http.StatusNotFound, metav1.StatusReasonNotFound, `pods "web-7d9f8" not found`))
	if _, _, err := c.ContainerIDs(ctx, "app"); !errors.Is(err, ErrPodNotFound) || !strings.Contains(err.Error(), "POD_NAME") {
		t.Errorf("404: %v", err)
	}

	a.set(nil, status(http.StatusInternalServerError, metav1.StatusReasonInternalError, "etcd is down"))
	if _, _, err := c.ContainerIDs(ctx, "app"); err == nil || !strings.Contains(err.Error(), "kubernetes API: get pods shop/web-7d9f8") || !strings.Contains(err.Error(), "etcd is down") {
		t.Errorf("500: %v", err)
	}
}

func TestContainerIDsTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer close(block)
	c, err := NewForConfig(&rest.Config{Host: srv.URL, Timeout: 100 * time.Millisecond}, Pod{Namespace: ns, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, _, err := c.ContainerIDs(context.Background(), "app"); err == nil {
		t.Fatal("a hung API server returned no error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v despite a 100ms timeout", d)
	}
}

func TestPodFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	p, err := PodFromEnv(env(map[string]string{EnvNamespace: ns, EnvName: name, EnvUID: uid}))
	if err != nil || p != (Pod{Namespace: ns, Name: name, UID: uid}) || p.String() != "shop/web-7d9f8" {
		t.Errorf("got %+v, %v", p, err)
	}
	if p, err := PodFromEnv(env(map[string]string{EnvNamespace: ns, EnvName: name})); err != nil || p.UID != "" {
		t.Errorf("UID is optional: %+v, %v", p, err)
	}
	_, err = PodFromEnv(env(nil))
	if !errors.Is(err, ErrNoPod) || !strings.Contains(err.Error(), "POD_NAMESPACE and POD_NAME") || !strings.Contains(err.Error(), "downward API") {
		t.Errorf("nothing set: %v", err)
	}
	if _, err := PodFromEnv(env(map[string]string{EnvNamespace: ns})); !errors.Is(err, ErrNoPod) || strings.Contains(err.Error(), "POD_NAMESPACE") {
		t.Errorf("name missing: %v", err)
	}
	if _, err := NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"}, Pod{Namespace: ns}); !errors.Is(err, ErrNoPod) {
		t.Errorf("NewForConfig without a name: %v", err)
	}
}

func TestNewInClusterOutside(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	if _, err := NewInCluster(Pod{Namespace: ns, Name: name}); !errors.Is(err, rest.ErrNotInCluster) || !strings.Contains(err.Error(), "no access to the Kubernetes API") {
		t.Errorf("outside a cluster: %v", err)
	}
}
