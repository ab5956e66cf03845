package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podfim/podfim/internal/attr"
)

// Action is one way of responding to a finding: the "action" label of
// podfim_actions_total. Package respond owns what each one does and names
// them respond.Action (an alias of this type), so a plan's action is the
// label value itself.
type Action string

// Actions. What each does is documented on respond's names for them.
const (
	ActionLog        Action = "log"
	ActionMetric     Action = "metric"
	ActionUnready    Action = "unready"
	ActionRestore    Action = "restore"
	ActionKill       Action = "kill"
	ActionWebhook    Action = "webhook"
	ActionEvent      Action = "event"
	ActionQuarantine Action = "quarantine"
	ActionDelete     Action = "delete"
)

// Actions lists every Action, in the order error messages name them.
func Actions() []Action {
	return []Action{ActionLog, ActionMetric, ActionUnready, ActionRestore, ActionKill, ActionWebhook, ActionEvent, ActionQuarantine, ActionDelete}
}

// responseMetrics are the metrics of the responses to findings.
type responseMetrics struct {
	findings        *prometheus.CounterVec
	actions         *prometheus.CounterVec
	violationsOpen  prometheus.Gauge
	responseLatency prometheus.Histogram
	quarantined     prometheus.Gauge
}

func newResponseMetrics() responseMetrics {
	m := responseMetrics{
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_findings_total",
			Help: "Integrity findings by kind (added, removed, changed) and origin (image, baseline, container, volume).",
		}, []string{"kind", "origin"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_actions_total",
			Help: "Responses to findings by action and result (ok, error, skipped).",
		}, []string{"action", "result"}),
		violationsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_violations_open",
			Help: "Number of paths with an integrity violation that has not been resolved.",
		}),
		responseLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podfim_response_latency_seconds",
			Help:    "Time from the event that revealed a finding to the end of the response to it.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1},
		}),
		quarantined: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_pod_quarantined",
			Help: "1 while the quarantine response wants the pod labelled podfim.io/quarantined=true, else 0.",
		}),
	}
	for _, k := range attr.Changes() {
		for _, o := range Origins() {
			m.findings.WithLabelValues(string(k), string(o)).Add(0)
		}
	}
	for _, a := range Actions() {
		for _, r := range []Result{ResultOK, ResultError, ResultSkipped} {
			m.actions.WithLabelValues(string(a), string(r)).Add(0)
		}
	}
	return m
}

func (m *responseMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.findings, m.actions, m.violationsOpen, m.responseLatency, m.quarantined}
}

// Finding counts one finding of kind k from origin o. A finding no
// classifier saw counts as OriginBaseline, so the label keeps its fixed
// vocabulary.
func (m *Sidecar) Finding(k attr.Change, o Origin) {
	if m == nil {
		return
	}
	if o == "" {
		o = OriginBaseline
	}
	m.findings.WithLabelValues(string(k), string(o)).Inc()
}

// Action counts one response and its result.
func (m *Sidecar) Action(a Action, r Result) {
	if m == nil {
		return
	}
	m.actions.WithLabelValues(string(a), string(r)).Inc()
}

// SetViolationsOpen records the number of open violations.
func (m *Sidecar) SetViolationsOpen(n int) {
	if m == nil {
		return
	}
	m.violationsOpen.Set(float64(n))
}

// ObserveResponseLatency records the time from the event that revealed a
// finding to the end of the response to it.
func (m *Sidecar) ObserveResponseLatency(d time.Duration) {
	if m == nil {
		return
	}
	m.responseLatency.Observe(d.Seconds())
}

// SetQuarantined records whether the pod is meant to be quarantined.
func (m *Sidecar) SetQuarantined(on bool) {
	if m == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	m.quarantined.Set(v)
}
