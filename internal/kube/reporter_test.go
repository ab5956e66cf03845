package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/testwait"
)

// request is one request the fake API server received.
type request struct {
	method, path, contentType string
	body                      []byte
}

// eventServer is a fake API server on 127.0.0.1 that serves the pod,
// accepts Events, pod patches and deletes, and records every request. fail,
// when set, answers every request instead.
type eventServer struct {
	t   *testing.T
	srv *httptest.Server

	mu     sync.Mutex
	reqs   []request
	pod    *corev1.Pod
	fail   *metav1.Status
	hang   chan struct{} // when set, requests wait for it to close
	events map[string]*corev1.Event
}

func newEventServer(t *testing.T, pod *corev1.Pod) *eventServer {
	t.Helper()
	e := &eventServer{t: t, pod: pod, events: map[string]*corev1.Event{}}
	e.srv = serveLoopback(t, http.HandlerFunc(e.serve))
	return e
}

func (e *eventServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	hang := e.hang
	e.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reqs = append(e.reqs, request{r.Method, r.URL.Path, r.Header.Get("Content-Type"), body})
	w.Header().Set("Content-Type", "application/json")
	if e.fail != nil {
		w.WriteHeader(int(e.fail.Code))
		json.NewEncoder(w).Encode(e.fail)
		return
	}
	podPath := "/api/v1/namespaces/" + ns + "/pods/" + name
	evPath := "/api/v1/namespaces/" + ns + "/events"
	switch {
	case r.URL.Path == podPath && r.Method == http.MethodGet:
		json.NewEncoder(w).Encode(e.pod)
	case r.URL.Path == podPath && (r.Method == http.MethodPatch || r.Method == http.MethodDelete):
		json.NewEncoder(w).Encode(e.pod)
	case r.URL.Path == evPath && r.Method == http.MethodPost:
		var ev corev1.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		ev.ResourceVersion = "1"
		e.events[ev.Name] = &ev
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(&ev)
	case strings.HasPrefix(r.URL.Path, evPath+"/") && r.Method == http.MethodPatch:
		ev, ok := e.events[strings.TrimPrefix(r.URL.Path, evPath+"/")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(status(http.StatusNotFound, metav1.StatusReasonNotFound, "event not found"))
			return
		}
		var p struct{ Count int32 }
		json.Unmarshal(body, &p)
		ev.Count = p.Count
		json.NewEncoder(w).Encode(ev)
	default:
		e.t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
		w.WriteHeader(http.StatusBadRequest)
	}
}

func (e *eventServer) requests(method, pathPrefix string) []request {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []request
	for _, r := range e.reqs {
		if r.method == method && strings.HasPrefix(r.path, pathPrefix) {
			out = append(out, r)
		}
	}
	return out
}

func (e *eventServer) setFail(st *metav1.Status) {
	e.mu.Lock()
	e.fail = st
	e.mu.Unlock()
}

// ownedPod is testPod owned by a ReplicaSet, created at created.
func ownedPod(created time.Time) *corev1.Pod {
	p := testPod()
	yes := true
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f8", UID: "rs", Controller: &yes}}
	p.CreationTimestamp = metav1.NewTime(created)
	return p
}

type reporterEnv struct {
	srv   *eventServer
	r     *Reporter
	m     *metrics.Sidecar
	reg   *prometheus.Registry
	clock *clocktesting.FakeClock
	logs  *syncBuf
	stop  func()
}

func newReporterEnv(t *testing.T, pod *corev1.Pod, cfg ReporterConfig) *reporterEnv {
	t.Helper()
	e := &reporterEnv{srv: newEventServer(t, pod), reg: prometheus.NewRegistry(), logs: &syncBuf{}}
	var err error
	if e.m, err = metrics.NewSidecar(e.reg, "test"); err != nil {
		t.Fatal(err)
	}
	c, err := NewForConfig(&rest.Config{Host: e.srv.srv.URL}, Pod{Namespace: ns, Name: name, UID: uid})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clock == nil {
		e.clock = clocktesting.NewFakeClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
		cfg.Clock = e.clock
	}
	c.CountRequests(e.m)
	cfg.Pod = c.Pod()
	e.r = NewReporter(c, cfg, slog.New(slog.NewJSONHandler(e.logs, nil)), e.m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.r.Run(ctx) }()
	e.stop = func() { cancel(); <-done }
	t.Cleanup(e.stop)
	return e
}

