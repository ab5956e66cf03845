package sidecar_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/testwait"
)

// The app's page, and the tampered page: of the same length, written in
// place with one write, so that a change is seen in one state (a truncate
// followed by a write could be seen twice).
const (
	page     = "Hello, world!\n"
	tampered = "Hacked world!\n"
	pagePath = "/www/index.html"
)

// policy compares what a fresh container from the same image keeps: not
// inode, nlink, mtime or ctime, which a new copy of the root changes.
const policy = `version: 1
rules:
  - path: /
    attributes: [type, mode, uid, gid, size, sha256, xattrs, target]
`

// Deadlines. They are generous for a loaded machine; what the tests assert
// about latency is stated where it is measured.
const (
	startTimeout = 15 * time.Second // a sidecar or an app up, a first check done
	waitTimeout  = 10 * time.Second // anything else the sidecar is expected to do
	poll         = 5 * time.Millisecond
)

// makeImage returns a directory that app containers are started from: /app
// (the static app) and /www/index.html holding index.
func makeImage(t *testing.T, index string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(dir, "www"), 0o755)
	writeFile(t, filepath.Join(dir, "www", "index.html"), []byte(index), 0o644)
	bin, err := os.ReadFile(os.Getenv(appEnv))
	if err != nil {
		t.Fatalf("the app binary (%s=%q): %v", appEnv, os.Getenv(appEnv), err)
	}
	writeFile(t, filepath.Join(dir, "app"), bin, 0o755)
	return dir
}

func mkdir(t *testing.T, dir string, mode fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // whatever the umask
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, name string, b []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil {
		t.Fatal(err)
	}
}

// app is an app container: its main process (/app, a child of the runner)
// and the worker it starts.
type app struct {
	pid    int
	worker int // 0 if the app died before it said
	wfd    int // pidfd of the worker, -1 if none
	done   chan struct{}
	exited time.Time          // when the main process was reaped; set before done closes
	status syscall.WaitStatus // set before done closes
}

// startApp starts an app container from a fresh copy of image, the way the
// kubelet starts a new container from an image: a new mount namespace whose
// root is a new tmpfs. It returns once the app said it runs, or once it
// died trying (the sidecar may kill it first: callers check alive).
func startApp(t *testing.T, image string) *app {
	t.Helper()
	return startAppOn(t, image, 64<<20, nil)
}

// startAppOn is startApp with a tmpfs root of size bytes; fill, when not
// nil, adds files to the root (its path in the container's namespace)
// before the app starts.
func startAppOn(t *testing.T, image string, size int64, fill func(root string) error) *app {
	t.Helper()
	mnt := t.TempDir() // the mount point; in the runner's namespace it stays empty
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	type result struct {
		cmd *exec.Cmd
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread's mount namespace and root become the
		// container's, and the runtime ends the thread with this goroutine.
		runtime.LockOSThread()
		cmd, err := launch(image, mnt, size, fill, devnull, pw)
		ch <- result{cmd, err}
	}()
	r := <-ch
	pw.Close()
	if r.err != nil {
		t.Fatalf("starting an app container: %v", r.err)
	}
	a := &app{pid: r.cmd.Process.Pid, wfd: -1, done: make(chan struct{})}
	go func() {
		r.cmd.Wait()
		a.exited = time.Now()
		a.status = r.cmd.ProcessState.Sys().(syscall.WaitStatus)
		close(a.done)
	}()
	t.Cleanup(a.kill)

	pr.SetReadDeadline(time.Now().Add(startTimeout))
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		select {
		case <-a.done:
			t.Logf("app pid %d died before it said it runs (%v): %v", a.pid, a.status, err)
			return a
		case <-time.After(waitTimeout):
			t.Fatalf("app pid %d did not start: %v", a.pid, err)
		}
	}
	if _, err := fmt.Sscanf(line, "ready %d\n", &a.worker); err != nil {
		t.Fatalf("app said %q: %v", line, err)
	}
	if fd, err := unix.PidfdOpen(a.worker, 0); err == nil {
		a.wfd = fd
	}
	return a
}

