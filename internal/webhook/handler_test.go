package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podfim/podfim/internal/inject"
	"github.com/podfim/podfim/internal/metrics"
)

func testConfig() *inject.Config {
	return &inject.Config{
		Image:      "localhost/podfim:dev",
		PullPolicy: corev1.PullNever,
		Respond:    []string{"log", "metric", "unready"},
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// value is the value of the series of reg's metric name whose label has
// value v ("" for a metric without labels).
func value(t *testing.T, reg *prometheus.Registry, name, v string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if len(s.GetLabel()) == 0 && v == "" || len(s.GetLabel()) > 0 && s.GetLabel()[0].GetValue() == v {
				if s.GetCounter() != nil {
					return s.GetCounter().GetValue()
				}
				return s.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{%q}", name, v)
	return 0
}

func newHandler(t *testing.T, limits Limits) (*Handler, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.NewWebhook(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	return NewHandler(testConfig(), limits, discard(), m), reg
}

func reviewBody(op admissionv1.Operation, kind, object string) []byte {
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "42", Kind: metav1.GroupVersionKind{Version: "v1", Kind: kind}, Operation: op, Namespace: "shop",
			Object: runtime.RawExtension{Raw: []byte(object)},
		},
	}
	b, _ := json.Marshal(r)
	return b
}

func post(t *testing.T, h http.Handler, body []byte, contentType string) (*http.Response, admissionv1.AdmissionReview) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var out admissionv1.AdmissionReview
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
	}
	return w.Result(), out
}

func TestHandler(t *testing.T) {
	h, reg := newHandler(t, Limits{})
	pod := `{"metadata":{"generateName":"hello-"},"spec":{"containers":[{"name":"app","image":"hello"}]}}`

	resp, out := post(t, h, reviewBody(admissionv1.Create, "Pod", pod), "application/json")
	if resp.StatusCode != http.StatusOK || out.Response == nil || out.Response.UID != "42" || !out.Response.Allowed ||
		out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch || out.Kind != "AdmissionReview" {
		t.Fatalf("inject: %d %+v", resp.StatusCode, out.Response)
	}
	var ops []inject.PatchOp
	if err := json.Unmarshal(out.Response.Patch, &ops); err != nil || len(ops) < 3 {
		t.Fatalf("patch %s: %v", out.Response.Patch, err)
	}

	// Invalid annotations: a 200 whose review denies, naming the annotation.
	bad := `{"metadata":{"annotations":{"podfim.io/respond":"log,explode"}},"spec":{"containers":[{"name":"app"}]}}`
	resp, out = post(t, h, reviewBody(admissionv1.Create, "Pod", bad), "application/json")
	if resp.StatusCode != http.StatusOK || out.Response.Allowed || out.Response.Patch != nil ||
		!strings.Contains(out.Response.Result.Message, `annotation "podfim.io/respond"`) || out.Response.Result.Code != http.StatusUnprocessableEntity {
		t.Errorf("bad annotations: %d %+v", resp.StatusCode, out.Response)
	}

	// Not a pod creation: allowed unchanged.
	for _, r := range [][]byte{reviewBody(admissionv1.Update, "Pod", pod), reviewBody(admissionv1.Create, "ConfigMap", `{}`)} {
		if resp, out = post(t, h, r, "application/json"); resp.StatusCode != http.StatusOK || !out.Response.Allowed || out.Response.Patch != nil {
			t.Errorf("not a creation: %+v", out.Response)
		}
	}
	// Not a pod at all: denied with the reason.
	if _, out = post(t, h, reviewBody(admissionv1.Create, "Pod", `{"spec":"x"}`), "application/json"); out.Response.Allowed {
		t.Error("garbage object allowed")
	}

	// Not an AdmissionReview: 400, 415, 405.
	for _, tt := range []struct {
		body, ct string
		code     int
	}{
		{`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}`, "application/json", http.StatusBadRequest},
		{`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "application/json", http.StatusBadRequest},
		{`not json`, "application/json", http.StatusBadRequest},
		{`{}`, "text/plain", http.StatusUnsupportedMediaType},
	} {
		if resp, _ := post(t, h, []byte(tt.body), tt.ct); resp.StatusCode != tt.code {
			t.Errorf("%s (%s): %d, want %d", tt.body, tt.ct, resp.StatusCode, tt.code)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/mutate", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
	// A body above the limit is refused: announced, before it is read;
	// chunked, once the limit is reached.
	huge := append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), MaxReviewBytes+1)...)
	if resp, _ := post(t, h, huge, "application/json"); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: %d", resp.StatusCode)
	}
	req := httptest.NewRequest(http.MethodPost, "/mutate", io.MultiReader(bytes.NewReader(huge)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/json")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("huge chunked body: %d", w.Code)
	}

	for outcome, want := range map[metrics.Admission]float64{inject.Injected: 1, inject.Rejected: 1, inject.Skipped: 2, metrics.AdmissionError: 8} {
		if got := value(t, reg, "podfim_webhook_admissions_total", string(outcome)); got != want {
			t.Errorf("podfim_webhook_admissions_total{result=%q} = %v, want %v", outcome, got, want)
		}
	}
	if got := value(t, reg, "podfim_webhook_requests_refused_total", string(metrics.RefusedTooLarge)); got != 2 {
		t.Errorf("refused too_large = %v, want 2", got)
	}
	if got := value(t, reg, "podfim_webhook_admissions_in_flight", ""); got != 0 {
		t.Errorf("in flight after the last answer: %v", got)
	}
}

// TestHandlerBusy: with every decoding slot taken, a review waits for one
// and is answered once it frees up; one that finds none within the wait is
// refused with 429, without reading its body.
func TestHandlerBusy(t *testing.T) {
	h, _ := newHandler(t, Limits{MaxInFlight: 1, QueueWait: time.Hour})
	pod := reviewBody(admissionv1.Create, "Pod", `{"spec":{"containers":[{"name":"app"}]}}`)
	h.slots <- struct{}{} // the one slot is taken
	done := make(chan int, 1)
	go func() {
		resp, _ := post(t, h, pod, "application/json")
		done <- resp.StatusCode
	}()
	// Whether it arrives before or after the slot is given back, it is
	// answered (QueueWait is an hour: it cannot be refused).
	<-h.slots
	if code := <-done; code != http.StatusOK {
		t.Errorf("a review that waited for its slot: %d", code)
	}

	h, reg := newHandler(t, Limits{MaxInFlight: 1, QueueWait: time.Millisecond})
	h.slots <- struct{}{}
	resp, _ := post(t, h, pod, "application/json")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("no slot: %d", resp.StatusCode)
	}
	if got := value(t, reg, "podfim_webhook_requests_refused_total", string(metrics.RefusedBusy)); got != 1 {
		t.Errorf("refused busy = %v", got)
	}
}
