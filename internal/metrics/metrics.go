package metrics

import (
	"errors"
	"fmt"
	"runtime"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Result is the value of the "result" label of podfim_scans_total,
// podfim_actions_total and podfim_kube_requests_total.
type Result string

// Results.
const (
	ResultOK      Result = "ok"
	ResultError   Result = "error"
	ResultSkipped Result = "skipped" // the action did not apply (nothing kept to restore, kill limit reached...)
	// ResultIncomplete: a whole-tree check that ran to its end but could not
	// compare some paths (unreadable, not hashed, not descended).
	ResultIncomplete Result = "incomplete"
)

// ErrIncomplete, passed to ScanDone, marks a check that ran to its end but
// did not compare every path: it counts as result "incomplete" and, being
// no evidence that everything was compared, does not advance
// podfim_last_full_check_timestamp_seconds.
var ErrIncomplete = errors.New("check incomplete")

// resultOf is ResultOK for a nil error and ResultError otherwise.
func resultOf(err error) Result {
	if errors.Is(err, ErrIncomplete) {
		return ResultIncomplete
	}
	if err != nil {
		return ResultError
	}
	return ResultOK
}

// Sidecar is the sidecar's metrics. Create them with NewSidecar; a nil
// *Sidecar is valid and records nothing.
type Sidecar struct {
	scanMetrics
	responseMetrics
	kubeMetrics
	limitMetrics
	driftMetrics
	baselineInfo     *prometheus.GaugeVec
	baselineRefusals *prometheus.CounterVec
	evidence         *prometheus.CounterVec
}

// NewSidecar creates the sidecar's metrics, registers them on reg together
// with the Go and process collectors, and pre-creates every known label
// value so that dashboards show zeros instead of gaps. version is podfim's
// version for podfim_build_info.
func NewSidecar(reg prometheus.Registerer, version string) (*Sidecar, error) {
	m := newSidecar()
	if err := register(reg, slices.Concat(m.collectors(), []prometheus.Collector{newBuildInfo(version)}, runtimeCollectors())...); err != nil {
		return nil, err
	}
	return m, nil
}

// NewProtected creates the metrics of one container the node agent
// protects and registers them on reg, which labels them with the
// container's namespace, pod and container (prometheus.WrapRegistererWith):
// the same metrics as a sidecar's, without the process-wide ones
// (podfim_build_info, go_*, process_*) that the agent registers once.
// unregister takes them off reg again when the container is no longer
// protected, so that the series of deleted pods do not pile up.
func NewProtected(reg prometheus.Registerer) (m *Sidecar, unregister func(), err error) {
	m = newSidecar()
	cs := m.collectors()
	if err := register(reg, cs...); err != nil {
		for _, c := range cs {
			reg.Unregister(c)
		}
		return nil, nil, err
	}
	return m, func() {
		for _, c := range cs {
			reg.Unregister(c)
		}
	}, nil
}

// newSidecar creates the metrics of one protected container, unregistered.
func newSidecar() *Sidecar {
	return &Sidecar{
		scanMetrics:     newScanMetrics(),
		responseMetrics: newResponseMetrics(),
		kubeMetrics:     newKubeMetrics(),
		limitMetrics:    newLimitMetrics(),
		driftMetrics:    newDriftMetrics(),
		baselineInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podfim_baseline_info",
			Help: "The baseline in use: its digest, where it came from and whether it is signed (always 1).",
		}, []string{"digest", "source", "signed"}),
		baselineRefusals: newBaselineRefusals(),
		evidence:         newEvidenceMetric(),
	}
}

// collectors are the metrics of one protected container.
func (m *Sidecar) collectors() []prometheus.Collector {
	return slices.Concat(m.scanMetrics.collectors(), m.responseMetrics.collectors(), m.kubeMetrics.collectors(), m.limitMetrics.collectors(), m.driftMetrics.collectors(),
		[]prometheus.Collector{m.baselineInfo, m.baselineRefusals, m.evidence})
}

// newBuildInfo returns podfim_build_info, set.
func newBuildInfo(version string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "podfim_build_info",
		Help: "podfim's version and the Go version it was built with (always 1).",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, runtime.Version()).Set(1)
	return g
}

// runtimeCollectors are the Go runtime (go_*) and process (process_*)
// collectors every podfim server registers.
func runtimeCollectors() []prometheus.Collector {
	return []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
}

// register registers every collector of cs on reg and joins the errors: a
// metric registered twice names itself in the error.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	var errs []error
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("failed to register metrics: %w", err)
	}
	return nil
}

// Agent is the node agent's own metrics; each protected container's are a
// Sidecar of NewProtected.
type Agent struct {
	protected prometheus.Gauge
	gate      *prometheus.CounterVec
}

// NewAgent creates the agent's own metrics and registers them on reg with
// podfim_build_info and the Go and process collectors.
func NewAgent(reg prometheus.Registerer, version string) (*Agent, error) {
	m := &Agent{
		protected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_agent_protected_containers",
			Help: "Containers of this node's pods the agent protects now.",
		}),
		gate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_agent_gate_patches_total",
			Help: "Patches of the podfim.io/integrity readiness gate condition, by result (ok, error).",
		}, []string{"result"}),
	}
	for _, r := range []Result{ResultOK, ResultError} {
		m.gate.WithLabelValues(string(r))
	}
	cs := slices.Concat([]prometheus.Collector{m.protected, m.gate, newBuildInfo(version)}, runtimeCollectors())
	if err := register(reg, cs...); err != nil {
		return nil, err
	}
	return m, nil
}

// SetProtected sets the number of containers protected.
func (m *Agent) SetProtected(n int) {
	if m != nil {
		m.protected.Set(float64(n))
	}
}

// GatePatched counts one patch of a readiness gate condition.
func (m *Agent) GatePatched(err error) {
	if m != nil {
		m.gate.WithLabelValues(string(resultOf(err))).Inc()
	}
}

// SharedHashes registers the metrics of the agent's shared hashes, read
// from stats at each scrape: podfim_agent_shared_hashes_total{result} (a
// file's hash taken from another container's scan, or not) and
// podfim_agent_shared_hashes (held now).
func (m *Agent) SharedHashes(reg prometheus.Registerer, stats func() (hits, misses int64, held int)) error {
	cs := []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "podfim_agent_shared_hashes_total", Help: "Lookups of the node's shared file hashes: hit, a file not read because another container's scan hashed that version.",
			ConstLabels: prometheus.Labels{"result": "hit"},
		}, func() float64 { h, _, _ := stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "podfim_agent_shared_hashes_total", Help: "Lookups of the node's shared file hashes: hit, a file not read because another container's scan hashed that version.",
			ConstLabels: prometheus.Labels{"result": "miss"},
		}, func() float64 { _, mi, _ := stats(); return float64(mi) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "podfim_agent_shared_hashes", Help: "File hashes the node's shared cache holds (emptied every full interval).",
		}, func() float64 { _, _, n := stats(); return float64(n) }),
	}
	return register(reg, cs...)
}