// launch runs on a locked thread of its own: it gives the thread a new
// mount namespace, mounts a tmpfs on mnt, copies image into it, makes it the
// thread's root with pivot_root and starts /app from there. The thread must
// not be used for anything else afterwards.
func launch(image, mnt string, size int64, fill func(string) error, stdin, stdout *os.File) (*exec.Cmd, error) {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return nil, fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=0755,size=%d", size)); err != nil {
		return nil, fmt.Errorf("mount the root: %w", err)
	}
	if err := copyTree(image, mnt); err != nil {
		return nil, err
	}
	if fill != nil {
		if err := fill(mnt); err != nil {
			return nil, err
		}
	}
	// pivot_root(".", ".") stacks the old root on the new one; detaching
	// it leaves the new root alone, with no directory for the old one.
	if err := unix.Chdir(mnt); err != nil {
		return nil, err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return nil, fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return nil, fmt.Errorf("detach the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:   "/app",
		Args:   []string{"/app"},
		Env:    []string{"PATH=/"},
		Stdin:  stdin, // the root has no /dev/null for exec to open
		Stdout: stdout,
		Stderr: os.Stderr,
		// A group of its own, for the cleanup. No Pdeathsig: the parent
		// thread ends right away.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// copyTree copies the directories and regular files of src into dst, with
// their modes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(to, b, 0o600); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected type %v", p, d.Type())
		}
		return os.Chmod(to, info.Mode().Perm())
	})
}

func (a *app) alive() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// killedBySIGKILL reports whether the main process exited, killed by
// SIGKILL.
func (a *app) killedBySIGKILL() bool {
	return !a.alive() && a.status.Signaled() && a.status.Signal() == syscall.SIGKILL
}