// quarantineSynced waits until the worker has decided on every
// SetQuarantine made so far: what it did not patch by then it will not
// patch without a new call, a poke or the resync.
func (e *reporterEnv) quarantineSynced(t *testing.T) {
	t.Helper()
	e.r.mu.Lock()
	gen := e.r.qGen
	e.r.mu.Unlock()
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the worker to decide on the last SetQuarantine", testwait.True(func() bool {
		e.r.mu.Lock()
		defer e.r.mu.Unlock()
		return e.r.qSynced >= gen
	}))
}

// requests is podfim_kube_requests_total{operation=op,result=res}.
func (e *reporterEnv) requests(op metrics.KubeOperation, res metrics.Result) float64 {
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "podfim_kube_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var o, r string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "operation":
					o = l.GetValue()
				case "result":
					r = l.GetValue()
				}
			}
			if o == string(op) && r == string(res) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func (e *reporterEnv) events(result metrics.KubeEventResult) float64 {
	return testutil.ToFloat64(metricVec(e.reg, "podfim_kube_events_total", "result", string(result)))
}

// metricVec returns a collector of the one series of name with label=value.
func metricVec(reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == label && l.GetValue() == value {
						ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.CounterValue, m.GetCounter().GetValue())
					}
				}
			}
		}
	})
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

func TestReporterEvent(t *testing.T) {
	e := newReporterEnv(t, ownedPod(time.Now()), ReporterConfig{Events: true})
	e.r.Event(corev1.EventTypeWarning, ReasonFileChanged, "integrity violation: /srv/www/index.html changed (sha256)\n\x1b[31m")
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the event", testwait.True(func() bool { return e.events(metrics.KubeEventSent) == 1 }))
	posts := e.srv.requests(http.MethodPost, "/api/v1/namespaces/"+ns+"/events")
	if len(posts) != 1 {
		t.Fatalf("%d POSTs of events, want 1", len(posts))
	}
	var ev corev1.Event
	if err := json.Unmarshal(posts[0].body, &ev); err != nil {
		t.Fatal(err)
	}
	want := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: name, UID: types.UID(uid)}
	if ev.InvolvedObject != want {
		t.Errorf("involvedObject %+v, want %+v", ev.InvolvedObject, want)
	}
	if ev.Reason != ReasonFileChanged || ev.Type != corev1.EventTypeWarning || ev.Source.Component != "podfim" || ev.Count != 1 {
		t.Errorf("event %+v", ev)
	}
	// Control characters an attacker put into a file name cannot forge
	// lines in kubectl's output.
	if strings.ContainsAny(ev.Message, "\n\x1b") || !strings.Contains(ev.Message, `'\n'`) {
		t.Errorf("message %q is not sanitised", ev.Message)
	}
}

// TestReporterStorm: 1000 findings make a bounded number of API writes, and
// the Events that matter after a storm (another reason) still get through.
func TestReporterStorm(t *testing.T) {
	e := newReporterEnv(t, ownedPod(time.Now()), ReporterConfig{Events: true})
	start := time.Now()
	for i := range 1000 {
		e.r.Event(corev1.EventTypeWarning, ReasonFileChanged, fmt.Sprintf("integrity violation: /srv/www/f%04d changed (sha256)", i))
	}
	// Not a bound (the correlator's work is CPU, and CI machines are
	// loaded): TestReporterQueueBound shows that a hung API server does
	// not make the caller wait.
	t.Logf("1000 Events handed over in %v", time.Since(start))
	e.r.Event(corev1.EventTypeWarning, ReasonPodQuarantined, "labelled")
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the storm to settle", testwait.True(func() bool {
		return e.events(metrics.KubeEventSent)+e.events(metrics.KubeEventFiltered)+e.events(metrics.KubeEventDropped) == 1001
	}))
	writes := len(e.srv.requests(http.MethodPost, "/api/v1/namespaces/"+ns+"/events")) +
		len(e.srv.requests(http.MethodPatch, "/api/v1/namespaces/"+ns+"/events"))
	// client-go's spam filter: a burst of 25 per source, object, type and
	// reason; the refill (1 per 5 min) does not happen on the fake clock.
	if writes > 26 || writes < 2 {
		t.Errorf("%d API writes for 1001 Events, want at most 26", writes)
	}
	if f := e.events(metrics.KubeEventFiltered); f < 1000-25 {
		t.Errorf("%v Events filtered, want at least 975", f)
	}
	var quarantined bool
	for _, r := range e.srv.requests(http.MethodPost, "/api/v1/namespaces/"+ns+"/events") {
		if strings.Contains(string(r.body), ReasonPodQuarantined) {
			quarantined = true
		}
	}
	if !quarantined {
		t.Error("the PodQuarantined Event after the storm was not written")
	}
	// Aggregation: after 10 similar Events the correlator merges them into
	// one "(combined from similar events)" Event whose count is patched.
	if len(e.srv.requests(http.MethodPatch, "/api/v1/namespaces/"+ns+"/events")) == 0 {
		t.Error("no aggregated Event was patched")
	}
	t.Logf("1001 Events -> %d API writes (%v filtered)", writes, e.events(metrics.KubeEventFiltered))
}

