package metrics

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/podfim/podfim/internal/attr"
)

func newMetrics(t *testing.T) (*Sidecar, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewSidecar(reg, "v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// TestPromlint lints every metric the sidecar exposes, after each has a
// sample, so that histograms and info metrics are linted too.
func TestPromlint(t *testing.T) {
	m, reg := newMetrics(t)
	m.SetFilesMonitored(42)
	m.ScanDone(ScanFull, time.Unix(1700000000, 0), 3*time.Second, nil)
	m.Finding(attr.Changed, OriginImage)
	m.Action(ActionKill, ResultOK)
	m.SetViolationsOpen(1)
	m.TargetRestarted()
	m.Rescan(RescanOverflow)
	m.SetBaseline("sha256:0123", BaselineFile, true)
	m.ObserveResponseLatency(3 * time.Millisecond)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	var podfim int
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "podfim_") {
			podfim++
		}
	}
	if podfim != 21 {
		t.Errorf("%d podfim_ metric families, want 21", podfim)
	}
}

// TestPrecreated checks that dashboards see zeros for every known label
// value before anything happened.
func TestPrecreated(t *testing.T) {
	_, reg := newMetrics(t)
	for name, want := range map[string]int{
		"podfim_scans_total":            3*2 + 2, // incomplete: quick and full
		"podfim_check_incomplete_paths": 2,
		"podfim_scan_duration_seconds":  3,
		"podfim_findings_total":         3 * 4,
		"podfim_actions_total":          9 * 3,
		"podfim_kube_requests_total":    4 * 2,
		"podfim_kube_events_total":      4,
		"podfim_pod_quarantined":        1,
		"podfim_rescans_total":          6,
		"podfim_build_info":             1,
		"podfim_baseline_info":          0,
		"podfim_evidence_total":         7,
	} {
		n, err := testutil.GatherAndCount(reg, name)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
}

func TestScanDone(t *testing.T) {
	m, reg := newMetrics(t)
	end := time.Unix(1700000000, 500_000_000)
	m.ScanDone(ScanQuick, end, time.Millisecond, nil)
	m.ScanDone(ScanFull, end.Add(-time.Hour), time.Second, nil)
	m.ScanDone(ScanFull, end, time.Second, errors.New("target lost"))
	m.ScanDone(ScanFull, end, time.Second, fmt.Errorf("1 path: %w", ErrIncomplete))
	m.SetIncomplete(ScanFull, 1)
	if got := testutil.ToFloat64(m.scans.WithLabelValues("full", "incomplete")); got != 1 {
		t.Errorf("full incomplete %v", got)
	}
	if got := testutil.ToFloat64(m.incompletePaths.WithLabelValues("full")); got != 1 {
		t.Errorf("podfim_check_incomplete_paths{type=full} %v", got)
	}
	if got := testutil.ToFloat64(m.lastFullCheck); got != 1699996400.5 {
		t.Errorf("last full check %v: only a successful, complete full check counts", got)
	}
	if got := testutil.ToFloat64(m.scans.WithLabelValues("full", "error")); got != 1 {
		t.Errorf("full errors %v", got)
	}
	if got := testutil.ToFloat64(m.scans.WithLabelValues("quick", "ok")); got != 1 {
		t.Errorf("quick ok %v", got)
	}
	if n, _ := testutil.GatherAndCount(reg, "podfim_scan_duration_seconds"); n != 3 {
		t.Errorf("%d duration series", n)
	}
}

func TestSetBaselineReplaces(t *testing.T) {
	m, reg := newMetrics(t)
	m.SetBaseline("sha256:aaaa", BaselineFirstSight, false)
	m.SetBaseline("sha256:bbbb", BaselineFile, true)
	const want = `
# HELP podfim_baseline_info The baseline in use: its digest, where it came from and whether it is signed (always 1).
# TYPE podfim_baseline_info gauge
podfim_baseline_info{digest="sha256:bbbb",signed="true",source="file"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "podfim_baseline_info"); err != nil {
		t.Error(err)
	}
}

func TestRegisterTwice(t *testing.T) {
	_, reg := newMetrics(t)
	if _, err := NewSidecar(reg, "v0.1.0"); err == nil {
		t.Error("second NewSidecar on the same registry: no error")
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Sidecar
	m.SetFilesMonitored(1)
	m.ScanDone(ScanFull, time.Now(), time.Second, nil)
	m.SetIncomplete(ScanFull, 1)
	m.Finding(attr.Added, OriginContainer)
	m.Action(ActionLog, ResultOK)
	m.SetViolationsOpen(1)
	m.TargetRestarted()
	m.Rescan(RescanSchedule)
	m.SetBaseline("d", BaselineFile, false)
	m.ObserveResponseLatency(time.Second)
}

func TestKubeMetrics(t *testing.T) {
	m, reg := newMetrics(t)
	m.KubeRequest(KubePatchPod, nil)
	m.KubeRequest(KubePatchPod, errors.New("403"))
	m.KubeRequest(KubePatchPod, errors.New("403"))
	m.KubeEvent(KubeEventDropped)
	m.SetQuarantined(true)
	if got := testutil.ToFloat64(m.kubeRequests.WithLabelValues("patch_pod", "error")); got != 2 {
		t.Errorf("patch_pod errors %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.kubeRequests.WithLabelValues("patch_pod", "ok")); got != 1 {
		t.Errorf("patch_pod ok %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.kubeEvents.WithLabelValues("dropped")); got != 1 {
		t.Errorf("dropped %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.quarantined); got != 1 {
		t.Errorf("quarantined %v, want 1", got)
	}
	m.SetQuarantined(false)
	if got := testutil.ToFloat64(m.quarantined); got != 0 {
		t.Errorf("quarantined %v after release, want 0", got)
	}
	_ = reg
}

// TestTargetRestartedAndOverflow checks the counters that one call feeds
// twice: a restart is a rescan, an overflow of the queue is a rescan too.
func TestTargetRestartedAndOverflow(t *testing.T) {
	m, _ := newMetrics(t)
	m.TargetRestarted()
	m.Rescan(RescanOverflow)
	m.Rescan(RescanDirChange)
	for name, c := range map[string]prometheus.Collector{
		"restarts":                m.targetRestarts,
		"rescans{target_restart}": m.rescans.WithLabelValues("target_restart"),
		"overflows":               m.inotifyOverflows,
		"rescans{overflow}":       m.rescans.WithLabelValues("overflow"),
		"rescans{dir_change}":     m.rescans.WithLabelValues("dir_change"),
	} {
		if got := testutil.ToFloat64(c); got != 1 {
			t.Errorf("%s = %v, want 1", name, got)
		}
	}
}

// TestDocsComplete checks that docs/metrics.md names every podfim_ metric
// the sidecar and the webhook register and, in that metric's row, every
// label value this package knows in advance.
func TestDocsComplete(t *testing.T) {
	data, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if m := docRow.FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	reg := prometheus.NewRegistry()
	if _, err := NewWebhook(reg, "test"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := exported(t)
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, name := range names {
		if !strings.HasPrefix(name, "podfim_") || strings.HasSuffix(name, "_bucket") || strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_count") {
			continue
		}
		if _, ok := rows[name]; !ok {
			t.Errorf("docs/metrics.md has no row for %s", name)
		}
	}
	values := map[string][]string{
		"podfim_scans_total":           strs(ScanTypes()),
		"podfim_rescans_total":         strs(RescanReasons()),
		"podfim_findings_total":        append(strs(attr.Changes()), strs(Origins())...),
		"podfim_actions_total":         append(strs(Actions()), string(ResultOK), string(ResultError), string(ResultSkipped)),
		"podfim_kube_requests_total":   strs(KubeOperations()),
		"podfim_kube_events_total":     strs(KubeEventResults()),
		"podfim_baseline_info":         {string(BaselineFile), string(BaselineFirstSight)},
		"podfim_limit_overflows_total": strs(Limits()),
		"podfim_exec_drift_total":      strs(DriftReasons()),

		"podfim_webhook_admissions_total":       strs(Admissions()),
		"podfim_webhook_requests_refused_total": strs(Refusals()),
	}
	for name, vs := range values {
		for _, v := range vs {
			if !strings.Contains(rows[name], v) {
				t.Errorf("docs/metrics.md: the row of %s does not name the label value %q", name, v)
			}
		}
	}
}

var docRow = regexp.MustCompile("^\\| `(podfim_[a-z0-9_]+)` \\|")

func strs[S ~string](vs []S) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
