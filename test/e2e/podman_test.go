//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/testwait"
)

// The demo Pod on podman (`podman kube play`, deploy/podman/): the seed's
// walkthrough, step by step. The page and the sidecar listen on the host's
// loopback (hostNetwork), so the subtests run one after the other.
const (
	pageURL   = "http://127.0.0.1:8080/"
	readyzURL = "http://127.0.0.1:9090/readyz"
	hello     = "Hello, world!\n"
	hacked    = "Hacked\n"
	page      = "/www/index.html"
	killLimit = 3 // the sidecar's default --kill-limit
	tamperCmd = "echo Hacked > /www/index.html"
)

// podmanEnv runs podman with the repository's containers.conf (see
// build/containers.conf and DESIGN.md: runc, cgroupfs, file events,
// ulimits). Every command logs at level error only.
type podmanEnv struct {
	t   *testing.T
	env []string
}

func newPodman(t *testing.T) *podmanEnv {
	t.Helper()
	requireRoot(t)
	aptInstall(t, map[string]func() bool{
		"podman":         onPath("podman"),
		"runc":           onPath("runc"),
		"busybox-static": staticBusybox,
	})
	conf := filepath.Join(repoRoot(t), "build", "containers.conf")
	p := &podmanEnv{t: t, env: []string{"CONTAINERS_CONF=" + conf, "ENGINE=podman"}}
	v := p.must(30*time.Second, "--version")
	t.Logf("%s, CONTAINERS_CONF=%s", strings.TrimSpace(v), conf)
	return p
}

// in is p for the (sub)test t: must and the helpers built on it fail t,
// not the test that made p (a subtest calling FailNow on its parent would
// abort it instead of failing).
func (p *podmanEnv) in(t *testing.T) *podmanEnv { return &podmanEnv{t: t, env: p.env} }

func (p *podmanEnv) run(timeout time.Duration, args ...string) cmdResult {
	p.t.Helper()
	return runCmd(p.t, timeout, p.env, "", "podman", append([]string{"--log-level=error"}, args...)...)
}

func (p *podmanEnv) must(timeout time.Duration, args ...string) string {
	p.t.Helper()
	r := p.run(timeout, args...)
	if r.Err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), r.Err, r.Out())
	}
	return r.Stdout
}

// logs is everything a container wrote (the sidecar logs on stderr).
func (p *podmanEnv) logs(container string) string {
	p.t.Helper()
	r := p.run(30*time.Second, "logs", container)
	return r.Stdout + r.Stderr
}

// inspect returns a Go template field of a container.
func (p *podmanEnv) inspect(container, format string) string {
	p.t.Helper()
	return strings.TrimSpace(p.must(30*time.Second, "inspect", "--format", format, container))
}

func (p *podmanEnv) restarts(container string) int {
	p.t.Helper()
	s := p.inspect(container, "{{.RestartCount}}")
	n, err := strconv.Atoi(s)
	if err != nil {
		p.t.Fatalf("restart count of %s: %q", container, s)
	}
	return n
}

// demoPod is one kube-played copy of a Pod YAML of deploy/podman.
type demoPod struct {
	p                 *podmanEnv
	name              string
	app, sidecar      string
	yaml              string
	volume            string
	started, tampered time.Time
}

// playPod plays deploy/podman/<file> under a fresh pod name (with its own
// state volume: podman 4.3 makes an emptyDir a named volume, shared by
// every pod that names it alike), waits for the page and for the sidecar's
// first verification, and removes everything in t.Cleanup.
func playPod(t *testing.T, p *podmanEnv, file, yamlName string, replace ...string) *demoPod {
	t.Helper()
	requireFreePort(t, "127.0.0.1:8080")
	requireFreePort(t, "127.0.0.1:9090")
	name := uniqueName("e2e-" + strings.TrimSuffix(file, ".yaml"))
	d := &demoPod{p: p, name: name, app: name + "-app", sidecar: name + "-podfim", volume: name + "-state"}
	d.yaml = renderPod(t, "deploy/podman/"+file, append([]string{
		"  name: " + yamlName + "\n", "  name: " + name + "\n",
		"name: podfim-state", "name: " + d.volume}, replace...)...)
	t.Cleanup(func() { d.remove(t) })
	start := time.Now()
	r := p.run(2*time.Minute, "kube", "play", d.yaml)
	if r.Err != nil {
		t.Fatalf("podman kube play: %v\n%s", r.Err, r.Out())
	}
	t.Logf("podman kube play %s: pod %s (%s)", file, name, r.Took.Round(time.Millisecond))
	waitBody(t, pageURL, hello, 60*time.Second)
	t.Logf("GET %s = %q %s after kube play", pageURL, hello, time.Since(start).Round(time.Millisecond))
	_, took := waitStatus(t, readyzURL, 200, 60*time.Second)
	t.Logf("GET %s = 200 (first full check done) %s after the page", readyzURL, took.Round(time.Millisecond))
	d.started = time.Now()
	return d
}

