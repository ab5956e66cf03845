package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxReviewBytes bounds a request body: the API server's own limit on an
// object is 3 MiB, and an AdmissionReview carries the object once (old
// object empty on create).
const maxReviewBytes = 4 << 20

// Log keys.
const (
	keyUID       = "uid"
	keyNamespace = "namespace"
	keyName      = "name"
	keyOutcome   = "outcome"
	keyReason    = "reason"
	keyError     = "error"
)

// Review answers one AdmissionReview. Only the creation of a pod is ever
// mutated; anything else is allowed unchanged (the configuration should not
// send it). A pod the webhook cannot protect as annotated is denied with a
// message that names the annotation and the problem.
func (c *Config) Review(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, Outcome, string) {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != admissionv1.Create {
		return resp, Skipped, fmt.Sprintf("not the creation of a pod (%s %s/%s)", req.Operation, req.Kind.Kind, req.SubResource)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest,
			Message: fmt.Sprintf("podfim: the object is not a pod: %v", err)}
		return resp, Errored, resp.Result.Message
	}
	ops, outcome, reason, err := c.Mutate(&pod)
	switch outcome {
	case Rejected:
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
			Message: "podfim: " + oneLine(err)}
		return resp, Rejected, resp.Result.Message
	case Injected:
		patch, err := json.Marshal(ops)
		if err != nil {
			resp.Allowed = false
			resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Reason: metav1.StatusReasonInternalError,
				Message: fmt.Sprintf("podfim: failed to encode the patch: %v", err)}
			return resp, Errored, resp.Result.Message
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	return resp, outcome, reason
}

// oneLine joins a multi-problem error with "; " so that kubectl shows all of
// it on the line of the denial.
func oneLine(err error) string {
	var msgs []string
	for _, e := range unjoin(err) {
		msgs = append(msgs, e.Error())
	}
	if len(msgs) == 1 {
		return msgs[0]
	}
	out := fmt.Sprintf("%d problems: ", len(msgs))
	for i, m := range msgs {
		if i > 0 {
			out += "; "
		}
		out += m
	}
	return out
}

// Metrics of the webhook's admissions.
type Metrics struct {
	admissions *prometheus.CounterVec
	duration   prometheus.Histogram
}

// NewMetrics registers podfim_webhook_admissions_total{result} and
// podfim_webhook_admission_duration_seconds on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_webhook_admissions_total",
			Help: "Pod admissions answered, by result: injected, skipped (opted out, already injected, not a pod creation), rejected (invalid annotations, or a pod the sidecar cannot protect), error (a request that could not be read).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podfim_webhook_admission_duration_seconds",
			Help:    "Time to answer one AdmissionReview, from the request read to the response written.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}),
	}
	for _, c := range []prometheus.Collector{m.admissions, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("failed to register the webhook metrics: %w", err)
		}
	}
	for _, o := range Outcomes {
		m.admissions.WithLabelValues(string(o)).Add(0) // zeros, not gaps
	}
	return m, nil
}

// Handler serves POST /mutate: an AdmissionReview in, one out. A request
// that is not a readable AdmissionReview gets a 400 (the API server then
// applies the failurePolicy); a readable one always gets a 200 with the
// decision inside.
func (c *Config) Handler(log *slog.Logger, m *Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		outcome := Errored
		defer func() {
			if m != nil {
				m.admissions.WithLabelValues(string(outcome)).Inc()
				m.duration.Observe(time.Since(start).Seconds())
			}
		}()
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed: POST an AdmissionReview", http.StatusMethodNotAllowed)
			return
		}
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			http.Error(w, "the body must be an application/json AdmissionReview", http.StatusUnsupportedMediaType)
			return
		}
		review, err := readReview(w, r)
		if err != nil {
			log.Warn("bad admission request", keyError, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, o, reason := c.Review(review.Request)
		outcome = o
		level := slog.LevelInfo
		if o == Skipped {
			level = slog.LevelDebug
		}
		log.Log(r.Context(), level, "admission", keyUID, review.Request.UID, keyNamespace, review.Request.Namespace,
			keyName, podName(review.Request), keyOutcome, string(o), keyReason, reason)
		out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
		body, err := json.Marshal(out)
		if err != nil {
			outcome = Errored
			http.Error(w, "failed to encode the response", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
}

// readReview reads an admission.k8s.io/v1 AdmissionReview with a request.
func readReview(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionReview, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		return nil, fmt.Errorf("failed to read the request: %w", err)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		return nil, fmt.Errorf("not an AdmissionReview: %w", err)
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("want an %s AdmissionReview, got %q %q (set admissionReviewVersions: [v1])", admissionv1.SchemeGroupVersion, review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("the AdmissionReview has no request")
	}
	return &review, nil
}

// podName is the pod's name, or its generateName prefix (a Deployment's
// pods are named by the API server after admission).
func podName(req *admissionv1.AdmissionRequest) string {
	if req.Name != "" {
		return req.Name
	}
	var meta struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if json.Unmarshal(req.Object.Raw, &meta) == nil && meta.Metadata.GenerateName != "" {
		return meta.Metadata.GenerateName + "*"
	}
	return ""
}
