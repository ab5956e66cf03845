//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/testwait"
)

// requireNoDrift fails when the sidecar of d reported execution drift:
// every process these tests start in the app (podman exec of the image's
// busybox, the restarts after a kill, runc's exec helper) is the image's.
func requireNoDrift(t *testing.T, d *demoPod) {
	t.Helper()
	n := 0
	for _, l := range parseLog(d.sidecarLogs()) {
		if l.str("msg") == "execution drift" {
			n++
			t.Errorf("execution drift reported for a process started from the image: %s", l)
		}
	}
	t.Logf("execution drift findings for processes of the image: %d", n)
}

// waitDrift waits for the execution drift line about path (a prefix) with
// reason, and returns it.
func waitDrift(t *testing.T, d *demoPod, path, reason string) logLine {
	t.Helper()
	var found logLine
	testwait.Eventually(t, 10*time.Second, 100*time.Millisecond, "execution drift "+reason+" "+path, func() (bool, string) {
		text := d.sidecarLogs()
		for _, l := range parseLog(text) {
			if l.str("msg") == "execution drift" && strings.HasPrefix(l.str("path"), path) && l.str("reason") == reason {
				found = l
				return true, ""
			}
		}
		return false, lastLines(text, 5)
	})
	t.Logf("sidecar: %s", found)
	return found
}

// driftDelay is the time from the start of the process a finding names to
// the finding's log line: the start time is field 22 of /proc/PID/stat in
// the pod's pid namespace (clock ticks since boot, 10 ms), turned into wall
// time with the host's /proc/uptime (10 ms).
func driftDelay(t *testing.T, d *demoPod, l logLine) time.Duration {
	t.Helper()
	stat := d.p.must(30*time.Second, "exec", d.app, "/bin/busybox", "cat", fmt.Sprintf("/proc/%d/stat", int(l.num("pid"))))
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:])
	if i < 0 || len(f) < 20 {
		t.Fatalf("stat of pid %v: %q", l["pid"], stat)
	}
	ticks, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	secs, err := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	boot := now.Add(-time.Duration(secs * float64(time.Second)))
	started := boot.Add(time.Duration(ticks) * 10 * time.Millisecond) // USER_HZ 100
	logged, err := time.Parse(time.RFC3339Nano, l.str("time"))
	if err != nil {
		t.Fatal(err)
	}
	return logged.Sub(started)
}

