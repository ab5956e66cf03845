package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/kube"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/origin"
	"github.com/podfim/podfim/internal/respond"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/watch"
)

// msgReporter records the Events the sidecar posts with their messages.
type msgReporter struct {
	fakeReporter
	mu   sync.Mutex
	msgs []string
}

func (r *msgReporter) Event(typ, reason, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, typ+" "+reason+" "+msg)
}

// An incomplete whole-tree check is logged, counted and posted as a Warning
// Event naming its paths (quoted) and how many there were; it is counted as
// result "incomplete", not ok, and a complete check sets the gauge back to
// 0. Before, the sidecar ignored the scan's warnings.
func TestIncompleteCheckAlerts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.NewSidecar(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	rep := &msgReporter{}
	s := &sidecar{
		cfg:     Config{Kube: rep, Plan: respond.Plan{Actions: []respond.Action{respond.ActionEvent}}},
		log:     slog.New(slog.NewJSONHandler(&logs, nil)),
		metrics: m,
	}
	k := &sink{s: s}
	sample := []scan.Warning{
		{Path: "/etc/shadow", Op: "open", Err: errors.New("permission denied")},
		{Path: "/a\nb", Op: "readdir", Err: errors.New("permission denied")},
		{Path: "/c", Op: "open", Err: errors.New("permission denied")},
		{Path: "/d", Op: "open", Err: errors.New("permission denied")},
	}
	k.Incomplete(metrics.ScanQuick, 5, sample)
	k.Scanned(metrics.ScanQuick, nil, time.Second, 10)

	rep.mu.Lock()
	msgs := rep.msgs
	rep.mu.Unlock()
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0], "Warning "+kube.ReasonCheckIncomplete+" ") {
		t.Fatalf("Events %q, want one Warning %s", msgs, kube.ReasonCheckIncomplete)
	}
	if want := `quick check could not compare 5 path(s): "/etc/shadow", "/a\nb", "/c" and 2 more`; !strings.Contains(msgs[0], want) {
		t.Errorf("Event message %q, want it to contain %q", msgs[0], want)
	}
	if !strings.Contains(logs.String(), `"msg":"check incomplete: some paths could not be compared"`) || !strings.Contains(logs.String(), `"count":5`) {
		t.Errorf("log %s: no check incomplete line with the count", logs.String())
	}
	if got := gathered(t, reg, "podfim_check_incomplete_paths", "type=quick"); got != 5 {
		t.Errorf("podfim_check_incomplete_paths{type=quick} = %v, want 5", got)
	}
	if got := gathered(t, reg, "podfim_scans_total", "type=quick", "result=incomplete"); got != 1 {
		t.Errorf("podfim_scans_total{type=quick,result=incomplete} = %v, want 1", got)
	}

	k.Incomplete(metrics.ScanQuick, 0, nil)
	k.Scanned(metrics.ScanQuick, nil, time.Second, 10)
	if got := gathered(t, reg, "podfim_check_incomplete_paths", "type=quick"); got != 0 {
		t.Errorf("after a complete check podfim_check_incomplete_paths{type=quick} = %v, want 0", got)
	}
	if got := gathered(t, reg, "podfim_scans_total", "type=quick", "result=ok"); got != 1 {
		t.Errorf("podfim_scans_total{type=quick,result=ok} = %v, want 1", got)
	}
	if len(rep.msgs) != 1 {
		t.Errorf("a complete check posted an Event: %q", rep.msgs)
	}
}

// gathered returns the value of the series of name with the labels
// (name=value), or -1 when there is none.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, mt := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range mt.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for _, l := range labels {
				k, v, _ := strings.Cut(l, "=")
				if have[k] != v {
					continue series
				}
			}
			if mt.GetGauge() != nil {
				return mt.GetGauge().GetValue()
			}
			return mt.GetCounter().GetValue()
		}
	}
	return -1
}

// A mount table over its bounds (the app mounting without end) is counted
// in podfim_limit_overflows_total{limit="mounts"}, and the container is
// compared without one: nothing is dropped as the runtime's, and a
// finding under the would-be mount point is not a volume's. A table in
// bounds is used.
func TestMountTableOverflowCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.NewSidecar(reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	s := &sidecar{log: slog.New(slog.DiscardHandler), metrics: m}
	image := &baseline.Image{Layers: []string{"sha256:a"}}
	tol, c := s.mountTolerance(nil, fmt.Errorf("failed to read /proc/7/mountinfo: %w", origin.ErrTooLarge), image)
	if tol != nil {
		t.Errorf("tolerated %v without a mount table", tol)
	}
	if o, _, ok := c.Classify("/etc/hosts", attr.Added, nil, nil); !ok || o.Kind != origin.Container {
		t.Errorf("without a mount table /etc/hosts added: %+v kept %v; want reported, origin container", o, ok)
	}
	if v := gathered(t, reg, "podfim_limit_overflows_total", "limit="+string(metrics.LimitMounts)); v != 1 {
		t.Errorf("mounts overflow counted %v, want 1", v)
	}
	s.mountTolerance(nil, errors.New("permission denied"), image)
	tol, c = s.mountTolerance(origin.NewMounts([]string{"/etc/hosts"}), nil, image)
	if _, _, ok := c.Classify("/etc/hosts", attr.Added, nil, nil); ok || tol["/etc"] != watch.Tolerated {
		t.Errorf("with the table: /etc/hosts kept %v, /etc tolerated %v", ok, tol["/etc"])
	}
	if v := gathered(t, reg, "podfim_limit_overflows_total", "limit="+string(metrics.LimitMounts)); v != 1 {
		t.Errorf("mounts overflow counted %v after other outcomes, want 1", v)
	}
}
