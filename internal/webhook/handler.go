package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podfim/podfim/internal/inject"
	"github.com/podfim/podfim/internal/metrics"
)

// Handler serves POST /mutate: an AdmissionReview in, one out. A request
// that is not a readable AdmissionReview gets a 400, one too large a 413,
// one that found no decoding slot in time a 429 (the API server then
// applies the failurePolicy); a readable one always gets a 200 with the
// decision inside.
type Handler struct {
	inject *inject.Config
	log    *slog.Logger
	m      *metrics.Webhook
	slots  chan struct{}
	wait   time.Duration
	body   time.Duration
}

// NewHandler returns the /mutate handler of c, bounded by limits (zero
// fields: DefaultLimits). m may be nil.
func NewHandler(c *inject.Config, limits Limits, log *slog.Logger, m *metrics.Webhook) *Handler {
	limits = limits.withDefaults()
	return &Handler{inject: c, log: log, m: m, slots: make(chan struct{}, limits.MaxInFlight), wait: limits.QueueWait, body: limits.BodyTimeout}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := metrics.AdmissionError
	defer func() { h.m.Admission(result, time.Since(start)) }()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "the body must be an application/json AdmissionReview", http.StatusUnsupportedMediaType)
		return
	}
	if r.ContentLength > MaxReviewBytes {
		// Refused before a byte of it is read.
		h.m.Refused(metrics.RefusedTooLarge)
		http.Error(w, fmt.Sprintf("the body is %d bytes, more than %d", r.ContentLength, MaxReviewBytes), http.StatusRequestEntityTooLarge)
		return
	}
	if !h.acquire(r.Context()) {
		h.m.Refused(metrics.RefusedBusy)
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many admission reviews at once; retry", http.StatusTooManyRequests)
		return
	}
	body, err := h.decodeAndAnswer(w, r)
	if err != nil {
		h.log.Warn("bad admission request", keyErr, err)
		code := http.StatusBadRequest
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			h.m.Refused(metrics.RefusedTooLarge)
			code = http.StatusRequestEntityTooLarge
		}
		http.Error(w, err.Error(), code)
		return
	}
	result = body.result
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body.data)
}

