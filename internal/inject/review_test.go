package inject

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func review(op admissionv1.Operation, kind, object string) []byte {
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
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := testConfig().Handler(slog.New(slog.NewTextHandler(io.Discard, nil)), m)
	pod := `{"metadata":{"generateName":"hello-"},"spec":{"containers":[{"name":"app","image":"hello"}]}}`

	resp, out := post(t, h, review(admissionv1.Create, "Pod", pod), "application/json")
	if resp.StatusCode != http.StatusOK || out.Response == nil || out.Response.UID != "42" || !out.Response.Allowed ||
		out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch || out.Kind != "AdmissionReview" {
		t.Fatalf("inject: %d %+v", resp.StatusCode, out.Response)
	}
	var ops []PatchOp
	if err := json.Unmarshal(out.Response.Patch, &ops); err != nil || len(ops) < 3 {
		t.Fatalf("patch %s: %v", out.Response.Patch, err)
	}

	// Invalid annotations: a 200 whose review denies, naming the annotation.
	bad := `{"metadata":{"annotations":{"podfim.io/respond":"log,explode"}},"spec":{"containers":[{"name":"app"}]}}`
	resp, out = post(t, h, review(admissionv1.Create, "Pod", bad), "application/json")
	if resp.StatusCode != http.StatusOK || out.Response.Allowed || out.Response.Patch != nil ||
		!strings.Contains(out.Response.Result.Message, `annotation "podfim.io/respond"`) || out.Response.Result.Code != http.StatusUnprocessableEntity {
		t.Errorf("bad annotations: %d %+v", resp.StatusCode, out.Response)
	}

	// Not a pod creation: allowed unchanged.
	for _, r := range [][]byte{review(admissionv1.Update, "Pod", pod), review(admissionv1.Create, "ConfigMap", `{}`)} {
		if resp, out = post(t, h, r, "application/json"); resp.StatusCode != http.StatusOK || !out.Response.Allowed || out.Response.Patch != nil {
			t.Errorf("not a creation: %+v", out.Response)
		}
	}
	// Not a pod at all: denied with the reason.
	if _, out = post(t, h, review(admissionv1.Create, "Pod", `{"spec":"x"}`), "application/json"); out.Response.Allowed {
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
	// A body above the limit is refused, not read into memory.
	huge := append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), maxReviewBytes+1)...)
	if resp, _ := post(t, h, huge, "application/json"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("huge body: %d", resp.StatusCode)
	}

	for outcome, want := range map[Outcome]float64{Injected: 1, Rejected: 1, Skipped: 2, Errored: 7} {
		if got := testutil.ToFloat64(m.admissions.WithLabelValues(string(outcome))); got != want {
			t.Errorf("podfim_webhook_admissions_total{result=%q} = %v, want %v", outcome, got, want)
		}
	}
}