// workerGone reports whether the worker has exited.
func (a *app) workerGone() bool {
	if a.wfd < 0 {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(a.wfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n == 1
}

// kill kills the app's processes and waits until they are gone; it may be
// called more than once.
func (a *app) kill() {
	unix.Kill(-a.pid, unix.SIGKILL)
	if a.wfd >= 0 {
		unix.PidfdSendSignal(a.wfd, unix.SIGKILL, nil, 0)
	}
	select {
	case <-a.done:
	case <-time.After(waitTimeout):
		panic(fmt.Sprintf("app pid %d survived SIGKILL", a.pid))
	}
	for deadline := time.Now().Add(waitTimeout); !a.workerGone() && time.Now().Before(deadline); {
		time.Sleep(poll)
	}
	if a.wfd >= 0 {
		unix.Close(a.wfd)
		a.wfd = -1
	}
}

// tamper overwrites the app's page in place, through /proc/PID/root as
// anyone with ptrace access to the app can, and returns when the write
// started.
func tamper(t *testing.T, a *app) time.Time {
	t.Helper()
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/root%s", a.pid, pagePath), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if _, err := f.WriteAt([]byte(tampered), 0); err != nil {
		t.Fatal(err)
	}
	return start
}

// sidecarOpts configure startSidecar.
type sidecarOpts struct {
	state   string   // --state-dir
	respond string   // --respond
	extra   []string // more flags
	// policy, when set, replaces the tests' policy (the const).
	policy string
	// cgroup, when set, is a cgroup v1 directory the sidecar runs in from
	// its first instruction (it joins before exec).
	cgroup string
	// noDAC runs the sidecar without CAP_DAC_OVERRIDE and
	// CAP_DAC_READ_SEARCH (setpriv drops them from its bounding set): files
	// of mode 000 are unreadable to it, as to a sidecar in a restricted pod.
	noDAC bool
}

// sidecar is a running `podfim sidecar`.
type sidecar struct {
	t       *testing.T
	cmd     *exec.Cmd
	log     string // its stderr (JSON logs) and stdout
	addr    string // of /metrics, /healthz, /readyz
	started time.Time
	done    chan struct{}
	exited  time.Time // set before done closes
	crashed bool      // killed by the test
}

var sidecars int // numbers the log files

// startSidecar starts `podfim sidecar` in the runner's mount namespace (the
// sidecar container's) and waits until it serves its endpoints.
func startSidecar(t *testing.T, o sidecarOpts) *sidecar {
	t.Helper()
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	text := policy
	if o.policy != "" {
		text = o.policy
	}
	writeFile(t, pol, []byte(text), 0o644)
	sidecars++
	logPath := filepath.Join(dir, fmt.Sprintf("sidecar-%d.log", sidecars))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	args := []string{"sidecar",
		"--listen", "127.0.0.1:0", // the kernel picks a free port; the log says which
		"--state-dir", o.state,
		"--policy", pol,
		"--quick-interval", "200ms",
		"--full-interval", "2s",
		"--respond", o.respond,
		"--log-level", "debug",
	}
	args = append(args, o.extra...)
	cmd := selfCmd("podfim", args...)
	cmd.Env = sidecarEnv()
	if o.cgroup != "" {
		// The shell's pid as the pod's pid namespace numbers it, which is
		// how the kernel reads a pid written by a process of that namespace.
		cmd.Args = append([]string{"sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, o.cgroup, cmd.Path}, cmd.Args[1:]...)
		cmd.Path = "/bin/sh"
	}
	if o.noDAC {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Fatalf("setpriv (util-linux) drops the sidecar's DAC capabilities: %v", err)
		}
		cmd.Args = append([]string{setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", cmd.Path}, cmd.Args[1:]...)
		cmd.Path = setpriv
	}
	return launchSidecar(t, cmd, logFile, logPath, 0)
}

// launchSidecar starts cmd (`podfim sidecar ... --listen 127.0.0.1:0`)
// with its output in logFile, stops it when the test ends (failing the
// test if it exited on its own or reported a data race, and logging the
// last tail lines of its log on failure, 0: all), and waits until it
// serves its endpoints.
func launchSidecar(t *testing.T, cmd *exec.Cmd, logFile *os.File, logPath string, tail int) *sidecar {
	t.Helper()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// No Pdeathsig: it fires when the forking thread ends, and startApp's
	// threads end (with the whole pod, pid 1's exit kills the sidecar).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &sidecar{t: t, cmd: cmd, log: logPath, done: make(chan struct{}), started: time.Now()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		s.exited = time.Now()
		close(s.done)
	}()
	t.Cleanup(func() {
		if s.running() {
			s.stop(t)
		} else if !s.crashed && !s.cmd.ProcessState.Success() {
			t.Errorf("the sidecar exited on its own: %v", s.cmd.ProcessState)
		}
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		b, err := os.ReadFile(logPath)
		if err != nil {
			return
		}
		if bytes.Contains(b, []byte("WARNING: DATA RACE")) {
			t.Errorf("the sidecar reported a data race")
		}
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if tail > 0 && len(lines) > tail {
				lines = lines[len(lines)-tail:]
			}
			t.Logf("sidecar log %s:\n%s", logPath, strings.Join(lines, "\n"))
		}
	})

	// The port opens after the first full check, or after 20 s when that
	// takes longer (a large tree).
	l := s.waitLog(t, 20*time.Second+startTimeout, "serving metrics and probes", nil)
	s.addr, _ = l["addr"].(string)
	if !strings.HasPrefix(s.addr, "127.0.0.1:") {
		t.Fatalf("the sidecar serves on %q", s.addr)
	}
	return s
}

func (s *sidecar) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and checks that the sidecar exits 0 within 2 s. It
// returns how long the exit took.
func (s *sidecar) stop(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		<-s.done
		t.Fatalf("the sidecar exited before SIGTERM: %v", s.cmd.ProcessState)
	}
	select {
	case <-s.done:
	case <-time.After(2 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Fatalf("the sidecar did not exit within 2s of SIGTERM")
	}
	took := s.exited.Sub(start)
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the sidecar exited with %v after SIGTERM, want 0", s.cmd.ProcessState)
	}
	return took
}

// crash kills the sidecar with SIGKILL.
func (s *sidecar) crash(t *testing.T) {
	t.Helper()
	s.crashed = true
	s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(waitTimeout):
		t.Fatal("the sidecar survived SIGKILL")
	}
}