// TestReporterQueueBound: while the API server hangs, Events beyond the
// queue drop the oldest and are counted; the caller never waits.
func TestReporterQueueBound(t *testing.T) {
	e := newReporterEnv(t, ownedPod(time.Now()), ReporterConfig{Events: true, QueueSize: 4, Attempts: 1})
	podPath := "/api/v1/namespaces/" + ns + "/pods/" + name
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the pod read", testwait.True(func() bool { return len(e.srv.requests(http.MethodGet, podPath)) == 1 }))
	hang := make(chan struct{})
	e.srv.mu.Lock()
	e.srv.hang = hang
	e.srv.mu.Unlock()
	// The first Event is taken by the worker, which then hangs on it.
	e.r.Event(corev1.EventTypeNormal, "Reason0", "m")
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the first write to hang", testwait.True(func() bool {
		e.r.mu.Lock()
		defer e.r.mu.Unlock()
		return len(e.r.queue) == 0
	}))
	start := time.Now()
	for i := 1; i < 10; i++ {
		// Different reasons: the spam filter lets each through.
		e.r.Event(corev1.EventTypeNormal, fmt.Sprintf("Reason%d", i), "m")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("9 Events behind a hung API server took %v to hand over", d)
	}
	// 9 Events into a queue of 4: the 5 oldest are dropped.
	if d := e.events(metrics.KubeEventDropped); d != 5 {
		t.Errorf("%v dropped, want 5", d)
	}
	close(hang)
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the queue to drain", testwait.True(func() bool { return e.events(metrics.KubeEventSent) == 5 }))
	var reasons []string
	for _, r := range e.srv.requests(http.MethodPost, "/api/v1/namespaces/"+ns+"/events") {
		var ev corev1.Event
		json.Unmarshal(r.body, &ev)
		reasons = append(reasons, ev.Reason)
	}
	if want := []string{"Reason0", "Reason6", "Reason7", "Reason8", "Reason9"}; strings.Join(reasons, ",") != strings.Join(want, ",") {
		t.Errorf("written %v, want %v (the newest kept)", reasons, want)
	}
}

// TestReporterAPIDown: with the API server failing, every Event fails and
// is counted, and the error is logged.
func TestReporterAPIDown(t *testing.T) {
	e := newReporterEnv(t, ownedPod(time.Now()), ReporterConfig{Events: true, Attempts: 2, Backoff: time.Millisecond})
	e.srv.setFail(status(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "etcd is down"))
	for i := range 3 {
		e.r.Event(corev1.EventTypeNormal, fmt.Sprintf("Reason%d", i), "m")
	}
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "three failures", testwait.True(func() bool { return e.events(metrics.KubeEventFailed) == 3 }))
	if n := len(e.srv.requests(http.MethodPost, "/api/v1/namespaces/"+ns+"/events")); n != 6 {
		t.Errorf("%d POSTs for 3 Events with 2 attempts each, want 6", n)
	}
	if !strings.Contains(e.logs.String(), "etcd is down") {
		t.Errorf("the API error was not logged: %s", e.logs.String())
	}
}

