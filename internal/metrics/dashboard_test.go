package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The chart's Grafana dashboard and alerts may only query metrics the
// sidecar exports: a renamed metric must break this test, not a dashboard
// in production.
const (
	dashboardFile = "../../deploy/helm/podfim/dashboards/podfim.json"
	rulesFile     = "../../deploy/helm/podfim/templates/prometheusrule.yaml"
)

var metricName = regexp.MustCompile(`\bpodfim_[a-z0-9_]+`)

// exported returns the names of the metric families the sidecar registers,
// with the series names of histograms (_bucket, _sum, _count).
func exported(t *testing.T) []string {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewSidecar(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	// podfim_baseline_info has no series until a baseline is loaded.
	m.SetBaseline("00", BaselineFile, false)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		if mf.GetType().String() == "HISTOGRAM" {
			names = append(names, mf.GetName()+"_bucket", mf.GetName()+"_sum", mf.GetName()+"_count")
		}
	}
	return names
}

func TestDashboardMetrics(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Name  string
				Query any
			}
		}
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || len(d.Panels) < 10 {
		t.Fatalf("%s: uid %q, %d panels", dashboardFile, d.UID, len(d.Panels))
	}
	names := exported(t)
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			if !metricName.MatchString(tg.Expr) {
				t.Errorf("panel %q queries no podfim metric: %s", p.Title, tg.Expr)
			}
		}
	}
	for _, v := range d.Templating.List {
		if b, err := json.Marshal(v.Query); err == nil {
			exprs = append(exprs, string(b))
		}
	}
	used := checkNames(t, dashboardFile, strings.Join(exprs, "\n"), names)
	// The metrics an operator needs most are on the dashboard.
	for _, want := range []string{"podfim_violations_open", "podfim_last_full_check_timestamp_seconds", "podfim_findings_total",
		"podfim_actions_total", "podfim_kube_requests_total", "podfim_kube_events_total", "podfim_pod_quarantined"} {
		if !slices.Contains(used, want) {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

func TestAlertMetrics(t *testing.T) {
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	used := checkNames(t, rulesFile, string(data), exported(t))
	for _, want := range []string{"podfim_violations_open", "podfim_last_full_check_timestamp_seconds"} {
		if !slices.Contains(used, want) {
			t.Errorf("no alert uses %s", want)
		}
	}
}

// checkNames fails for every podfim_ name in text that names is missing,
// and returns the names used.
func checkNames(t *testing.T, file, text string, names []string) []string {
	t.Helper()
	var used []string
	for _, n := range metricName.FindAllString(text, -1) {
		if !slices.Contains(names, n) {
			t.Errorf("%s uses %s, which the sidecar does not export", file, n)
		}
		if !slices.Contains(used, n) {
			used = append(used, n)
		}
	}
	if len(used) == 0 {
		t.Errorf("%s names no podfim metric", file)
	}
	return used
}
