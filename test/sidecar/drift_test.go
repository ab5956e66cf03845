package sidecar_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/testwait"
)

// inApp runs args as a process of the app container (nsenter into its
// mount namespace and root, as `kubectl exec` does) and returns it; it is
// killed when the test ends.
func inApp(t *testing.T, a *app, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(a.pid), "-m", "-r", "-w", "--"}, args...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("nsenter: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// putFile writes b into the app's root at path (mode 0755) through a new
// file renamed over it: a running file is replaced, not written.
func putFile(t *testing.T, a *app, path string, b []byte) {
	t.Helper()
	dst := fmt.Sprintf("/proc/%d/root%s", a.pid, path)
	writeFile(t, dst+".new", b, 0o755)
	if err := os.Rename(dst+".new", dst); err != nil {
		t.Fatal(err)
	}
}

// tmpPolicy is the tests' policy with /tmp ignored, as the built-in
// policy has it: a binary dropped there is no file finding, only drift.
const tmpPolicy = policy + `  - path: /tmp
    preset: Ignore
`

// tmpImage is the tests' image with a /tmp.
func tmpImage(t *testing.T) string {
	t.Helper()
	img := makeImage(t, page)
	mkdir(t, filepath.Join(img, "tmp"), 0o1777)
	return img
}

func waitVerified(t *testing.T, s *sidecar, a *app) {
	t.Helper()
	s.waitLog(t, startTimeout, "target found", func(l logLine) bool { return l.num("pid") == a.pid })
	testwait.Eventually(t, startTimeout, poll, "the first full check", func() (bool, string) {
		v, _ := s.metric(t, "podfim_last_full_check_timestamp_seconds")
		return v > 0, fmt.Sprint(v)
	})
}

// drifted waits for the execution drift line of pid.
func drifted(t *testing.T, s *sidecar, pid int) logLine {
	t.Helper()
	return s.waitLog(t, waitTimeout, "execution drift", func(l logLine) bool { return l.num("pid") == pid })
}

// TestExecDrift: a copied busybox, a memfd and a replaced binary are each
// reported with their reason, and no process started from the image is.
func TestExecDrift(t *testing.T) {
	a := startApp(t, tmpImage(t))
	s := startSidecar(t, sidecarOpts{state: filepath.Join(t.TempDir(), "state"), respond: "log,metric", policy: tmpPolicy})
	waitVerified(t, s, a)
	legit := inApp(t, a, "/app", "worker")

	bb, err := os.ReadFile("/usr/bin/busybox") // static: runs in the bare root
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, a, "/tmp/busybox", bb)
	start := time.Now()
	evil := inApp(t, a, "/tmp/busybox", "sleep", "1000")
	l := drifted(t, s, evil.Process.Pid)
	if l.str("reason") != "added" || l.str("path") != "/tmp/busybox" || l.str("exe") != "/tmp/busybox" || l.str("kind") != "exec" ||
		l.str("cmdline") != "/tmp/busybox sleep 1000" || l.num("uid") != 0 || l.num("ppid") != os.Getpid() {
		t.Errorf("added: %v", l)
	}
	if at, err := time.Parse(time.RFC3339Nano, l.str("time")); err == nil {
		t.Logf("added binary reported %s after it was started (make bench measures the p99)", at.Sub(start))
	}

	mem := inApp(t, a, "/app", "memfd")
	if l := drifted(t, s, mem.Process.Pid); l.str("reason") != "memory" || !strings.HasPrefix(l.str("path"), "/memfd:payload") {
		t.Errorf("memfd: %v", l)
	}

	// A binary of the image replaced by another: a new process of it is
	// "changed", and the processes still running the old file "deleted".
	self, err := os.ReadFile(fmt.Sprintf("/proc/%d/exe", a.pid))
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, a, "/app", append(self, "trailer"...))
	changed := inApp(t, a, "/app", "worker")
	if l := drifted(t, s, changed.Process.Pid); l.str("reason") != "changed" || l.str("path") != "/app" {
		t.Errorf("changed: %v", l)
	}
	if l := drifted(t, s, a.pid); l.str("reason") != "deleted" || l.str("path") != "/app" {
		t.Errorf("the app's main process after its binary was replaced: %v", l)
	}

	// No false positive: the processes started from the image before the
	// replacement were judged before the drifted ones that came after.
	for _, l := range s.logs("execution drift", nil) {
		if p := l.num("pid"); (p == a.worker || p == legit.Process.Pid) && l.str("reason") != "deleted" {
			t.Errorf("a process started from the image reported: %v", l)
		}
	}
	s.waitMetric(t, waitTimeout, 1, "podfim_exec_drift_total", "reason=added")
	s.waitMetric(t, waitTimeout, 1, "podfim_exec_drift_total", "reason=memory")
	s.waitMetric(t, waitTimeout, 1, "podfim_exec_drift_total", "reason=changed")
}

// TestExecDriftKill: the kill response kills the drifted process by pidfd,
// then the container.
func TestExecDriftKill(t *testing.T) {
	a := startApp(t, tmpImage(t))
	s := startSidecar(t, sidecarOpts{state: filepath.Join(t.TempDir(), "state"), respond: "log,kill", policy: tmpPolicy})
	waitVerified(t, s, a)
	bb, err := os.ReadFile("/usr/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, a, "/tmp/busybox", bb)
	evil := inApp(t, a, "/tmp/busybox", "sleep", "1000")
	pid := evil.Process.Pid
	k := s.waitLog(t, waitTimeout, "drifted process killed", func(l logLine) bool { return l.num("pid") == pid })
	if k.str("result") != "ok" || k.str("action") != "kill" {
		t.Errorf("kill line %v", k)
	}
	err = evil.Wait()
	if ws, ok := evil.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("the drifted process ended with %v, want SIGKILL", err)
	}
	s.waitLog(t, waitTimeout, "app container killed", nil)
	testwait.Eventually(t, waitTimeout, poll, "the app container killed", testwait.True(a.killedBySIGKILL))
}
