package sidecar_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/testwait"
)

// Issue 11 item 4. An app that creates 300,000 files OOM-killed a sidecar
// in 128 MiB: every file was an open violation, a log line and an Event.
// Now the sidecar holds at most 1,024 violations, counts the findings
// beyond (podfim_limit_overflows_total{limit="findings"}), stays unready
// while any is left out, and lives in a real 128 MiB memory cgroup; once
// the files are gone the pod turns ready again. Its peak memory is logged
// (docs/security.md). 50,000 files by default (the bound is the same, and
// 300,000 take minutes on a loaded machine); SIDECARTEST_FILES=300000 for
// the figure.
func TestManyFilesBounded(t *testing.T) {
	files := 50_000
	if n, err := strconv.Atoi(os.Getenv("SIDECARTEST_FILES")); err == nil && n > 0 {
		files = n
	}
	limit := int64(128 << 20)
	if raceEnabled {
		// The race detector multiplies a Go program's memory by 5-10; the
		// bound is checked without it (make bench-sidecar, go test without
		// -race), the behaviour with it.
		limit *= 8
	}
	cg := newMemcg(t, limit)
	a := startAppOn(t, makeImage(t, page), 1<<30, nil)
	s := startSidecar(t, sidecarOpts{state: filepath.Join(t.TempDir(), "state"), respond: "log,metric,unready", cgroup: cg.dir})
	waitStarted(t, s, a)

	data := fmt.Sprintf("/proc/%d/root/data", a.pid)
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range files {
		f, err := os.Create(filepath.Join(data, strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	t.Logf("%d files created in %v", files, time.Since(start).Round(time.Millisecond))
	testwait.Eventually(t, 6*waitTimeout, poll, "findings left out counted", func() (bool, string) {
		v, _ := s.metric(t, "podfim_limit_overflows_total", "limit=findings")
		return v >= float64(files-1024), fmt.Sprint(v)
	})
	s.waitReadyz(t, waitTimeout, http.StatusServiceUnavailable, "more integrity violations")
	if v, _ := s.metric(t, "podfim_violations_open"); v > 1024 {
		t.Errorf("podfim_violations_open = %v, want at most 1024", v)
	}
	paths := map[string]bool{}
	for _, l := range s.logs("integrity violation", nil) {
		paths[l.str("path")] = true
	}
	if len(paths) > 1024 {
		t.Errorf("violations about %d paths, want at most 1024", len(paths))
	}
	if l := s.logs("findings left out", nil); len(l) == 0 {
		t.Error("no log line about the findings left out")
	}

	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	s.waitReadyz(t, 6*waitTimeout, http.StatusOK, "ok")
	if !s.running() {
		t.Fatalf("the sidecar died: %v", s.cmd.ProcessState)
	}
	if n := cg.value(t, "memory.oom_control", "oom_kill"); n != 0 {
		t.Errorf("%d OOM kills in the sidecar's cgroup", n)
	}
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	hwm := ""
	for _, line := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			hwm = strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	t.Logf("%d files created by the app: peak memory of the sidecar's cgroup %.1f MiB (page cache included; limit %d MiB), sidecar VmHWM %s",
		files, float64(cg.value(t, "memory.max_usage_in_bytes", ""))/(1<<20), limit>>20, hwm)
}