func TestReporterRetry(t *testing.T) {
	e := newReporterEnv(t, ownedPod(time.Now()), ReporterConfig{Events: true, Attempts: 5, Backoff: 10 * time.Millisecond})
	e.srv.setFail(status(http.StatusInternalServerError, metav1.StatusReasonInternalError, "etcd is down"))
	e.r.Event(corev1.EventTypeNormal, ReasonBaselineCreated, "m")
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "two attempts", testwait.True(func() bool { return len(e.srv.requests(http.MethodPost, "/api/v1/namespaces/"+ns+"/events")) >= 2 }))
	e.srv.setFail(nil)
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the retried Event", testwait.True(func() bool { return e.events(metrics.KubeEventSent) == 1 }))
	if f := e.events(metrics.KubeEventFailed); f != 0 {
		t.Errorf("%v failed: a retry succeeded", f)
	}
	if strings.Contains(e.logs.String(), `"operation":"write_event"`) {
		t.Errorf("a write that succeeded on a retry was logged as failed: %s", e.logs.String())
	}
}

// TestReporterForbidden: without RBAC nothing is retried in a loop, the
// error names the missing permission, and it is logged once.
func TestReporterForbidden(t *testing.T) {
	e := newReporterEnv(t, ownedPod(time.Now()), ReporterConfig{Events: true, Attempts: 5, Backoff: time.Millisecond})
	e.srv.setFail(status(http.StatusForbidden, metav1.StatusReasonForbidden, `events is forbidden: User "system:serviceaccount:shop:default" cannot create resource "events"`))
	for i := range 3 {
		e.r.Event(corev1.EventTypeNormal, fmt.Sprintf("R%d", i), "m")
	}
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "three failures", testwait.True(func() bool { return e.events(metrics.KubeEventFailed) == 3 }))
	if n := len(e.srv.requests(http.MethodPost, "/api/v1/namespaces/"+ns+"/events")); n != 3 {
		t.Errorf("%d POSTs for 3 Events refused by RBAC, want 3 (no retries)", n)
	}
	if n := strings.Count(e.logs.String(), `"operation":"write_event"`); n != 1 {
		t.Errorf("the 403 was logged %d times, want once: %s", n, e.logs.String())
	}
	if !strings.Contains(e.logs.String(), `verbs: [create], resources: [events]`) {
		t.Errorf("the log does not name the missing permission: %s", e.logs.String())
	}
}

func TestReporterQuarantine(t *testing.T) {
	e := newReporterEnv(t, ownedPod(time.Now()), ReporterConfig{})
	podPath := "/api/v1/namespaces/" + ns + "/pods/" + name
	e.r.SetQuarantine(true, QuarantineReason(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), []string{"/srv/www/index.html"}))
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the quarantine patch", testwait.True(func() bool { return len(e.srv.requests(http.MethodPatch, podPath)) == 1 }))
	p := e.srv.requests(http.MethodPatch, podPath)[0]
	if p.contentType != "application/merge-patch+json" {
		t.Errorf("content type %q", p.contentType)
	}
	var got struct {
		Metadata struct {
			UID         string
			Labels      map[string]*string
			Annotations map[string]*string
		}
	}
	if err := json.Unmarshal(p.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Metadata.UID != uid || got.Metadata.Labels[LabelQuarantined] == nil || *got.Metadata.Labels[LabelQuarantined] != "true" {
		t.Errorf("patch %s", p.body)
	}
	if a := got.Metadata.Annotations[AnnotationQuarantine]; a == nil || !strings.Contains(*a, `"paths":["/srv/www/index.html"]`) || !strings.Contains(*a, `"since":"2025-01-02T03:04:05Z"`) {
		t.Errorf("annotation in %s", p.body)
	}
	e.r.SetQuarantine(false, "")
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the release patch", testwait.True(func() bool { return len(e.srv.requests(http.MethodPatch, podPath)) == 2 }))
	p = e.srv.requests(http.MethodPatch, podPath)[1]
	if !strings.Contains(string(p.body), `"labels":{"podfim.io/quarantined":null}`) || !strings.Contains(string(p.body), `"annotations":{"podfim.io/quarantine":null}`) {
		t.Errorf("release patch %s", p.body)
	}
	// Converged: no further patch without a change.
	e.r.SetQuarantine(false, "")
	e.quarantineSynced(t)
	if n := len(e.srv.requests(http.MethodPatch, podPath)); n != 2 {
		t.Errorf("%d patches, want 2", n)
	}
}

