package drift

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/target"
	"github.com/podfim/podfim/internal/testwait"
)

// The test binary doubles as the processes the tests start: with
// DRIFT_HELPER set it does what it names instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("DRIFT_HELPER") {
	case "":
		os.Exit(m.Run())
	case "sleep":
		select {}
	case "memfd":
		execMemfd()
	case "exec-on-signal":
		// A re-exec of its own path on SIGUSR1 (a server's binary upgrade).
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGUSR1)
		if err := os.WriteFile(os.Getenv("DRIFT_READY"), nil, 0o600); err != nil {
			os.Exit(3)
		}
		<-sig
		os.Setenv("DRIFT_HELPER", "sleep")
		err := syscall.Exec(os.Getenv("DRIFT_EXEC"), []string{"again"}, os.Environ())
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	case "exec-later":
		// Fork-then-exec in place: the pid stays, the executable changes
		// after the process was first seen.
		time.Sleep(300 * time.Millisecond)
		os.Setenv("DRIFT_HELPER", "sleep")
		err := syscall.Exec(os.Getenv("DRIFT_EXEC"), []string{"later"}, os.Environ())
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	os.Exit(2)
}

// execMemfd copies its own executable into a memfd and executes that:
// fileless execution.
func execMemfd() {
	fd, err := unix.MemfdCreate("payload", unix.MFD_CLOEXEC)
	if err != nil {
		os.Exit(4)
	}
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		os.Exit(4)
	}
	if _, err := io.Copy(os.NewFile(uintptr(fd), "memfd"), src); err != nil {
		os.Exit(4)
	}
	os.Setenv("DRIFT_HELPER", "sleep")
	err = unix.Exec(fmt.Sprintf("/proc/self/fd/%d", fd), []string{"payload"}, os.Environ())
	fmt.Fprintln(os.Stderr, err)
	os.Exit(4)
}

// requireRoot skips without root, except in CI (CI set to any value),
// where a test that cannot run fails loudly.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set: execution drift tests need root (to read /proc/PID/maps and root of other processes as the sidecar does)")
		}
		t.Skip("needs root")
	}
}

// fakeBase holds every path outside dirs as a clean regular file without a
// hash (not compared), and in dirs only the entries given.
type fakeBase struct {
	dirs    []string
	entries map[string]*attr.Entry
}

func (b *fakeBase) Lookup(p string) (*attr.Entry, bool) {
	if e, ok := b.entries[p]; ok {
		return e, true
	}
	for _, d := range b.dirs {
		if under(p, d) {
			return nil, false
		}
	}
	return &attr.Entry{Path: p, Type: attr.TypeRegular, Attrs: attr.Type}, true
}

type sink struct {
	ch chan Finding
}

func (s *sink) Drift(_ context.Context, f Finding) { s.ch <- f }

type fixture struct {
	dir  string
	base *fakeBase
	sink *sink
	cfg  Config
}

// newFixture runs a Checker over the test's own mount namespace: "/" is the
// container's root; t.TempDir() holds the files under test.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	self, err := (&target.Finder{}).Process(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	root, err := scan.OpenRoot("/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	f := &fixture{
		dir:  dir,
		base: &fakeBase{dirs: []string{dir}, entries: map[string]*attr.Entry{}},
		sink: &sink{ch: make(chan Finding, 64)},
	}
	f.cfg = Config{
		Finder:    &target.Finder{},
		Container: &target.Container{PID: self.PID, MountNS: self.MountNS},
		Root:      root,
		Baseline:  f.base,
		Interval:  10 * time.Millisecond,
	}
	return f
}