// remove takes the pod down with its volume; it fails the test when
// something is left behind. On failure it first shows the logs.
func (d *demoPod) remove(t *testing.T) {
	p := d.p
	if t.Failed() {
		t.Logf("podman ps -a --pod:\n%s", p.run(30*time.Second, "ps", "-a", "--pod").Out())
		t.Logf("logs of %s:\n%s", d.app, p.logs(d.app))
		t.Logf("logs of %s:\n%s", d.sidecar, p.logs(d.sidecar))
	}
	r := p.run(2*time.Minute, "kube", "down", d.yaml)
	if r.Err != nil {
		t.Errorf("podman kube down: %v\n%s", r.Err, r.Out())
	}
	t.Logf("podman kube down %s (%s)", d.name, r.Took.Round(time.Millisecond))
	p.run(time.Minute, "pod", "rm", "--force", "--ignore", d.name)
	if r := p.run(time.Minute, "volume", "exists", d.volume); r.Err == nil {
		p.run(time.Minute, "volume", "rm", "--force", d.volume)
		t.Logf("volume %s was left by kube down; removed it", d.volume)
	}
	left := p.run(30*time.Second, "ps", "-a", "--filter", "name="+d.name, "--format", "{{.Names}}").Stdout
	if strings.TrimSpace(left) != "" {
		t.Errorf("containers left behind: %s", left)
	}
}

// tamper edits the page inside the app container the way an attacker with
// a shell would.
func (d *demoPod) tamper(t *testing.T) {
	t.Helper()
	d.tampered = time.Now()
	r := d.p.run(30*time.Second, "exec", d.app, "/bin/busybox", "sh", "-c", tamperCmd)
	if r.Err != nil {
		// With the kill response the sidecar may kill the container within
		// milliseconds of the write, before podman has recorded the exec
		// session's end ("exec died event ... not found"). The caller's
		// requireViolation proves the write happened; anything else fails.
		if !strings.Contains(r.Stderr, "exec died event") && !strings.Contains(r.Stderr, "container state improper") {
			t.Fatalf("podman exec %s: %v\n%s", d.app, r.Err, r.Stderr)
		}
		t.Logf("podman exec lost its session to the kill (%v): %s", r.Err, strings.TrimSpace(r.Stderr))
	}
	t.Logf("podman exec %s /bin/busybox sh -c %q", d.app, tamperCmd)
}

func (d *demoPod) sidecarLogs() string { return d.p.logs(d.sidecar) }

// requireViolation waits for the sidecar's finding on the page.
func (d *demoPod) requireViolation(t *testing.T) logLine {
	t.Helper()
	l := waitLog(t, d.sidecarLogs, "integrity violation", page, 10*time.Second)
	if l.str("kind") != "changed" || !slices.Contains(l.strings("attributes"), "sha256") {
		t.Fatalf("finding = %s; want kind changed with sha256 among the attributes", l)
	}
	if l.str("level") != "WARN" || l.str("new_sha256") == l.str("old_sha256") {
		t.Fatalf("finding = %s", l)
	}
	t.Logf("sidecar: %q path %s kind %s attributes %v", l.str("msg"), l.str("path"), l.str("kind"), l.strings("attributes"))
	// Detection latency: from the write (the file's new mtime) to the log line.
	if nw, ok := l["new"].(map[string]any); ok {
		m, _ := nw["mtime"].(string)
		written, err1 := time.Parse(time.RFC3339Nano, m)
		logged, err2 := time.Parse(time.RFC3339Nano, l.str("time"))
		if err1 == nil && err2 == nil {
			t.Logf("sidecar: write -> finding in %s", logged.Sub(written).Round(time.Microsecond))
		}
	}
	return l
}

func TestPodman(t *testing.T) {
	p := newPodman(t)
	buildImages(t, p.env)
	t.Run("Version", func(t *testing.T) { testPodmanImageVersion(t, p.in(t)) })
	t.Run("Restore", func(t *testing.T) { testPodmanRestore(t, p.in(t)) })
	t.Run("Kill", func(t *testing.T) { testPodmanKill(t, p.in(t)) })
	t.Run("Drift", func(t *testing.T) { testPodmanDrift(t, p.in(t)) })
}

