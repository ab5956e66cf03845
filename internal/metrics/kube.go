package metrics

import "github.com/prometheus/client_golang/prometheus"

// KubeOperation is a kind of request to the Kubernetes API: the
// "operation" label of podfim_kube_requests_total.
type KubeOperation string

// Requests to the Kubernetes API.
const (
	KubeGetPod     KubeOperation = "get_pod"     // read the pod (target by name, image ID, delete guard)
	KubePatchPod   KubeOperation = "patch_pod"   // set or remove the quarantine label
	KubeDeletePod  KubeOperation = "delete_pod"  // the delete action
	KubeWriteEvent KubeOperation = "write_event" // create or patch an Event
)

// KubeOperations lists every KubeOperation.
func KubeOperations() []KubeOperation {
	return []KubeOperation{KubeGetPod, KubePatchPod, KubeDeletePod, KubeWriteEvent}
}

// KubeEventResult is what became of a Kubernetes Event: the "result" label
// of podfim_kube_events_total.
type KubeEventResult string

// What became of an Event.
const (
	KubeEventSent     KubeEventResult = "sent"     // written to the API server (created, or counted into one already written)
	KubeEventFiltered KubeEventResult = "filtered" // held back by client-go's spam filter (a storm)
	KubeEventDropped  KubeEventResult = "dropped"  // the queue was full: the oldest was dropped
	KubeEventFailed   KubeEventResult = "failed"   // every attempt to write it failed
)

// KubeEventResults lists every KubeEventResult.
func KubeEventResults() []KubeEventResult {
	return []KubeEventResult{KubeEventSent, KubeEventFiltered, KubeEventDropped, KubeEventFailed}
}

// kubeMetrics are the metrics of the sidecar's use of the Kubernetes API.
type kubeMetrics struct {
	kubeRequests *prometheus.CounterVec
	kubeEvents   *prometheus.CounterVec
}

func newKubeMetrics() kubeMetrics {
	m := kubeMetrics{
		kubeRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_kube_requests_total",
			Help: "Requests to the Kubernetes API by operation (get_pod, patch_pod, delete_pod, write_event) and result (ok, error).",
		}, []string{"operation", "result"}),
		kubeEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_kube_events_total",
			Help: "Kubernetes Events by what became of them (sent, filtered by the spam filter, dropped from a full queue, failed).",
		}, []string{"result"}),
	}
	for _, op := range KubeOperations() {
		for _, r := range []Result{ResultOK, ResultError} {
			m.kubeRequests.WithLabelValues(string(op), string(r)).Add(0)
		}
	}
	for _, r := range KubeEventResults() {
		m.kubeEvents.WithLabelValues(string(r)).Add(0)
	}
	return m
}

func (m *kubeMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.kubeRequests, m.kubeEvents}
}

// KubeRequest counts one request to the Kubernetes API and its outcome.
func (m *Sidecar) KubeRequest(op KubeOperation, err error) {
	if m == nil {
		return
	}
	m.kubeRequests.WithLabelValues(string(op), string(resultOf(err))).Inc()
}

// KubeEvent counts what became of one Kubernetes Event.
func (m *Sidecar) KubeEvent(r KubeEventResult) {
	if m == nil {
		return
	}
	m.kubeEvents.WithLabelValues(string(r)).Inc()
}