// TestReporterQuarantineStorm: a storm of findings rewrites the
// annotation at most once per annotationEvery, and the release is never
// delayed.
func TestReporterQuarantineStorm(t *testing.T) {
	e := newReporterEnv(t, ownedPod(time.Now()), ReporterConfig{})
	podPath := "/api/v1/namespaces/" + ns + "/pods/" + name
	e.r.SetQuarantine(true, "0")
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the label", testwait.True(func() bool { return len(e.srv.requests(http.MethodPatch, podPath)) == 1 }))
	for i := 1; i <= 1000; i++ {
		e.r.SetQuarantine(true, strconv.Itoa(i))
	}
	e.quarantineSynced(t)
	if n := len(e.srv.requests(http.MethodPatch, podPath)); n != 1 {
		t.Errorf("%d patches for 1000 annotation updates within %s, want 1", n, annotationEvery)
	}
	// After annotationEvery the latest annotation is written, once.
	e.clock.Step(annotationEvery)
	e.r.poke()
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the latest annotation", testwait.True(func() bool { return len(e.srv.requests(http.MethodPatch, podPath)) == 2 }))
	if b := e.srv.requests(http.MethodPatch, podPath)[1].body; !strings.Contains(string(b), `"podfim.io/quarantine":"1000"`) {
		t.Errorf("patch %s, want the latest annotation", b)
	}
	e.r.SetQuarantine(false, "")
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the release", testwait.True(func() bool { return len(e.srv.requests(http.MethodPatch, podPath)) == 3 }))
}

// TestReporterQuarantineConverges: a quarantine that failed (API down) is
// applied once the API is back.
func TestReporterQuarantineConverges(t *testing.T) {
	e := newReporterEnv(t, ownedPod(time.Now()), ReporterConfig{Attempts: 2, Backoff: time.Millisecond})
	podPath := "/api/v1/namespaces/" + ns + "/pods/" + name
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the pod read", testwait.True(func() bool { return len(e.srv.requests(http.MethodGet, podPath)) == 1 }))
	e.srv.setFail(status(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "down"))
	e.r.SetQuarantine(true, "x")
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "failed patches", testwait.True(func() bool { return len(e.srv.requests(http.MethodPatch, podPath)) >= 2 }))
	e.srv.setFail(nil)
	e.r.poke() // the 30 s resync, sooner
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the patch to go through", testwait.True(func() bool {
		return e.requests(metrics.KubePatchPod, metrics.ResultOK) == 1
	}))
}

func TestReporterDeleteGuard(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	podPath := "/api/v1/namespaces/" + ns + "/pods/" + name
	// known waits for the worker's first read of the pod: the guard needs
	// it. A day's minimum age refuses any pod here, so asking is harmless.
	known := func(r *Reporter) error {
		var err error
		testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the pod read", testwait.True(func() bool {
			err = r.Delete(24 * time.Hour)
			return !errors.Is(err, ErrDeleteUnknown)
		}))
		return err
	}

	// A bare pod: never deleted (nothing would replace it).
	bare := testPod()
	bare.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	e := newReporterEnv(t, bare, ReporterConfig{Clock: clocktesting.NewFakeClock(now)})
	if err := known(e.r); !errors.Is(err, ErrDeleteNoController) {
		t.Errorf("bare pod: %v", err)
	}
	if err := e.r.Delete(0); !errors.Is(err, ErrDeleteNoController) {
		t.Errorf("bare pod, no minimum age: %v", err)
	}

	// A pod younger than the minimum age: refused (the loop guard).
	e = newReporterEnv(t, ownedPod(now.Add(-time.Minute)), ReporterConfig{Clock: clocktesting.NewFakeClock(now)})
	if err := known(e.r); !errors.Is(err, ErrDeleteTooYoung) {
		t.Errorf("young pod: %v", err)
	}
	if err := e.r.Delete(5 * time.Minute); !errors.Is(err, ErrDeleteTooYoung) || !strings.Contains(err.Error(), "1m0s < 5m0s") {
		t.Errorf("young pod: %v", err)
	}
	// Old enough: deleted once, with the UID as a precondition.
	if err := e.r.Delete(time.Minute); err != nil {
		t.Fatalf("delete: %v", err)
	}
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the delete", testwait.True(func() bool { return len(e.srv.requests(http.MethodDelete, podPath)) == 1 }))
	var opts metav1.DeleteOptions
	if err := json.Unmarshal(e.srv.requests(http.MethodDelete, podPath)[0].body, &opts); err != nil {
		t.Fatal(err)
	}
	if opts.Preconditions == nil || opts.Preconditions.UID == nil || string(*opts.Preconditions.UID) != uid {
		t.Errorf("delete options %+v: no UID precondition", opts)
	}
	if err := e.r.Delete(0); !errors.Is(err, ErrDeleteAgain) {
		t.Errorf("second delete: %v", err)
	}
}

