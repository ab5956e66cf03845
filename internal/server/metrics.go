package server

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/podfim/podfim/internal/compare"
)

// ScanType is the value of the "type" label of scan metrics.
type ScanType string

// Scan types.
const (
	ScanQuick ScanType = "quick" // lstat only, hashes reused when size, mtime and ctime match
	ScanFull  ScanType = "full"  // every file hashed
	ScanEvent ScanType = "event" // the paths an inotify event named
)

// Result is the value of the "result" label.
type Result string

// Results.
const (
	ResultOK      Result = "ok"
	ResultError   Result = "error"
	ResultSkipped Result = "skipped" // the action did not apply (nothing kept to restore, kill limit reached...)
)

// RescanReason is the value of the "reason" label of podfim_rescans_total.
type RescanReason string

// Reasons for a full rescan: anything that could hide a change from the
// watch is answered with one, never with a silent gap.
const (
	RescanOverflow      RescanReason = "overflow"       // the inotify queue overflowed
	RescanWatchLost     RescanReason = "watch_lost"     // a watch was removed (IN_IGNORED, unmount)
	RescanWatchLimit    RescanReason = "watch_limit"    // no more watches could be added
	RescanSchedule      RescanReason = "schedule"       // the periodic full check
	RescanTargetRestart RescanReason = "target_restart" // the app container was started again
	RescanDirChange     RescanReason = "dir_change"     // a directory was created, removed or moved: its subtree is rechecked
)

// BaselineSource is the value of the "source" label of podfim_baseline_info.
type BaselineSource string

// Baseline sources.
const (
	BaselineFile       BaselineSource = "file"        // read from a file (a volume, or the sidecar image)
	BaselineFirstSight BaselineSource = "first-sight" // recorded from the container when first seen
)

// actionLabels are the values of the "action" label. They mirror the
// actions of package respond (which imports this package, so it cannot be
// the other way round); "event" and "delete" are pre-created so dashboards
// need no change when they arrive.
var actionLabels = [...]string{"log", "metric", "unready", "restore", "kill", "webhook", "event", "quarantine", "delete"}

// KubeOperation is the value of the "operation" label of
// podfim_kube_requests_total.
type KubeOperation string

// Requests to the Kubernetes API.
const (
	KubeGetPod     KubeOperation = "get_pod"     // read the pod (target by name, image ID, delete guard)
	KubePatchPod   KubeOperation = "patch_pod"   // set or remove the quarantine label
	KubeDeletePod  KubeOperation = "delete_pod"  // the delete action
	KubeWriteEvent KubeOperation = "write_event" // create or patch an Event
)

// KubeEventResult is the value of the "result" label of
// podfim_kube_events_total.
type KubeEventResult string

// What became of an Event.
const (
	KubeEventSent     KubeEventResult = "sent"     // written to the API server (created, or counted into one already written)
	KubeEventFiltered KubeEventResult = "filtered" // held back by client-go's spam filter (a storm)
	KubeEventDropped  KubeEventResult = "dropped"  // the queue was full: the oldest was dropped
	KubeEventFailed   KubeEventResult = "failed"   // every attempt to write it failed
)

// Metrics are podfim's Prometheus metrics. Create them with NewMetrics; a
// nil *Metrics is valid and records nothing, for code paths (the CLI's check)
// that run without a registry.
type Metrics struct {
	filesMonitored   prometheus.Gauge
	scans            *prometheus.CounterVec
	scanDuration     *prometheus.HistogramVec
	lastFullCheck    prometheus.Gauge
	findings         *prometheus.CounterVec
	actions          *prometheus.CounterVec
	violationsOpen   prometheus.Gauge
	targetRestarts   prometheus.Counter
	inotifyOverflows prometheus.Counter
	rescans          *prometheus.CounterVec
	baselineInfo     *prometheus.GaugeVec
	buildInfo        *prometheus.GaugeVec
	responseLatency  prometheus.Histogram
	kubeRequests     *prometheus.CounterVec
	kubeEvents       *prometheus.CounterVec
	quarantined      prometheus.Gauge
}

