package metrics

import "github.com/prometheus/client_golang/prometheus"

// Limit is a bound on something the app (or a baseline) can make the
// sidecar hold: the "limit" label of podfim_limit_overflows_total. Every
// collection that input can grow has one, and what goes over it is counted
// here (and logged), never held (docs/security.md).
type Limit string

// Limits.
const (
	// LimitConnections: connections to the metrics and probe port refused or
	// evicted at the cap (server.DefaultMaxConns).
	LimitConnections Limit = "connections"
	// LimitFindings: findings the sidecar's monitor left out because it
	// holds its bound of open violations (watch.DefaultMaxFindings), per
	// check.
	LimitFindings Limit = "findings"
	// LimitMappings: writable shared mappings of protected files beyond
	// those reported per check.
	LimitMappings Limit = "mappings"
	// LimitProcesses: processes of the pod beyond those execution drift
	// tracks at once (drift.DefaultMaxProcesses): they are checked when
	// seen, and again only when room frees up.
	LimitProcesses Limit = "processes"
	// LimitExecMappings: executable mappings of one process beyond those
	// execution drift checks (drift.DefaultMaxMappings).
	LimitExecMappings Limit = "exec_mappings"
	// LimitMounts: a container's mount table refused for being over
	// origin.MaxMountinfoBytes or origin.MaxMounts (once per container).
	LimitMounts Limit = "mounts"
	// LimitAttributions: findings whose writer was not looked for because
	// more than the bound of attributions per second were asked (each
	// reads the app's /proc), and processes or descriptors over an
	// attribution's bounds.
	LimitAttributions Limit = "attributions"
)

// Limits lists every Limit.
func Limits() []Limit {
	return []Limit{LimitConnections, LimitFindings, LimitMappings, LimitProcesses, LimitExecMappings, LimitMounts, LimitAttributions}
}

// limitMetrics count what went over a bound.
type limitMetrics struct {
	overflows *prometheus.CounterVec
}

func newLimitMetrics() limitMetrics {
	m := limitMetrics{
		overflows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_limit_overflows_total",
			Help: "Items refused, evicted or left out because a bound was reached, by bound.",
		}, []string{"limit"}),
	}
	for _, l := range Limits() {
		m.overflows.WithLabelValues(string(l)).Add(0)
	}
	return m
}

func (m limitMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.overflows}
}

// Overflow counts n items that went over limit l.
func (m *Sidecar) Overflow(l Limit, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.overflows.WithLabelValues(string(l)).Add(float64(n))
}
