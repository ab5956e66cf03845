//go:build sidecarbench

package sidecar_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The execution drift part of the sidecar benchmark (docs/drift.md,
// docs/benchmarks.md): the sidecar's CPU while the app starts 50 short
// processes a second, the delay from starting a drifted process to its
// finding, and how many drifted processes of a given lifetime are seen.

const (
	driftRate     = 50  // short processes a second in the busy app
	driftSamples  = 200 // drifted processes timed
	escapeSamples = 40  // drifted processes per lifetime
)

// driftLog follows the sidecar's log for "execution drift" lines.
type driftLog struct {
	f    *os.File
	r    *bufio.Reader
	seen map[int]time.Time // pid -> the line's time
	n    int               // lines
}

func newDriftLog(t *testing.T, s *sidecar) *driftLog {
	t.Helper()
	f, err := os.Open(s.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &driftLog{f: f, r: bufio.NewReaderSize(f, 1<<20), seen: map[int]time.Time{}}
}

// read takes in what was logged since the last read.
func (d *driftLog) read() {
	for {
		line, err := d.r.ReadBytes('\n')
		if err != nil {
			// A partial line is read again whole next time.
			if len(line) > 0 {
				d.f.Seek(-int64(len(line)), 1)
				d.r.Reset(d.f)
			}
			return
		}
		var l logLine
		if json.Unmarshal(line, &l) != nil || l.str("msg") != "execution drift" {
			continue
		}
		d.n++
		if at, err := time.Parse(time.RFC3339Nano, l.str("time")); err == nil {
			d.seen[l.num("pid")] = at
		}
	}
}

// waitPid waits until the line of pid was logged or the deadline passed.
func (d *driftLog) waitPid(pid int, deadline time.Time) (time.Time, bool) {
	for {
		d.read()
		if at, ok := d.seen[pid]; ok {
			return at, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// startBusybox starts /tmp/busybox ARGS in the app (nsenter) and returns it
// with the time just before the start.
func startBusybox(a *app, args ...string) (*exec.Cmd, time.Time, error) {
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(a.pid), "-m", "-r", "-w", "--", "/tmp/busybox"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	at := time.Now()
	return cmd, at, cmd.Start()
}

func driftBench(t *testing.T, cfg benchConfig, rep *benchReport) {
	a := startApp(t, tmpImage(t))
	s := startBenchSidecar(t, cfg, benchSidecarOpts{})
	waitStarted(t, s, a)
	bb, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, a, "/tmp/busybox", bb)
	dl := newDriftLog(t, s)
	pid := s.cmd.Process.Pid

	// Busy: the app starts 50 processes of its image a second.
	spawner := inApp(t, a, "/app", "spawn", strconv.Itoa(driftRate))
	time.Sleep(2 * time.Second)
	progress("drift: %v with the app starting %d processes a second", cfg.treeIdle, driftRate)
	u0 := readUsage(t, pid)
	time.Sleep(cfg.treeIdle)
	u1 := readUsage(t, pid)
	spawner.Process.Kill()
	spawner.Wait()
	ticks, sched := cpuBetween(u0, u1)
	wall := u1.at.Sub(u0.at)
	mc, smc := millicores(ticks, wall), millicores(sched, wall)
	dl.read()
	rep.add(&rep.resource, "execution drift, the app starting %d processes a second of its image, %v:", driftRate, wall.Round(time.Second))
	rep.add(&rep.resource, "  CPU %.2f millicores [schedstat %.3f]; execution drift findings: %d (false positives)", mc, smc, dl.n)
	rep.add(&rep.targets, "%-62s %10d     = 0        %s", "exec drift false positives, 50 image processes/s", dl.n, verdict(dl.n == 0))

	// Detection delay of drifted processes that stay.
	var lat latencies
	missed := 0
	for i := 0; i < driftSamples; i++ {
		cmd, at, err := startBusybox(a, "sleep", "5")
		if err != nil {
			t.Fatal(err)
		}
		seen, ok := dl.waitPid(cmd.Process.Pid, at.Add(2*time.Second))
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if !ok {
			missed++
			continue
		}
		lat = append(lat, seen.Sub(at))
	}
	if len(lat) > 0 {
		rep.add(&rep.latency, "%s", latencyRow("exec drift: start -> finding logged", lat,
			fmt.Sprintf("nsenter + exec of a copied busybox in /tmp; %d missed", missed)))
		rep.add(&rep.targets, "%-62s %10s ms  < 100 ms   %s", "exec drift detection delay p99", ms(lat.pct(99)), verdict(lat.pct(99) < 100*time.Millisecond && missed == 0))
	}
	escapes(t, a, dl, rep)
}

// escapes starts drifted processes that live a given time and counts how
// many are reported.
func escapes(t *testing.T, a *app, dl *driftLog, rep *benchReport) {
	var row []string
	for _, life := range []time.Duration{0, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
		pids := make([]int, 0, escapeSamples)
		for i := 0; i < escapeSamples; i++ {
			cmd, _, err := startBusybox(a, "sleep", strconv.FormatFloat(life.Seconds(), 'f', 3, 64))
			if err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			pids = append(pids, cmd.Process.Pid)
			time.Sleep(7 * time.Millisecond) // not in step with the poll
		}
		time.Sleep(500 * time.Millisecond)
		dl.read()
		seen := 0
		for _, p := range pids {
			if _, ok := dl.seen[p]; ok {
				seen++
			}
		}
		row = append(row, fmt.Sprintf("%v: %d/%d", life, seen, len(pids)))
	}
	rep.add(&rep.resource, "execution drift, drifted processes seen by lifetime (busybox sleep N; the poll is every 50 ms): %s", strings.Join(row, ", "))
}
