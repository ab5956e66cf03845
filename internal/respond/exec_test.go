package respond

import (
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/drift"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/target"
)

// procTarget is a fakeTarget that also kills single processes.
type procTarget struct {
	*fakeTarget
	killed []target.Process
	order  []string
}

func (p *procTarget) KillProcess(pr target.Process) (bool, error) {
	p.killed = append(p.killed, pr)
	p.order = append(p.order, "process")
	return true, nil
}

func (p *procTarget) Kill() error {
	p.order = append(p.order, "container")
	return p.fakeTarget.Kill()
}

func execFinding() drift.Finding {
	return drift.Finding{
		Process: target.Process{PID: 42, StartTime: 7, Exe: "/tmp/busybox"},
		Info:    target.Info{PPID: 9, UID: 1000, Cmdline: []string{"/tmp/busybox", "nc", "-e", "/bin/sh\n\x1b[2J"}},
		Path:    "/tmp/busybox",
		Reason:  drift.Added,
		Seen:    time.Date(2025, 1, 2, 3, 4, 4, 0, time.UTC),
	}
}

func TestHandleExecLogsCountsAndEvents(t *testing.T) {
	k := &fakeKube{}
	e := newKubeEnv(t, Plan{Actions: []Action{ActionLog, ActionMetric, ActionEvent, ActionUnready}}, k)
	if err := e.r.HandleExec(t.Context(), execFinding()); err != nil {
		t.Fatal(err)
	}
	lines := withMsg(e.logs.lines(t), "execution drift")
	if len(lines) != 1 {
		t.Fatalf("want one execution drift line, got %v", e.logs.String())
	}
	l := lines[0]
	if l["kind"] != "exec" || l["reason"] != "added" || l["pid"] != float64(42) || l["ppid"] != float64(9) ||
		l["uid"] != float64(1000) || l["exe"] != "/tmp/busybox" || l["path"] != "/tmp/busybox" {
		t.Errorf("log line %v", l)
	}
	if c := l["cmdline"].(string); c != `/tmp/busybox nc -e "/bin/sh\n\x1b[2J"` {
		t.Errorf("cmdline %q: the arguments must be escaped", c)
	}
	if got := e.metric(t, "podfim_exec_drift_total", "reason", "added"); got != 1 {
		t.Errorf("podfim_exec_drift_total{reason=added} = %v", got)
	}
	if len(k.events) != 1 || !strings.HasPrefix(k.events[0], "Warning ExecutionDrift: execution drift (added): pid 42 runs /tmp/busybox") {
		t.Errorf("events %q", k.events)
	}
	if ok, unready := e.ready(); ok || len(unready) != 1 || !strings.Contains(unready[0], "/tmp/busybox") {
		t.Errorf("ready = %v %v, want unready for the drifted file", ok, unready)
	}
}

func TestHandleExecKillsProcessFirst(t *testing.T) {
	e := newEnv(t, Plan{Actions: []Action{ActionKill}, KillLimit: 1})
	pt := &procTarget{fakeTarget: e.target}
	e.r.target = pt
	d := execFinding()
	if err := e.r.HandleExec(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if strings.Join(pt.order, ",") != "process,container" || pt.killed[0].PID != 42 || pt.killed[0].StartTime != 7 {
		t.Fatalf("kills %v of %v, want the process (pinned by its start time) then the container", pt.order, pt.killed)
	}
	// The container's kill is held off until it restarts; the next drifted
	// process is still killed.
	d.Process.PID = 43
	if err := e.r.HandleExec(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if strings.Join(pt.order, ",") != "process,container,process" {
		t.Errorf("kills %v", pt.order)
	}
	if got := e.action(t, ActionKill, metrics.ResultOK); got != 1 {
		t.Errorf("kill ok = %v", got)
	}
}
