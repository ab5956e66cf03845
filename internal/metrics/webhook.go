package metrics

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Admission is the value of the "result" label of
// podfim_webhook_admissions_total: what the webhook did with one
// AdmissionReview.
type Admission string

// Admissions.
const (
	AdmissionInjected Admission = "injected" // the sidecar was added
	AdmissionSkipped  Admission = "skipped"  // opted out, already injected, not a pod creation
	AdmissionRejected Admission = "rejected" // invalid annotations, or a pod the sidecar cannot protect
	AdmissionError    Admission = "error"    // a request that could not be read, or refused (Refusal)
)

// Admissions lists every Admission, in the order docs/metrics.md names them.
func Admissions() []Admission {
	return []Admission{AdmissionInjected, AdmissionSkipped, AdmissionRejected, AdmissionError}
}

// Refusal is the value of the "reason" label of
// podfim_webhook_requests_refused_total: why a request was refused before
// its body was decoded, to bound the webhook's memory.
type Refusal string

// Refusals.
const (
	// RefusedTooLarge: the body is larger than an AdmissionReview of the
	// largest object the API server stores.
	RefusedTooLarge Refusal = "too_large"
	// RefusedBusy: no decoding slot freed up while the request waited.
	RefusedBusy Refusal = "busy"
)

// Refusals lists every Refusal.
func Refusals() []Refusal { return []Refusal{RefusedTooLarge, RefusedBusy} }

// Webhook is the admission webhook's metrics. Create them with NewWebhook;
// a nil *Webhook is valid and records nothing.
type Webhook struct {
	admissions  *prometheus.CounterVec
	duration    prometheus.Histogram
	refused     *prometheus.CounterVec
	inflight    prometheus.Gauge
	connections prometheus.Gauge
	expiry      prometheus.Gauge
	published   prometheus.Gauge
	buildInfo   *prometheus.GaugeVec
}

// NewWebhook creates the webhook's metrics, registers them on reg together
// with the Go and process collectors, and pre-creates every known label
// value. version is podfim's version for podfim_build_info.
func NewWebhook(reg prometheus.Registerer, version string) (*Webhook, error) {
	m := &Webhook{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_webhook_admissions_total",
			Help: "Pod admissions answered, by result: injected, skipped (opted out, already injected, not a pod creation), rejected (invalid annotations, or a pod the sidecar cannot protect), error (a request that could not be read or was refused).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podfim_webhook_admission_duration_seconds",
			Help:    "Time to answer one AdmissionReview, from the request read to the response written, including the wait for a decoding slot.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_webhook_requests_refused_total",
			Help: "Requests to /mutate refused before their body was decoded, by reason: too_large (413), busy (no decoding slot within the wait; 429).",
		}, []string{"reason"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_webhook_admissions_in_flight",
			Help: "AdmissionReviews being read or decoded now (bounded by --max-in-flight).",
		}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_webhook_connections",
			Help: "Open client connections (bounded by --max-connections).",
		}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_webhook_certificate_expiry_timestamp_seconds",
			Help: "When the serving certificate in use expires (Unix time).",
		}),
		published: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_webhook_ca_published",
			Help: "1 when the last check found the CA in every caBundle of the MutatingWebhookConfiguration (self-signed mode), else 0.",
		}),
		buildInfo: newBuildInfo(version),
	}
	cs := slices.Concat([]prometheus.Collector{m.admissions, m.duration, m.refused, m.inflight, m.connections, m.expiry, m.published, m.buildInfo},
		runtimeCollectors())
	if err := register(reg, cs...); err != nil {
		return nil, err
	}
	for _, a := range Admissions() {
		m.admissions.WithLabelValues(string(a)).Add(0) // zeros, not gaps
	}
	for _, r := range Refusals() {
		m.refused.WithLabelValues(string(r)).Add(0)
	}
	return m, nil
}

// Admission counts one answered AdmissionReview that took d.
func (m *Webhook) Admission(a Admission, d time.Duration) {
	if m == nil {
		return
	}
	m.admissions.WithLabelValues(string(a)).Inc()
	m.duration.Observe(d.Seconds())
}

// Refused counts a request refused before its body was decoded.
func (m *Webhook) Refused(r Refusal) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(string(r)).Inc()
}

// AddInFlight adds delta to the admissions being read or decoded.
func (m *Webhook) AddInFlight(delta int) {
	if m == nil {
		return
	}
	m.inflight.Add(float64(delta))
}

// AddConnections adds delta to the open connections.
func (m *Webhook) AddConnections(delta int) {
	if m == nil {
		return
	}
	m.connections.Add(float64(delta))
}

// SetCertificateExpiry sets when the serving certificate in use expires.
func (m *Webhook) SetCertificateExpiry(t time.Time) {
	if m == nil {
		return
	}
	m.expiry.Set(float64(t.Unix()))
}

// SetCAPublished sets whether the last check found the CA in every caBundle.
func (m *Webhook) SetCAPublished(ok bool) {
	if m == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	m.published.Set(v)
}