// NewMetrics creates podfim's metrics, registers them on reg together with
// the Go and process collectors, and pre-creates every known label value so
// that dashboards show zeros instead of gaps. version is podfim's version for
// podfim_build_info.
func NewMetrics(reg prometheus.Registerer, version string) (*Metrics, error) {
	m := &Metrics{
		filesMonitored: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_files_monitored",
			Help: "Number of file system objects of the target that the last completed scan recorded.",
		}),
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_scans_total",
			Help: "Scans of the target by type (quick, full, event) and result (ok, error).",
		}, []string{"type", "result"}),
		scanDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podfim_scan_duration_seconds",
			Help:    "Duration of scans of the target by type.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 120, 300, 600, 1800},
		}, []string{"type"}),
		lastFullCheck: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_last_full_check_timestamp_seconds",
			Help: "Unix time at which the last successful full check of the target completed (0: none yet).",
		}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_findings_total",
			Help: "Integrity findings by kind (added, removed, changed).",
		}, []string{"kind"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_actions_total",
			Help: "Responses to findings by action and result (ok, error, skipped).",
		}, []string{"action", "result"}),
		violationsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_violations_open",
			Help: "Number of paths with an integrity violation that has not been resolved.",
		}),
		targetRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podfim_target_restarts_total",
			Help: "Times the app container was seen starting again.",
		}),
		inotifyOverflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podfim_inotify_overflows_total",
			Help: "Times the inotify event queue overflowed (each one causes a full rescan).",
		}),
		rescans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_rescans_total",
			Help: "Whole-tree rescans by reason (overflow, watch_lost, watch_limit, schedule, target_restart, dir_change).",
		}, []string{"reason"}),
		baselineInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podfim_baseline_info",
			Help: "The baseline in use: its digest, where it came from and whether it is signed (always 1).",
		}, []string{"digest", "source", "signed"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podfim_build_info",
			Help: "podfim's version and the Go version it was built with (always 1).",
		}, []string{"version", "goversion"}),
		responseLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podfim_response_latency_seconds",
			Help:    "Time from the event that revealed a finding to the end of the response to it.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1},
		}),
		kubeRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_kube_requests_total",
			Help: "Requests to the Kubernetes API by operation (get_pod, patch_pod, delete_pod, write_event) and result (ok, error).",
		}, []string{"operation", "result"}),
		kubeEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_kube_events_total",
			Help: "Kubernetes Events by what became of them (sent, filtered by the spam filter, dropped from a full queue, failed).",
		}, []string{"result"}),
		quarantined: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_pod_quarantined",
			Help: "1 while the quarantine response wants the pod labelled podfim.io/quarantined=true, else 0.",
		}),
	}
	for _, op := range []KubeOperation{KubeGetPod, KubePatchPod, KubeDeletePod, KubeWriteEvent} {
		for _, r := range []Result{ResultOK, ResultError} {
			m.kubeRequests.WithLabelValues(string(op), string(r)).Add(0)
		}
	}
	for _, r := range []KubeEventResult{KubeEventSent, KubeEventFiltered, KubeEventDropped, KubeEventFailed} {
		m.kubeEvents.WithLabelValues(string(r)).Add(0)
	}
	for _, t := range []ScanType{ScanQuick, ScanFull, ScanEvent} {
		for _, r := range []Result{ResultOK, ResultError} {
			m.scans.WithLabelValues(string(t), string(r)).Add(0)
		}
		m.scanDuration.WithLabelValues(string(t))
	}
	for _, k := range []compare.Kind{compare.Added, compare.Removed, compare.Changed} {
		m.findings.WithLabelValues(string(k)).Add(0)
	}
	for _, a := range actionLabels {
		for _, r := range []Result{ResultOK, ResultError, ResultSkipped} {
			m.actions.WithLabelValues(a, string(r)).Add(0)
		}
	}
	for _, r := range []RescanReason{RescanOverflow, RescanWatchLost, RescanWatchLimit, RescanSchedule, RescanTargetRestart, RescanDirChange} {
		m.rescans.WithLabelValues(string(r)).Add(0)
	}
	m.buildInfo.WithLabelValues(version, runtime.Version()).Set(1)

	cs := []prometheus.Collector{
		m.filesMonitored, m.scans, m.scanDuration, m.lastFullCheck, m.findings, m.actions,
		m.violationsOpen, m.targetRestarts, m.inotifyOverflows, m.rescans, m.baselineInfo,
		m.buildInfo, m.responseLatency, m.kubeRequests, m.kubeEvents, m.quarantined,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	var errs []error
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("failed to register metrics: %w", err)
	}
	return m, nil
}