// TestReporterDeleteFailed: a deletion RBAC refuses is reported to
// OnDeleteFailed once, not retried at every wake-up, and may be asked for
// again; one the API server does not answer is reported once and retried.
func TestReporterDeleteFailed(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	podPath := "/api/v1/namespaces/" + ns + "/pods/" + name
	clk := clocktesting.NewFakeClock(now)
	e := newReporterEnv(t, ownedPod(now.Add(-time.Hour)), ReporterConfig{Clock: clk, Attempts: 2, Backoff: time.Millisecond})
	failed := make(chan error, 10)
	e.r.OnDeleteFailed(func(err error) { failed <- err })
	// A day's minimum age refuses this pod without a request, once the
	// guard has the pod.
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the pod read", testwait.True(func() bool { return !errors.Is(e.r.Delete(24*time.Hour), ErrDeleteUnknown) }))

	e.srv.setFail(status(http.StatusForbidden, metav1.StatusReasonForbidden, `pods "web" is forbidden: cannot delete resource "pods"`))
	if err := e.r.Delete(time.Minute); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-failed:
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("OnDeleteFailed got %v, want ErrForbidden", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnDeleteFailed not called for a refused deletion")
	}
	for range 5 {
		e.r.poke()
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(e.srv.requests(http.MethodDelete, podPath)); n != 1 {
		t.Errorf("%d DELETEs for one request refused by RBAC, want 1 (no retries)", n)
	}
	// The request is over: a finding right after it is refused at once
	// (its caller escalates), one after a pause asks again.
	if err := e.r.Delete(time.Minute); !errors.Is(err, ErrDeleteRefused) || !errors.Is(err, ErrForbidden) {
		t.Errorf("request right after a refusal: %v, want ErrDeleteRefused", err)
	}
	if n := len(e.srv.requests(http.MethodDelete, podPath)); n != 1 {
		t.Errorf("%d DELETEs, want 1", n)
	}
	clk.Step(reporterResync)
	if err := e.r.Delete(time.Minute); err != nil {
		t.Errorf("request after a pause: %v", err)
	}
	if err := <-failed; !errors.Is(err, ErrForbidden) {
		t.Errorf("OnDeleteFailed got %v", err)
	}

	// The API server down: reported once, retried until it is back.
	clk.Step(reporterResync)
	e.srv.setFail(status(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "down"))
	if err := e.r.Delete(time.Minute); err != nil {
		t.Fatal(err)
	}
	<-failed
	e.r.poke()
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "a retry", testwait.True(func() bool { return len(e.srv.requests(http.MethodDelete, podPath)) >= 6 }))
	e.srv.setFail(nil)
	e.r.poke()
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the delete", testwait.True(func() bool { return e.requests(metrics.KubeDeletePod, metrics.ResultOK) == 1 }))
	if len(failed) != 0 {
		t.Errorf("OnDeleteFailed called %d more times for one request", len(failed))
	}
	if err := e.r.Delete(time.Minute); !errors.Is(err, ErrDeleteAgain) {
		t.Errorf("after the deletion: %v", err)
	}
}

func TestEventMessage(t *testing.T) {
	long := strings.Repeat("é", 1000)
	m := eventMessage(long)
	if len(m) > maxEventMessageBytes || !strings.HasSuffix(m, "...") || !strings.HasPrefix(m, "éé") {
		t.Errorf("long message: %d bytes, %q...", len(m), m[:10])
	}
	if m := eventMessage("a\xffb\tc"); m != `a'\xff'b'\t'c` {
		t.Errorf("got %q", m)
	}
}

// syncBuf is a log sink the worker and the test use concurrently.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