// logLine is one JSON line of the sidecar's log.
type logLine map[string]any

func (l logLine) str(key string) string { s, _ := l[key].(string); return s }

func (l logLine) num(key string) int { f, _ := l[key].(float64); return int(f) }

func (l logLine) list(key string) []string {
	var out []string
	list, _ := l[key].([]any)
	for _, v := range list {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// logs returns the JSON lines logged so far whose message starts with msg
// and that match (nil: all).
func (s *sidecar) logs(msg string, match func(logLine) bool) []logLine {
	b, err := os.ReadFile(s.log)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []logLine
	for _, line := range bytes.Split(b, []byte("\n")) {
		var l logLine
		if json.Unmarshal(line, &l) != nil {
			continue // the last, partial line; a race report
		}
		if strings.HasPrefix(l.str("msg"), msg) && (match == nil || match(l)) {
			out = append(out, l)
		}
	}
	return out
}

// waitLog waits for a log line and returns the first one.
func (s *sidecar) waitLog(t *testing.T, timeout time.Duration, msg string, match func(logLine) bool) logLine {
	t.Helper()
	var got []logLine
	testwait.Eventually(t, timeout, poll, fmt.Sprintf("log %q", msg), func() (bool, string) {
		if !s.running() {
			t.Fatalf("the sidecar exited (%v) while waiting for log %q", s.cmd.ProcessState, msg)
		}
		got = s.logs(msg, match)
		return len(got) > 0, "no such line"
	})
	return got[0]
}

// client is generous with time: the machines running the tests may stall
// for seconds.
var client = &http.Client{Timeout: waitTimeout}

// fetch fetches one of the sidecar's endpoints.
func (s *sidecar) fetch(path string) (int, string, error) {
	resp, err := client.Get("http://" + s.addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// get fetches one of the sidecar's endpoints, or fails the test.
func (s *sidecar) get(t *testing.T, path string) (int, string) {
	t.Helper()
	code, body, err := s.fetch(path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code, body
}

// waitReadyz waits until /readyz answers code with a body containing want.
func (s *sidecar) waitReadyz(t *testing.T, timeout time.Duration, code int, want string) {
	t.Helper()
	testwait.Eventually(t, timeout, poll, fmt.Sprintf("/readyz %d %q", code, want), func() (bool, string) {
		c, body, err := s.fetch("/readyz")
		return err == nil && c == code && strings.Contains(body, want), fmt.Sprintf("%d %q %v", c, body, err)
	})
}

// metric returns the value of the series of /metrics named name whose
// labels include labels ("k=v" each), and whether there is one.
func (s *sidecar) metric(t *testing.T, name string, labels ...string) (float64, bool) {
	t.Helper()
	_, body := s.get(t, "/metrics")
	return parseMetric(t, body, name, labels...)
}

func parseMetric(t *testing.T, body, name string, labels ...string) (float64, bool) {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, ls, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
		if n != name {
			continue
		}
		var have []string
		for _, kv := range strings.Split(ls, ",") {
			k, v, _ := strings.Cut(kv, "=")
			have = append(have, k+"="+strings.Trim(v, `"`))
		}
		if !containsAll(have, labels) {
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return f, true
	}
	return 0, false
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// waitMetric waits until a series has the value want.
func (s *sidecar) waitMetric(t *testing.T, timeout time.Duration, want float64, name string, labels ...string) {
	t.Helper()
	testwait.Eventually(t, timeout, poll, fmt.Sprintf("%s%v = %v", name, labels, want), func() (bool, string) {
		_, body, err := s.fetch("/metrics")
		if err != nil {
			return false, err.Error()
		}
		v, ok := parseMetric(t, body, name, labels...)
		return ok && v == want, fmt.Sprintf("%v (present %v)", v, ok)
	})
}

// violations returns the "integrity violation" lines about path.
func (s *sidecar) violations(path string) []logLine {
	return s.logs("integrity violation", func(l logLine) bool { return l.str("path") == path })
}
