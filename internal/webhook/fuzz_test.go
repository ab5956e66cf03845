package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// FuzzHandler sends arbitrary bodies to /mutate: the handler never panics,
// answers 200 (a decision), 400 (not an AdmissionReview) or 413, and a 200
// always carries a response for the request's UID, with a patch only when
// it allows. The decision of a readable review is inject's (fuzzed by
// FuzzParseAnnotations); this covers the decoding in front of it.
func FuzzHandler(f *testing.F) {
	pod := `{"metadata":{"generateName":"hello-","annotations":{"podfim.io/respond":"log,kill"}},"spec":{"containers":[{"name":"app","image":"hello"}]}}`
	f.Add(reviewBody(admissionv1.Create, "Pod", pod))
	f.Add(reviewBody(admissionv1.Create, "Pod", `{"spec":"x"}`))
	f.Add(reviewBody(admissionv1.Update, "Pod", pod))
	f.Add(reviewBody(admissionv1.Create, "ConfigMap", `[]`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"kind":"Pod"},"operation":"CREATE","object":null,"oldObject":{"x":[1,2]}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`))
	f.Add([]byte(`not json`))
	h := NewHandler(testConfig(), Limits{}, discard(), nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/mutate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return
		case http.StatusOK:
		default:
			t.Fatalf("status %d for %q", w.Code, body)
		}
		var in struct {
			Request struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		_ = json.Unmarshal(body, &in)
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("a 200 without a response: %v %s", err, w.Body.Bytes())
		}
		if string(out.Response.UID) != in.Request.UID {
			t.Fatalf("response for UID %q, request %q", out.Response.UID, in.Request.UID)
		}
		if out.Response.Patch != nil && !out.Response.Allowed {
			t.Fatalf("a denial with a patch: %s", w.Body.Bytes())
		}
		if len(h.slots) != 0 {
			t.Fatal("a decoding slot was not given back")
		}
	})
}
