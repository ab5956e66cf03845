package metrics

import "github.com/prometheus/client_golang/prometheus"

// DriftReason is why a process is execution drift: the "reason" label of
// podfim_exec_drift_total. Package drift decides it and names it
// drift.Reason (an alias of this type).
type DriftReason string

// Drift reasons; docs/drift.md says what each means.
const (
	DriftAdded   DriftReason = "added"   // the file run is not an entry of the baseline
	DriftChanged DriftReason = "changed" // an entry of the baseline whose content differs
	DriftDeleted DriftReason = "deleted" // deleted (or replaced) from disk while running
	DriftVolume  DriftReason = "volume"  // on a volume mounted into the container
	DriftMemory  DriftReason = "memory"  // memory-backed: a memfd, /dev/shm (fileless)
	DriftScript  DriftReason = "script"  // a script outside the baseline given to an interpreter
	// DriftUnverified: an entry of the baseline whose content could not be
	// read to compare (larger than maxFileBytes, unreadable).
	DriftUnverified DriftReason = "unverified"
	// DriftNamespace: a process of the app container in a mount namespace
	// of its own, whose files cannot be judged through the container's root.
	DriftNamespace DriftReason = "namespace"
)

// DriftReasons lists every DriftReason.
func DriftReasons() []DriftReason {
	return []DriftReason{DriftAdded, DriftChanged, DriftDeleted, DriftVolume, DriftMemory, DriftScript, DriftUnverified, DriftNamespace}
}

// driftMetrics count execution drift.
type driftMetrics struct {
	drift *prometheus.CounterVec
}

func newDriftMetrics() driftMetrics {
	m := driftMetrics{
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_exec_drift_total",
			Help: "Processes of the app container that run what the baseline does not hold, by reason (added, changed, deleted, volume, memory, script, unverified, namespace).",
		}, []string{"reason"}),
	}
	for _, r := range DriftReasons() {
		m.drift.WithLabelValues(string(r)).Add(0)
	}
	return m
}

func (m driftMetrics) collectors() []prometheus.Collector { return []prometheus.Collector{m.drift} }

// ExecDrift counts one drifted process.
func (m *Sidecar) ExecDrift(r DriftReason) {
	if m == nil {
		return
	}
	m.drift.WithLabelValues(string(r)).Inc()
}