// Version: `make images` stamps scripts/version.sh's version into the
// podfim binary and the OCI labels of both images (docs/install.md).
func testPodmanImageVersion(t *testing.T, p *podmanEnv) {
	root := repoRoot(t)
	want := map[string]string{}
	for key, arg := range map[string]string{"version": "version", "revision": "commit", "created": "date"} {
		r := runCmd(t, time.Minute, nil, root, "scripts/version.sh", arg)
		if r.Err != nil {
			t.Fatalf("scripts/version.sh %s: %v\n%s", arg, r.Err, r.Out())
		}
		want["org.opencontainers.image."+key] = strings.TrimSpace(r.Stdout)
	}
	want["org.opencontainers.image.source"] = "https://github.com/podfim/podfim"
	for _, img := range []string{"localhost/podfim:dev", "localhost/hello:dev"} {
		var labels map[string]string
		if err := json.Unmarshal([]byte(p.must(30*time.Second, "image", "inspect", "--format", "{{json .Labels}}", img)), &labels); err != nil {
			t.Fatalf("%s labels: %v", img, err)
		}
		for k, v := range want {
			if labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", img, k, labels[k], v)
			}
		}
	}
	var v struct{ Version, Commit, Date string }
	out := p.must(time.Minute, "run", "--rm", "localhost/podfim:dev", "version", "--format", "json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("podfim version --format json in the image: %v\n%s", err, out)
	}
	if v.Version != want["org.opencontainers.image.version"] || v.Commit != want["org.opencontainers.image.revision"] ||
		v.Date != want["org.opencontainers.image.created"] {
		t.Errorf("podfim version in the image = %+v, want the labels %v", v, want)
	}
	t.Logf("localhost/podfim:dev: %s (commit %s, %s)", v.Version, v.Commit, v.Date)
}

// Restore (deploy/podman/pod.yaml): the page is written back at once; the
// app is not restarted.
func testPodmanRestore(t *testing.T, p *podmanEnv) {
	d := playPod(t, p, "pod.yaml", "podfim-demo")
	before := p.restarts(d.app)

	d.tamper(t)
	waitBody(t, pageURL, hello, 10*time.Second)
	t.Logf("GET %s = %q again %s after the tamper command returned", pageURL, hello, time.Since(d.tampered).Round(time.Millisecond))
	v := d.requireViolation(t)
	l := waitLog(t, d.sidecarLogs, "file restored", page, 10*time.Second)
	if l.str("result") != "ok" {
		t.Fatalf("restore: %s", l)
	}
	logGap(t, "finding -> file restored", v, l)

	// The file is the seed's again: content, mode and owner.
	st := strings.TrimSpace(p.must(30*time.Second, "exec", d.app, "/bin/busybox", "stat", "-c", "%a %u %g %s", page))
	if st != "600 65532 65532 14" {
		t.Fatalf("restored page: mode uid gid size = %q, want \"600 65532 65532 14\"", st)
	}
	if n := p.restarts(d.app); n != before {
		t.Fatalf("restart count %d -> %d: restore must not restart the app", before, n)
	}
	if s := p.inspect(d.app, "{{.State.Running}}"); s != "true" {
		t.Fatalf("app running = %s", s)
	}
	// The violation is resolved and the pod is ready again: the restore is
	// re-verified, and the copy-up of /www by the write (new ctime of / and
	// /www, new nlink of /www on overlayfs) is accepted for the ancestors
	// of the restored file, nothing else.
	body, _ := waitStatus(t, readyzURL, 200, 10*time.Second)
	code := 200
	t.Logf("GET /readyz after restore = %d %q", code, strings.TrimSpace(body))
	requireNoDrift(t, d)
	checkPodmanEvidence(t, p, d)
}

// checkPodmanEvidence (issue 12, evidence before repair): after restore
// rewrote the page, the sidecar still holds what the tamper wrote and a
// diff, read back with `podfim evidence` through podman exec, as kubectl
// exec would.
func checkPodmanEvidence(t *testing.T, p *podmanEnv, d *demoPod) {
	t.Helper()
	// The write may be seen twice (truncated, then written): the finding
	// of the written page is the one that holds "Hacked".
	var v logLine
	for _, l := range matching(parseLog(d.sidecarLogs()), "integrity violation", page) {
		if strings.Contains(l.str("diff_excerpt"), "+Hacked") {
			v = l
			break
		}
	}
	id := v.str("evidence_id")
	if id == "" || v.str("evidence_result") != "kept" {
		t.Fatalf("no finding names kept evidence with a diff holding +Hacked:\n%s", lastLines(d.sidecarLogs(), 10))
	}
	// In the subtest's goroutine: p.must would fail TestPodman's t.
	evidence := func(args ...string) string {
		t.Helper()
		args = append([]string{"--log-level=error", "exec", d.sidecar, "/podfim", "evidence", "show", "--state-dir", "/var/lib/podfim"}, args...)
		r := runCmd(t, 30*time.Second, p.env, "", "podman", args...)
		if r.Err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), r.Err, r.Out())
		}
		return r.Stdout
	}
	content := evidence("--content", id)
	if content != hacked {
		t.Errorf("evidence content %q, want %q", content, hacked)
	}
	show := evidence(id)
	for _, want := range []string{"result:   kept", "-Hello, world!", "+Hacked"} {
		if !strings.Contains(show, want) {
			t.Errorf("podfim evidence show lacks %q:\n%s", want, show)
		}
	}
	t.Logf("podfim evidence show %s: kept %q, diff_excerpt %q, attribution %s", id, content, v.str("diff_excerpt"), v.str("attribution"))
}