// Drift (deploy/podman/pod.yaml, responding with log and metric only):
// a busybox copied to /tmp and run, a memfd exec, a replaced binary of the
// image and the app still running the file it replaced are each reported
// with their reason; nothing else is (the busybox shells and applets of
// the image that do the copying included).
func testPodmanDrift(t *testing.T, p *podmanEnv) {
	d := playPod(t, p, "pod.yaml", "podfim-demo", "--respond=log,metric,unready,restore", "--respond=log,metric")
	must := func(args ...string) string {
		t.Helper()
		return p.must(30*time.Second, args...)
	}
	asRoot := func(script string) {
		t.Helper()
		must("exec", "-u", "0", d.app, "/bin/busybox", "sh", "-c", "stat -c '%a %u:%g %n' / /tmp 2>&1; "+script)
	}
	// The image's / is 0555 and the app has no capabilities: root, its
	// owner, makes it writable first. Named busybox: busybox picks the
	// applet by the name it runs as.
	asRoot("chmod 755 / && mkdir -p /tmp && chmod 1777 /tmp && cp /bin/busybox /tmp/busybox")
	must("exec", "-d", d.app, "/tmp/busybox", "sleep", "120")
	l := waitDrift(t, d, "/tmp/busybox", "added")
	if l.str("kind") != "exec" || l.str("exe") != "/tmp/busybox" || l.str("cmdline") != "/tmp/busybox sleep 120" ||
		l.num("uid") != 65532 || l.num("ppid") != 0 {
		t.Errorf("added: %s; want exe /tmp/busybox, cmdline \"/tmp/busybox sleep 120\", uid 65532, ppid 0 (podman exec's parent is outside the pod)", l)
	}
	delays := []time.Duration{driftDelay(t, d, l)}
	seen := map[int]bool{int(l.num("pid")): true}
	for i := range 9 {
		arg := strconv.Itoa(121 + i) // a command line of its own to find its line
		must("exec", "-d", d.app, "/tmp/busybox", "sleep", arg)
		l := waitDriftCmd(t, d, "/tmp/busybox sleep "+arg, seen)
		seen[int(l.num("pid"))] = true
		delays = append(delays, driftDelay(t, d, l))
	}
	slices.Sort(delays)
	t.Logf("process start -> finding (10 runs of podman exec -d /tmp/busybox sleep, +-20 ms): min %s, median %s, max %s (target 200 ms)",
		delays[0].Round(time.Millisecond), delays[len(delays)/2].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond))
	if med := delays[len(delays)/2]; med > 200*time.Millisecond {
		t.Errorf("median delay from process start to finding %s, want at most 200 ms", med.Round(time.Millisecond))
	}

	// Fileless: test/sidecar's app copies itself into a memfd and runs it.
	helper := filepath.Join(t.TempDir(), "helper")
	build := exec.Command("go", "build", "-trimpath", "-o", helper, "./test/sidecar/testdata/app")
	build.Dir, build.Env = repoRoot(t), append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the memfd helper: %v\n%s", err, out)
	}
	must("cp", helper, d.app+":/tmp/helper")
	must("exec", "-d", d.app, "/tmp/helper", "memfd")
	waitDrift(t, d, "/memfd:payload", "memory")

	// A binary of the image replaced: a new process of it is "changed",
	// and the app's own process, which runs the file it replaced, "deleted".
	asRoot("cp /hello /tmp/h && chmod 755 /tmp/h && echo >> /tmp/h && mv /tmp/h /hello")
	must("exec", "-d", d.app, "/hello", "--dir=/www", "--addr=127.0.0.1:0")
	waitDrift(t, d, "/hello", "changed")
	waitDrift(t, d, "/hello", "deleted")

	// A mount namespace of its own (unprivileged: a user namespace too),
	// where anything can be bound over a path of the image: its sleep is
	// reported whatever it runs.
	must("exec", "-d", d.app, "/bin/busybox", "unshare", "-Urm", "/bin/busybox", "sh", "-c", "/bin/busybox sleep 120")
	waitDrift(t, d, "/bin/busybox", "namespace")

	requireOnlyDrift(t, d, map[string]string{"/tmp/busybox": "added", "/tmp/helper": "added", "/memfd:payload": "memory",
		"/hello": "changed deleted", "/bin/busybox": "namespace"})
	for _, r := range []string{"added", "memory", "changed", "deleted", "namespace"} {
		if v := sidecarMetric(t, 9090, `podfim_exec_drift_total{reason="`+r+`"}`); v < 1 {
			t.Errorf("podfim_exec_drift_total{reason=%q} = %v, want at least 1", r, v)
		}
	}
}

// waitDriftCmd waits for the execution drift line of the process whose
// command line is cmdline. A line with no command line (the process read
// inside its execve, past the sidecar's re-reads) of the same executable
// and a pid not in seen is taken too: it can only be that process.
func waitDriftCmd(t *testing.T, d *demoPod, cmdline string, seen map[int]bool) logLine {
	t.Helper()
	var found logLine
	exe, _, _ := strings.Cut(cmdline, " ")
	testwait.Eventually(t, 10*time.Second, 100*time.Millisecond, "execution drift of "+cmdline, func() (bool, string) {
		text := d.sidecarLogs()
		for _, l := range parseLog(text) {
			if l.str("msg") != "execution drift" {
				continue
			}
			if l.str("cmdline") == cmdline || (l.str("cmdline") == "" && l.str("exe") == exe && !seen[int(l.num("pid"))]) {
				found = l
				return true, ""
			}
		}
		return false, lastLines(text, 5)
	})
	return found
}

// requireOnlyDrift fails on an execution drift line about a file other
// than those given (path prefix -> the reasons allowed, space-separated):
// a false positive.
func requireOnlyDrift(t *testing.T, d *demoPod, allowed map[string]string) {
	t.Helper()
	n := 0
	for _, l := range parseLog(d.sidecarLogs()) {
		if l.str("msg") != "execution drift" {
			continue
		}
		n++
		ok := false
		for p, reasons := range allowed {
			ok = ok || strings.HasPrefix(l.str("path"), p) && slices.Contains(strings.Fields(reasons), l.str("reason"))
		}
		if !ok {
			t.Errorf("execution drift reported for a file or reason the test did not cause: %s", l)
		}
	}
	t.Logf("%d execution drift findings, all as expected (%v)", n, allowed)
}
