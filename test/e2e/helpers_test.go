//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/testwait"
)

// repoRoot is the repository's top directory (this file is test/e2e/...).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the repository")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// cmdResult is what a command did.
type cmdResult struct {
	Stdout, Stderr string
	Err            error
	Took           time.Duration
}

// Out is stdout and stderr together, for messages.
func (r cmdResult) Out() string {
	return strings.TrimSpace(r.Stdout + "\n" + r.Stderr)
}

// runCmd runs name with args, env added to the test's environment, in dir
// (the repository when empty), and gives up after timeout.
func runCmd(t testing.TB, timeout time.Duration, env []string, dir, name string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = repoRoot(t)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return cmdResult{Stdout: stdout.String(), Stderr: stderr.String(), Err: err, Took: time.Since(start)}
}

// mustRun is runCmd that fails the test on error.
func mustRun(t testing.TB, timeout time.Duration, env []string, name string, args ...string) cmdResult {
	t.Helper()
	r := runCmd(t, timeout, env, "", name, args...)
	if r.Err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), r.Err, r.Out())
	}
	return r
}

// requireRoot fails (never skips) when the test does not run as root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the e2e tests need root (rootful container runtimes, apt-get); run them as root, as CI does")
	}
}

// aptInstall installs the Debian packages whose check fails; a package that
// cannot be installed fails the test.
func aptInstall(t testing.TB, pkgs map[string]func() bool) {
	t.Helper()
	var need []string
	for p, ok := range pkgs {
		if !ok() {
			need = append(need, p)
		}
	}
	if len(need) == 0 {
		return
	}
	requireRoot(t)
	t.Logf("installing %v with apt-get", need)
	env := []string{"DEBIAN_FRONTEND=noninteractive"}
	mustRun(t, 5*time.Minute, env, "apt-get", "update", "-qq")
	mustRun(t, 10*time.Minute, env, "apt-get", append([]string{"install", "-y", "-qq"}, need...)...)
	for p, ok := range pkgs {
		if !ok() {
			t.Fatalf("package %s is installed but its check still fails", p)
		}
	}
}

// onPath reports whether an executable is on PATH.
func onPath(name string) func() bool {
	return func() bool { _, err := exec.LookPath(name); return err == nil }
}

// staticBusybox reports whether /bin/busybox is there and static (the
// images are FROM scratch).
func staticBusybox() bool {
	if fi, err := os.Stat("/bin/busybox"); err != nil || fi.Mode()&0o111 == 0 {
		return false
	}
	return exec.Command("ldd", "/bin/busybox").Run() != nil
}

var (
	imagesOnce sync.Once
	imagesErr  error
	imagesOut  string
)

// buildImages runs `make images` once per test binary, with env (e.g. the
// engine and its settings).
func buildImages(t testing.TB, env []string) {
	t.Helper()
	imagesOnce.Do(func() {
		r := runCmd(t, 10*time.Minute, env, "", "make", "images")
		imagesErr, imagesOut = r.Err, r.Out()
		t.Logf("make images (%s):\n%s", r.Took.Round(time.Millisecond), imagesOut)
	})
	if imagesErr != nil {
		t.Fatalf("make images: %v\n%s", imagesErr, imagesOut)
	}
}

// renderPod reads a Pod YAML of the repository and applies replacements
// (old -> new, each of which must occur), writing the result to a file of
// the test.
func renderPod(t testing.TB, rel string, replacements ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if len(replacements)%2 != 0 {
		t.Fatal("renderPod: replacements come in pairs")
	}
	for i := 0; i < len(replacements); i += 2 {
		if !strings.Contains(s, replacements[i]) {
			t.Fatalf("renderPod: %s has no %q", rel, replacements[i])
		}
		s = strings.ReplaceAll(s, replacements[i], replacements[i+1])
	}
	out := filepath.Join(t.TempDir(), filepath.Base(rel))
	if err := os.WriteFile(out, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// uniqueName is a fresh name for a pod of this test run.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1_000_000_000)
}

// requireFreePort fails when something already listens on addr: the pods
// use the host network, and a leftover demo would answer instead.
func requireFreePort(t testing.TB, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s is already in use (a demo still running? make demo-down)", addr)
	}
}

// loopback is the only HTTP client of the tests: it refuses any host that
// is not a loopback address, and follows no redirects.
var loopback = &http.Client{
	Timeout: 2 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// httpGet returns the status and body of a GET to a loopback URL.
func httpGet(t testing.TB, raw string) (int, string, error) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
		t.Fatalf("httpGet %s: the tests send traffic to loopback addresses only", raw)
	}
	resp, err := loopback.Get(raw)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// waitBody waits until GET url answers 200 with body.
func waitBody(t testing.TB, rawURL, body string, timeout time.Duration) time.Duration {
	t.Helper()
	return testwait.Eventually(t, timeout, 100*time.Millisecond, fmt.Sprintf("GET %s = %q", rawURL, body), func() (bool, string) {
		code, got, err := httpGet(t, rawURL)
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK && got == body, fmt.Sprintf("%d %q", code, got)
	})
}

// waitStatus waits until GET url answers with code.
func waitStatus(t testing.TB, rawURL string, code int, timeout time.Duration) (string, time.Duration) {
	t.Helper()
	var body string
	took := testwait.Eventually(t, timeout, 100*time.Millisecond, fmt.Sprintf("GET %s -> %d", rawURL, code), func() (bool, string) {
		c, b, err := httpGet(t, rawURL)
		if err != nil {
			return false, err.Error()
		}
		body = b
		return c == code, fmt.Sprintf("%d %q", c, b)
	})
	return body, took
}

// logLine is one JSON line of the sidecar's log.
type logLine map[string]any

func (l logLine) str(key string) string {
	s, _ := l[key].(string)
	return s
}

func (l logLine) num(key string) float64 {
	f, _ := l[key].(float64)
	return f
}

func (l logLine) strings(key string) []string {
	var out []string
	if a, ok := l[key].([]any); ok {
		for _, v := range a {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func (l logLine) String() string {
	b, _ := json.Marshal(l)
	return string(b)
}

// parseLog returns the JSON lines of a log; other lines are ignored.
func parseLog(text string) []logLine {
	var out []logLine
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var l logLine
		if json.Unmarshal([]byte(line), &l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// matching returns the lines whose msg starts with msg and, when path is
// not empty, whose path is path.
func matching(lines []logLine, msg, path string) []logLine {
	var out []logLine
	for _, l := range lines {
		if strings.HasPrefix(l.str("msg"), msg) && (path == "" || l.str("path") == path) {
			out = append(out, l)
		}
	}
	return out
}

// waitLog polls a log source until a line matches msg and path, and
// returns the first such line.
func waitLog(t testing.TB, logs func() string, msg, path string, timeout time.Duration) logLine {
	t.Helper()
	var found logLine
	testwait.Eventually(t, timeout, 100*time.Millisecond, fmt.Sprintf("log line %q path %q", msg, path), func() (bool, string) {
		text := logs()
		m := matching(parseLog(text), msg, path)
		if len(m) == 0 {
			return false, lastLines(text, 5)
		}
		found = m[0]
		return true, ""
	})
	return found
}

// lastLines is the end of a log, for messages.
func lastLines(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