// Kill (deploy/podman/pod-kill.yaml): podman restarts the app container
// after the kill, but it restarts the *same* container, so the page is
// still tampered; the sidecar kills it up to the kill limit, then
// escalates to unready and stops killing. (On a kubelet the new container
// comes from the image: see the kubelet test.)
func testPodmanKill(t *testing.T, p *podmanEnv) {
	d := playPod(t, p, "pod-kill.yaml", "podfim-demo-kill")
	if n := p.restarts(d.app); n != 0 {
		t.Fatalf("restart count before the tamper = %d", n)
	}
	id := p.inspect(d.app, "{{.Id}}")

	d.tamper(t)
	v := d.requireViolation(t)
	// One kill answers the tampering; the finding that triggers it may be
	// the page or its directory (overlayfs copy-up changes /www too, and
	// its event can come first).
	l := waitLog(t, d.sidecarLogs, "app container killed", "", 10*time.Second)
	if p := l.str("path"); p != page && p != "/www" {
		t.Fatalf("kill for %q, want the page or its directory", p)
	}
	if l.str("result") != "ok" {
		t.Fatalf("kill: %s", l)
	}
	logGap(t, "finding -> app container killed", v, l)
	took := testwait.Eventually(t, 30*time.Second, 100*time.Millisecond, "podman restarts the app", func() (bool, string) {
		n := p.restarts(d.app)
		return n >= 1, fmt.Sprintf("restart count %d", n)
	})
	t.Logf("restart count >= 1 (podman inspect) %s after the kill was logged", took.Round(time.Millisecond))

	// The sidecar re-verifies every restart, finds the page still modified,
	// kills again, and at the limit escalates.
	esc := waitLog(t, d.sidecarLogs, "kill limit reached", "", 60*time.Second)
	if !strings.Contains(esc.str("msg"), "escalating to [unready]") {
		t.Fatalf("escalation = %s", esc)
	}
	t.Logf("sidecar: %q", esc.str("msg"))
	lines := parseLog(d.sidecarLogs())
	kills := matching(lines, "app container killed", "")
	if len(kills) != killLimit {
		t.Fatalf("%d kills logged, want %d (the kill limit)", len(kills), killLimit)
	}
	if r := matching(lines, "target restarted", ""); len(r) < killLimit {
		t.Fatalf("the sidecar saw %d restarts of the app, want %d", len(r), killLimit)
	}

	// podman restarted the same container each time, and stops there.
	testwait.Eventually(t, 30*time.Second, 100*time.Millisecond, "the app running again", func() (bool, string) {
		s := p.inspect(d.app, "{{.State.Running}}")
		return s == "true", "running=" + s
	})
	// No further kill can follow: the "kill limit reached" line above is
	// logged when the responder drops kill from the plan, and the restart
	// count is read after that event, not after a sleep.
	if n := p.restarts(d.app); n != killLimit {
		t.Fatalf("restart count = %d, want %d (one per kill, none after the limit)", n, killLimit)
	}
	if got := p.inspect(d.app, "{{.Id}}"); got != id {
		t.Fatalf("container id %s -> %s: podman was expected to restart the same container", id, got)
	}
	t.Logf("restart count %d, same container %s", killLimit, id[:12])

	// The same container keeps its writable layer: still tampered.
	waitBody(t, pageURL, hacked, 10*time.Second)
	t.Logf("GET %s = %q after the restarts: podman reused the tampered container", pageURL, hacked)

	body, _ := waitStatus(t, readyzURL, 503, 10*time.Second)
	if !strings.Contains(body, page) {
		t.Fatalf("GET /readyz = 503 %q; want the page named", body)
	}
	t.Logf("GET /readyz = 503 %q", strings.TrimSpace(body))
	requireNoDrift(t, d)
}

// logGap logs the time between two log lines of the sidecar.
func logGap(t *testing.T, what string, a, b logLine) {
	t.Helper()
	ta, err1 := time.Parse(time.RFC3339Nano, a.str("time"))
	tb, err2 := time.Parse(time.RFC3339Nano, b.str("time"))
	if err1 != nil || err2 != nil {
		t.Fatalf("log times: %v %v", err1, err2)
	}
	t.Logf("sidecar: %s in %s", what, tb.Sub(ta).Round(time.Microsecond))
}