func (f *fixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	c := New(f.cfg, f.sink)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

// start runs the test binary from path as helper mode.
func (f *fixture) start(t *testing.T, path, mode string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(path, "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "DRIFT_HELPER="+mode)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// baselined copies the test binary to name in the fixture's directory and
// makes the baseline hold it as it is (type and SHA-256, no inode): the
// baseline's own file.
func (f *fixture) baselined(t *testing.T, name string) (string, *attr.Entry) {
	t.Helper()
	exe := filepath.Join(f.dir, name)
	copyExe(t, exe)
	e, err := f.cfg.Root.Entry(exe, attr.Type|attr.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	f.base.entries[exe] = &e
	return exe, &e
}

// appendFile appends text to the file at p.
func appendFile(p, text string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	return errors.Join(err, f.Close())
}

// copyExe copies the test binary to dst, mode 0755.
func copyExe(t *testing.T, dst string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits for the finding of pid, failing on any finding of another
// process of the test's (a false positive).
func (f *fixture) waitFor(t *testing.T, pid int) Finding {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case fd := <-f.sink.ch:
			if fd.Process.PID == pid {
				return fd
			}
			if fd.Info.PPID == os.Getpid() {
				t.Fatalf("finding for another process of the test: %+v", fd)
			}
		case <-deadline:
			t.Fatalf("no finding for pid %d within 10s", pid)
		}
	}
}

func TestAddedBinary(t *testing.T) {
	f := newFixture(t)
	f.run(t)
	// A legitimate process first: the test binary where it is, which the
	// fake baseline holds. Findings come in pid order per poll, so a false
	// positive about it would come before the one awaited.
	legit := f.start(t, "/proc/self/exe", "sleep")
	exe := filepath.Join(f.dir, "busybox")
	copyExe(t, exe)
	cmd := f.start(t, exe, "sleep")
	got := f.waitFor(t, cmd.Process.Pid)
	if got.Reason != Added || got.Path != exe || got.Process.Exe != exe {
		t.Errorf("got %+v, want reason added for %s", got, exe)
	}
	if got.Info.PPID != os.Getpid() || got.Info.UID != 0 || len(got.Info.Cmdline) == 0 || got.Info.Cmdline[0] != exe {
		t.Errorf("info = %+v", got.Info)
	}
	if got.Process.PID == legit.Process.Pid {
		t.Error("the legitimate process was reported")
	}
}

func TestChangedBinary(t *testing.T) {
	f := newFixture(t)
	exe := filepath.Join(f.dir, "app")
	copyExe(t, exe)
	f.base.entries[exe] = &attr.Entry{Path: exe, Type: attr.TypeRegular, Attrs: attr.Type | attr.SHA256, Hash: make([]byte, 32)}
	f.run(t)
	cmd := f.start(t, exe, "sleep")
	if got := f.waitFor(t, cmd.Process.Pid); got.Reason != Changed || got.Path != exe {
		t.Errorf("got %+v, want reason changed", got)
	}
}

func TestCleanBinaryHashedOnce(t *testing.T) {
	f := newFixture(t)
	exe, e := f.baselined(t, "app") // the right hash, no inode: hashed, then cached
	c := New(f.cfg, f.sink)
	if r := c.compare(exe, e); r != "" || len(c.verdicts) != 1 {
		t.Fatalf("compare = %q, verdicts %v; want the baseline's, cached", r, c.verdicts)
	}
	if err := os.WriteFile(exe, []byte("evil"), 0o755); err != nil {
		t.Fatal(err)
	}
	if r := c.compare(exe, e); r != Changed {
		t.Errorf("a rewritten file (new ctime): compare = %q, want changed", r)
	}
}

// TestUnverified: a file of the baseline that cannot be hashed (here larger
// than MaxFileBytes, as an attacker could pad a binary of the image) is
// not taken for the baseline's: its process is reported as unverified, and
// again for each process that runs it (the verdict is not cached).
func TestUnverified(t *testing.T) {
	f := newFixture(t)
	exe, _ := f.baselined(t, "big")
	f.cfg.MaxFileBytes = 4096
	f.run(t)
	for range 2 {
		cmd := f.start(t, exe, "sleep")
		if got := f.waitFor(t, cmd.Process.Pid); got.Reason != Unverified || got.Path != exe {
			t.Errorf("got %+v, want reason unverified for %s", got, exe)
		}
	}
}

func TestDeletedWhileRunning(t *testing.T) {
	f := newFixture(t)
	exe := filepath.Join(f.dir, "app")
	copyExe(t, exe)
	f.base.entries[exe] = &attr.Entry{Path: exe, Type: attr.TypeRegular, Attrs: attr.Type}
	cmd := f.start(t, exe, "sleep")
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	f.run(t)
	if got := f.waitFor(t, cmd.Process.Pid); got.Reason != Deleted {
		t.Errorf("got %+v, want reason deleted", got)
	}
}

func TestMemfd(t *testing.T) {
	f := newFixture(t)
	f.run(t)
	cmd := f.start(t, "/proc/self/exe", "memfd")
	got := f.waitFor(t, cmd.Process.Pid)
	if got.Reason != Memory || !strings.HasPrefix(got.Path, "/memfd:payload") {
		t.Errorf("got %+v, want reason memory for /memfd:payload", got)
	}
}

func TestVolume(t *testing.T) {
	f := newFixture(t)
	exe := filepath.Join(f.dir, "tool")
	copyExe(t, exe)
	f.base.entries[exe] = &attr.Entry{Path: exe, Type: attr.TypeRegular, Attrs: attr.Type}
	f.cfg.MountPoints = []string{"/", f.dir}
	f.run(t)
	cmd := f.start(t, exe, "sleep")
	if got := f.waitFor(t, cmd.Process.Pid); got.Reason != Volume {
		t.Errorf("got %+v, want reason volume", got)
	}
}

func TestExecInPlace(t *testing.T) {
	f := newFixture(t)
	exe := filepath.Join(f.dir, "later")
	copyExe(t, exe)
	f.run(t)
	// Seen first as the clean test binary, then it execs the added copy.
	cmd := f.start(t, "/proc/self/exe", "exec-later", "DRIFT_EXEC="+exe)
	got := f.waitFor(t, cmd.Process.Pid)
	if got.Reason != Added || got.Process.Exe != exe {
		t.Errorf("got %+v, want reason added for %s", got, exe)
	}
}

// TestReexecReplaced: a process that ran the baseline's file re-execs
// the same path after the file was replaced by another. Its executable
// link reads as it did, and so does its mount namespace; the identity of
// the file it runs does not, and a sweep judges it again: changed.
func TestReexecReplaced(t *testing.T) {
	f := newFixture(t)
	exe, _ := f.baselined(t, "app")
	now := time.Now()
	f.cfg.Clock = func() time.Time { return now }
	c := New(f.cfg, f.sink)
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := f.start(t, exe, "exec-on-signal", "DRIFT_EXEC="+exe, "DRIFT_READY="+ready)
	pid := cmd.Process.Pid
	poll := func() (mine []Finding) {
		t.Helper()
		if err := c.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case fd := <-f.sink.ch:
				if fd.Process.PID == pid {
					mine = append(mine, fd)
				}
			default:
				return mine
			}
		}
	}
	// Ready: it runs exe and catches SIGUSR1 (before, the signal would
	// kill it).
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the helper ready", testwait.True(func() bool {
		_, err := os.Stat(ready)
		return err == nil
	}))
	if got := poll(); len(got) != 0 {
		t.Fatalf("the baseline's own file: findings %+v", got)
	}
	now = now.Add(2 * youngFor) // old: its link is read by sweeps only
	evil := exe + ".new"
	copyExe(t, evil)
	if err := appendFile(evil, "evil"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(evil, exe); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, 10*time.Second, 5*time.Millisecond, "the re-exec", testwait.True(func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err == nil && string(b) == "again\x00"
	}))
	var got []Finding
	for range sweepEvery {
		got = append(got, poll()...)
	}
	if len(got) != 1 || got[0].Reason != Changed || got[0].Path != exe {
		t.Errorf("findings %+v, want one, changed, for %s", got, exe)
	}
}