// acquire takes a decoding slot, waiting at most h.wait.
func (h *Handler) acquire(ctx context.Context) bool {
	select {
	case h.slots <- struct{}{}:
		h.m.AddInFlight(1)
		return true
	default:
	}
	t := time.NewTimer(h.wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		h.m.AddInFlight(1)
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func (h *Handler) release() {
	<-h.slots
	h.m.AddInFlight(-1)
}

type answer struct {
	data   []byte
	result metrics.Admission
}

// decodeAndAnswer reads and decodes the review while it holds a decoding
// slot, and encodes the answer; the slot is given back before the answer
// is written, so a slow reader of responses holds no decoded review.
func (h *Handler) decodeAndAnswer(w http.ResponseWriter, r *http.Request) (answer, error) {
	defer h.release()
	// Not supported by test recorders; the server's ReadTimeout still
	// bounds the request there.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.body))
	review, err := readReview(w, r)
	if err != nil {
		return answer{}, err
	}
	resp, result, reason := answerReview(h.inject, review.Request.request(), review.Request.Object)
	level := slog.LevelInfo
	if result == metrics.AdmissionSkipped {
		level = slog.LevelDebug
	}
	h.log.Log(r.Context(), level, "admission", keyUID, string(review.Request.UID), keyNS, review.Request.Namespace,
		keyName, review.Request.podName(), keyOutcome, string(result), keyReason, reason)
	data, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		return answer{}, fmt.Errorf("failed to encode the response: %w", err)
	}
	return answer{data: data, result: result}, nil
}

// reviewIn is an AdmissionReview whose object is decoded straight into a
// pod, once, from the request's bytes (no RawExtension copy, no second
// parse for the log's pod name), and whose old object is skipped: a
// create has none and nothing else is mutated.
type reviewIn struct {
	metav1.TypeMeta `json:",inline"`
	Request         *requestIn `json:"request"`
}

type requestIn struct {
	admissionv1.AdmissionRequest
	// Object and OldObject shadow the embedded RawExtensions (a shallower
	// field wins in encoding/json).
	Object    podObject `json:"object"`
	OldObject skipped   `json:"oldObject"`
}

// request is the AdmissionRequest without its objects.
func (r *requestIn) request() *admissionv1.AdmissionRequest { return &r.AdmissionRequest }

// podName is the pod's name, or its generateName prefix (a Deployment's
// pods are named by the API server after admission).
func (r *requestIn) podName() string {
	switch {
	case r.Name != "":
		return r.Name
	case r.Object.pod != nil && r.Object.pod.GenerateName != "":
		return r.Object.pod.GenerateName + "*"
	}
	return ""
}

// podObject decodes the object as a pod, keeping the error for Review: the
// object of a request that is not a pod creation need not be a pod.
type podObject struct {
	pod *corev1.Pod
	err error
}

func (o *podObject) UnmarshalJSON(data []byte) error {
	var pod corev1.Pod
	if err := json.Unmarshal(data, &pod); err != nil {
		o.err = err
		return nil
	}
	o.pod = &pod
	return nil
}

type skipped struct{}

func (*skipped) UnmarshalJSON([]byte) error { return nil }

// readReview reads an admission.k8s.io/v1 AdmissionReview with a request.
func readReview(w http.ResponseWriter, r *http.Request) (*reviewIn, error) {
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		// Exactly what was announced, so the buffer never regrows (a
		// regrowth would hold the old and the new copy at once).
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxReviewBytes)); err != nil {
		return nil, fmt.Errorf("failed to read the request: %w", err)
	}
	var review reviewIn
	if err := json.Unmarshal(buf.Bytes(), &review); err != nil {
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

// answerReview answers one AdmissionRequest whose object was decoded as obj. Only
// the creation of a pod is ever mutated; anything else is allowed unchanged
// (the configuration should not send it). A pod the webhook cannot protect
// as annotated is denied with a message that names the annotation and the
// problem.
func answerReview(c *inject.Config, req *admissionv1.AdmissionRequest, obj podObject) (*admissionv1.AdmissionResponse, metrics.Admission, string) {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.SubResource != "" || req.Operation != admissionv1.Create {
		return resp, metrics.AdmissionSkipped, fmt.Sprintf("not the creation of a pod (%s %s/%s)", req.Operation, req.Kind.Kind, req.SubResource)
	}
	if obj.pod == nil {
		err := obj.err
		if err == nil {
			err = errors.New("no object")
		}
		return deny(resp, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("podfim: the object is not a pod: %v", err)), metrics.AdmissionError, ""
	}
	ops, outcome, reason, err := c.Mutate(obj.pod)
	switch outcome {
	case inject.Rejected:
		return deny(resp, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "podfim: "+oneLine(err)), outcome, oneLine(err)
	case inject.Injected:
		patch, err := json.Marshal(ops)
		if err != nil {
			return deny(resp, http.StatusInternalServerError, metav1.StatusReasonInternalError, fmt.Sprintf("podfim: failed to encode the patch: %v", err)), metrics.AdmissionError, ""
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	return resp, outcome, reason
}

func deny(resp *admissionv1.AdmissionResponse, code int32, reason metav1.StatusReason, msg string) *admissionv1.AdmissionResponse {
	resp.Allowed = false
	resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}
	return resp
}

// oneLine joins a multi-problem error with "; " so that kubectl shows all of
// it on the line of the denial.
func oneLine(err error) string {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	if len(errs) == 1 {
		return errs[0].Error()
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return fmt.Sprintf("%d problems: %s", len(msgs), strings.Join(msgs, "; "))
}