// SetFilesMonitored records how many objects the last completed scan recorded.
func (m *Metrics) SetFilesMonitored(n int) {
	if m == nil {
		return
	}
	m.filesMonitored.Set(float64(n))
}

// ScanDone records a scan of type t that took d and ended at end with err.
// A successful full scan also sets podfim_last_full_check_timestamp_seconds
// to end: the evidence that the comparison runs (PCI DSS 11.5.2).
func (m *Metrics) ScanDone(t ScanType, end time.Time, d time.Duration, err error) {
	if m == nil {
		return
	}
	r := ResultOK
	if err != nil {
		r = ResultError
	}
	m.scans.WithLabelValues(string(t), string(r)).Inc()
	m.scanDuration.WithLabelValues(string(t)).Observe(d.Seconds())
	if t == ScanFull && err == nil {
		m.lastFullCheck.Set(float64(end.UnixNano()) / 1e9)
	}
}

// Finding counts one finding of kind k.
func (m *Metrics) Finding(k compare.Kind) {
	if m == nil {
		return
	}
	m.findings.WithLabelValues(string(k)).Inc()
}

// Action counts one response: action is one of the actions of package
// respond ("log", "metric", "unready", "restore", "kill", "webhook", "event",
// "quarantine", "delete").
func (m *Metrics) Action(action string, r Result) {
	if m == nil {
		return
	}
	m.actions.WithLabelValues(action, string(r)).Inc()
}

// SetViolationsOpen records the number of open violations.
func (m *Metrics) SetViolationsOpen(n int) {
	if m == nil {
		return
	}
	m.violationsOpen.Set(float64(n))
}

// TargetRestarted counts a restart of the app container.
func (m *Metrics) TargetRestarted() {
	if m == nil {
		return
	}
	m.targetRestarts.Inc()
}

// InotifyOverflow counts an overflow of the inotify queue.
func (m *Metrics) InotifyOverflow() {
	if m == nil {
		return
	}
	m.inotifyOverflows.Inc()
}

// Rescan counts a full rescan for reason r.
func (m *Metrics) Rescan(r RescanReason) {
	if m == nil {
		return
	}
	m.rescans.WithLabelValues(string(r)).Inc()
}

// SetBaseline records the baseline in use, replacing the one recorded
// before, so podfim_baseline_info always has exactly one series.
func (m *Metrics) SetBaseline(digest string, source BaselineSource, signed bool) {
	if m == nil {
		return
	}
	m.baselineInfo.Reset()
	m.baselineInfo.WithLabelValues(digest, string(source), strconv.FormatBool(signed)).Set(1)
}

// ObserveResponseLatency records the time from the event that revealed a
// finding to the end of the response to it.
func (m *Metrics) ObserveResponseLatency(d time.Duration) {
	if m == nil {
		return
	}
	m.responseLatency.Observe(d.Seconds())
}

// KubeRequest counts one request to the Kubernetes API and its outcome.
func (m *Metrics) KubeRequest(op KubeOperation, err error) {
	if m == nil {
		return
	}
	r := ResultOK
	if err != nil {
		r = ResultError
	}
	m.kubeRequests.WithLabelValues(string(op), string(r)).Inc()
}

// KubeEvent counts what became of one Kubernetes Event.
func (m *Metrics) KubeEvent(r KubeEventResult) {
	if m == nil {
		return
	}
	m.kubeEvents.WithLabelValues(string(r)).Inc()
}

// SetQuarantined records whether the pod is meant to be quarantined.
func (m *Metrics) SetQuarantined(on bool) {
	if m == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	m.quarantined.Set(v)
}
