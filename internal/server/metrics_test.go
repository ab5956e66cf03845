package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/podfim/podfim/internal/compare"
)

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, "v0.1.0")
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
	m.Finding(compare.Changed)
	m.Action("kill", ResultOK)
	m.SetViolationsOpen(1)
	m.TargetRestarted()
	m.InotifyOverflow()
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
	if podfim != 16 {
		t.Errorf("%d podfim_ metric families, want 16", podfim)
	}
}

// TestPrecreated checks that dashboards see zeros for every known label
// value before anything happened.
func TestPrecreated(t *testing.T) {
	_, reg := newMetrics(t)
	for name, want := range map[string]int{
		"podfim_scans_total":           3 * 2,
		"podfim_scan_duration_seconds": 3,
		"podfim_findings_total":        3,
		"podfim_actions_total":         9 * 3,
		"podfim_kube_requests_total":   4 * 2,
		"podfim_kube_events_total":     4,
		"podfim_pod_quarantined":       1,
		"podfim_rescans_total":         6,
		"podfim_build_info":            1,
		"podfim_baseline_info":         0,
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
	if got := testutil.ToFloat64(m.lastFullCheck); got != 1699996400.5 {
		t.Errorf("last full check %v: only a successful full check counts", got)
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
	if _, err := NewMetrics(reg, "v0.1.0"); err == nil {
		t.Error("second NewMetrics on the same registry: no error")
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.SetFilesMonitored(1)
	m.ScanDone(ScanFull, time.Now(), time.Second, nil)
	m.Finding(compare.Added)
	m.Action("log", ResultOK)
	m.SetViolationsOpen(1)
	m.TargetRestarted()
	m.InotifyOverflow()
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
