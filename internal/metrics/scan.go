package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ScanType is a kind of check of the target: the "type" label of
// podfim_scans_total and podfim_scan_duration_seconds.
type ScanType string

// Scan types.
const (
	ScanQuick ScanType = "quick" // lstat only, hashes reused when size, mtime and ctime match
	ScanFull  ScanType = "full"  // every file hashed
	ScanEvent ScanType = "event" // the paths an inotify event named
)

// ScanTypes lists every ScanType.
func ScanTypes() []ScanType { return []ScanType{ScanQuick, ScanFull, ScanEvent} }

// RescanReason is why a whole-tree check ran: the "reason" label of
// podfim_rescans_total. Anything that could hide a change from the watch is
// answered with one, never with a silent gap.
type RescanReason string

// Rescan reasons.
const (
	RescanOverflow      RescanReason = "overflow"       // the inotify queue overflowed, or a batch named too many paths
	RescanWatchLost     RescanReason = "watch_lost"     // a watch was removed (IN_IGNORED, unmount)
	RescanWatchLimit    RescanReason = "watch_limit"    // no more watches could be added
	RescanSchedule      RescanReason = "schedule"       // the periodic full check
	RescanTargetRestart RescanReason = "target_restart" // the app container was started again
	RescanDirChange     RescanReason = "dir_change"     // a directory was created, removed or moved: its subtree is rechecked
)

// RescanReasons lists every RescanReason.
func RescanReasons() []RescanReason {
	return []RescanReason{RescanOverflow, RescanWatchLost, RescanWatchLimit, RescanSchedule, RescanTargetRestart, RescanDirChange}
}

// scanMetrics are the metrics of the detection loop.
type scanMetrics struct {
	filesMonitored   prometheus.Gauge
	scans            *prometheus.CounterVec
	scanDuration     *prometheus.HistogramVec
	lastFullCheck    prometheus.Gauge
	targetRestarts   prometheus.Counter
	inotifyOverflows prometheus.Counter
	rescans          *prometheus.CounterVec
	incompletePaths  *prometheus.GaugeVec
}

func newScanMetrics() scanMetrics {
	m := scanMetrics{
		filesMonitored: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podfim_files_monitored",
			Help: "Number of file system objects of the target that the last completed scan recorded.",
		}),
		scans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podfim_scans_total",
			Help: "Scans of the target by type (quick, full, event) and result (ok, error, incomplete).",
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
		incompletePaths: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podfim_check_incomplete_paths",
			Help: "Paths the last whole-tree check of each type (quick, full) could not compare (unreadable, not hashed, not descended); 0 when it compared everything.",
		}, []string{"type"}),
	}
	for _, t := range ScanTypes() {
		for _, r := range []Result{ResultOK, ResultError, ResultIncomplete} {
			if r == ResultIncomplete && t == ScanEvent {
				continue
			}
			m.scans.WithLabelValues(string(t), string(r)).Add(0)
		}
		m.scanDuration.WithLabelValues(string(t))
		if t != ScanEvent {
			m.incompletePaths.WithLabelValues(string(t))
		}
	}
	for _, r := range RescanReasons() {
		m.rescans.WithLabelValues(string(r)).Add(0)
	}
	return m
}

func (m *scanMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.filesMonitored, m.scans, m.scanDuration, m.lastFullCheck,
		m.targetRestarts, m.inotifyOverflows, m.rescans, m.incompletePaths}
}

// SetFilesMonitored records how many objects the last completed scan recorded.
func (m *Sidecar) SetFilesMonitored(n int) {
	if m == nil {
		return
	}
	m.filesMonitored.Set(float64(n))
}

// ScanDone records a scan of type t that took d and ended at end with err
// (ErrIncomplete: it ran to its end but did not compare every path). A
// successful full scan also sets podfim_last_full_check_timestamp_seconds
// to end: the evidence that the comparison runs (PCI DSS 11.5.2); an
// incomplete one does not.
func (m *Sidecar) ScanDone(t ScanType, end time.Time, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.scans.WithLabelValues(string(t), string(resultOf(err))).Inc()
	m.scanDuration.WithLabelValues(string(t)).Observe(d.Seconds())
	if t == ScanFull && err == nil {
		m.lastFullCheck.Set(float64(end.UnixNano()) / 1e9)
	}
}

// SetIncomplete records how many paths the last whole-tree check of type t
// could not compare (0: it compared everything).
func (m *Sidecar) SetIncomplete(t ScanType, n int) {
	if m == nil {
		return
	}
	m.incompletePaths.WithLabelValues(string(t)).Set(float64(n))
}

// TargetRestarted counts a restart of the app container, and the rescan it
// causes.
func (m *Sidecar) TargetRestarted() {
	if m == nil {
		return
	}
	m.targetRestarts.Inc()
	m.rescans.WithLabelValues(string(RescanTargetRestart)).Inc()
}

// Rescan counts a whole-tree rescan for reason r; an overflow is counted in
// podfim_inotify_overflows_total too.
func (m *Sidecar) Rescan(r RescanReason) {
	if m == nil {
		return
	}
	if r == RescanOverflow {
		m.inotifyOverflows.Inc()
	}
	m.rescans.WithLabelValues(string(r)).Inc()
}
