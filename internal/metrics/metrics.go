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
	buildInfo        *prometheus.GaugeVec
	evidence         *prometheus.CounterVec
}

// NewSidecar creates the sidecar's metrics, registers them on reg together
// with the Go and process collectors, and pre-creates every known label
// value so that dashboards show zeros instead of gaps. version is podfim's
// version for podfim_build_info.
func NewSidecar(reg prometheus.Registerer, version string) (*Sidecar, error) {
	m := &Sidecar{
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
		buildInfo:        newBuildInfo(version),
		evidence:         newEvidenceMetric(),
	}
	cs := slices.Concat(m.scanMetrics.collectors(), m.responseMetrics.collectors(), m.kubeMetrics.collectors(), m.limitMetrics.collectors(), m.driftMetrics.collectors(),
		[]prometheus.Collector{m.baselineInfo, m.baselineRefusals, m.buildInfo, m.evidence}, runtimeCollectors())
	if err := register(reg, cs...); err != nil {
		return nil, err
	}
	return m, nil
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