func TestScript(t *testing.T) {
	f := newFixture(t)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(f.dir, "x.sh")
	if err := os.WriteFile(script, []byte("sleep 1000\ntrue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.run(t)
	cmd := exec.Command(sh, script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its sleep is killed with it
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
	got := f.waitFor(t, cmd.Process.Pid)
	if got.Reason != Script || got.Path != script {
		t.Errorf("got %+v, want reason script for %s", got, script)
	}
}

func TestInterpreter(t *testing.T) {
	for name, want := range map[string]bool{
		"sh": true, "/bin/bash": true, "python3": true, "python3.11": true, "perl": true,
		"shred": false, "python3x": false, "busybox": false, "": false,
	} {
		if got := interpreter(name); got != want {
			t.Errorf("interpreter(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRuntimeHelper(t *testing.T) {
	runc := target.Process{Exe: "/memfd:runc_cloned:/proc/self/exe", ExeDeleted: true}
	if !runtimeHelper(runc, target.Info{PPID: 0}) {
		t.Error("runc init (parent outside the pid namespace) taken for drift")
	}
	if runtimeHelper(runc, target.Info{PPID: 7}) {
		t.Error("a memfd named like runc's, started inside the container, excused")
	}
	if runtimeHelper(target.Process{Exe: "/memfd:x", ExeDeleted: true}, target.Info{}) {
		t.Error("any memfd with PPID 0 excused")
	}
}

// TestEnteredFromOutside: a process whose executable is not in the
// container's root (nsenter between setns and execve) is not drift until
// it execs.
func TestEnteredFromOutside(t *testing.T) {
	f := newFixture(t)
	root, err := scan.OpenRoot(f.dir) // a "container" root that lacks the test binary
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f.cfg.Root = root
	c := New(f.cfg, f.sink)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := target.Process{PID: os.Getpid(), Exe: exe}
	if _, _, pending, ok := c.judge(p, target.Info{PPID: 1}, true); !pending || ok {
		t.Errorf("judge = pending %v, drift %v; want pending", pending, ok)
	}
	if f, r, pending, ok := c.judge(p, target.Info{PPID: 1}, false); pending || !ok || r != Added || f != exe {
		t.Errorf("without the excuse: %s reason %q, pending %v, drift %v; want added", f, r, pending, ok)
	}
	p.ExeDeleted = true
	if _, r, pending, ok := c.judge(p, target.Info{PPID: 1}, true); pending || !ok || r != Deleted {
		t.Errorf("a deleted executable: reason %q, pending %v, drift %v; want deleted", r, pending, ok)
	}
	// runc 1.1's `runc init` runs a detached read-only bind mount of
	// itself, whose link reads "/".
	p = target.Process{PID: os.Getpid(), Exe: "/"}
	if _, _, pending, ok := c.judge(p, target.Info{}, true); !pending || ok {
		t.Errorf("exe \"/\": pending %v, drift %v; want pending", pending, ok)
	}
	if f, r, pending, ok := c.judge(p, target.Info{}, false); pending || !ok || r != Added || f != "/" {
		t.Errorf("exe \"/\" without the excuse: %s reason %q, pending %v, drift %v; want added", f, r, pending, ok)
	}
}
