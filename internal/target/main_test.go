package target

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/testpod"
)

// The tests run inside a small pod of their own (package testpod), so that
// /proc shows what a sidecar sees and nothing else of the machine: the
// runner ("sidecar") runs the tests, which start "app" helpers (this binary
// again) and /bin/sleep in new mount namespaces, the way a runtime starts
// containers. Finder's defaults (Proc "/proc", Self os.Getpid(), Infra 1)
// are thus the ones under test. It needs root (CAP_SYS_ADMIN), as the
// Makefile's test tier does.
func testPod() testpod.Pod {
	return testpod.Pod{
		Name:    "target",
		RoleEnv: "PODFIM_TARGET_TEST_ROLE",
		Runner:  "sidecar",
		Roles: map[string]func() int{
			"app":    func() int { app(); return 0 },
			"worker": func() int { time.Sleep(time.Minute); return 0 },
			"probe":  func() int { probe(); return 0 },
		},
	}
}

// App helper settings, in the environment of role "app".
const (
	workerEnv = "PODFIM_TARGET_TEST_WORKER" // "1": start a worker process
	markEnv   = "PODFIM_TARGET_TEST_MARK"   // a directory: mount a tmpfs there, write "mark"
	chrootEnv = "PODFIM_TARGET_TEST_CHROOT" // a directory: chroot into it (after the worker started)
	skipEnv   = "PODFIM_TARGET_TEST_SKIP"   // "1": the probe lists as the node agent does (SkipDenied)
)

func TestMain(m *testing.M) { testPod().Main(m) }

func selfCmd(role string, args ...string) *exec.Cmd { return testPod().Cmd(role, args...) }

func exit(code int) { syscall.Exit(code) }

// app is a container's main process: it optionally mounts a tmpfs with a
// mark file, starts a worker and chroots, then reports "ready <worker pid>"
// and sleeps.
func app() {
	die := func(err error) {
		fmt.Fprintf(os.Stderr, "app: %v\n", err)
		exit(1)
	}
	if dir := os.Getenv(markEnv); dir != "" {
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
			die(err)
		}
		if err := os.WriteFile(dir+"/mark", []byte("app"), 0o644); err != nil {
			die(err)
		}
	}
	worker := 0
	if os.Getenv(workerEnv) == "1" {
		cmd := selfCmd("worker")
		cmd.Env = append(cmd.Env, workerEnv+"=", markEnv+"=", chrootEnv+"=")
		// No Pdeathsig: the worker outlives the app when a test wants it
		// to; tests kill it, and the pod's end kills it anyway.
		if err := cmd.Start(); err != nil {
			die(err)
		}
		worker = cmd.Process.Pid
	}
	if dir := os.Getenv(chrootEnv); dir != "" {
		if err := unix.Chroot(dir); err != nil {
			die(err)
		}
		if err := unix.Chdir("/"); err != nil {
			die(err)
		}
	}
	fmt.Printf("ready %d\n", worker)
	time.Sleep(time.Minute)
}

// probe runs Containers with the credentials it was started with and prints
// the outcome on one line: "ok <main pid>..." or "access <pid> <ptrace> <message>".
func probe() {
	f := &Finder{}
	if os.Getenv(skipEnv) == "1" {
		f = &Finder{Infra: -1, SkipDenied: true} // the node agent's
	}
	cs, err := f.Containers()
	var ae *AccessError
	if errors.As(err, &ae) {
		fmt.Printf("access %d %v %s\n", ae.PID, ae.Ptrace, ae)
		return
	}
	if err != nil {
		fmt.Printf("error %v\n", err)
		return
	}
	fmt.Print("ok")
	for _, c := range cs {
		fmt.Printf(" %d", c.PID)
		if f, err := c.OpenRoot(); err != nil {
			fmt.Printf(" (%v)", err)
		} else {
			f.Close()
		}
	}
	fmt.Println()
}

// proc is a process started by a test, killed and reaped when it ends.
type proc struct {
	cmd    *exec.Cmd
	pid    int
	worker int // pid of the app's worker, 0 if none
}

// appOpts configures startApp.
type appOpts struct {
	worker bool
	mark   string // directory for the mark tmpfs
	chroot string
}

// startApp starts this binary as an app in a new mount namespace.
func startApp(t *testing.T, o appOpts) *proc {
	t.Helper()
	cmd := selfCmd("app")
	if o.worker {
		cmd.Env = append(cmd.Env, workerEnv+"=1")
	}
	cmd.Env = append(cmd.Env, markEnv+"="+o.mark, chrootEnv+"="+o.chroot)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, cmd)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("app did not start: %v", err)
	}
	var w int
	if _, err := fmt.Sscanf(line, "ready %d\n", &w); err != nil {
		t.Fatalf("app said %q: %v", line, err)
	}
	p.worker = w
	if w != 0 {
		t.Cleanup(func() { killPID(t, w) })
	}
	return p
}

// startSleep starts /bin/sleep in a new mount namespace and waits until it
// runs sleep.
func startSleep(t *testing.T) *proc {
	t.Helper()
	p := start(t, exec.Command("/bin/sleep", "60"))
	waitExe(t, p.pid, sleepExe(t))
	return p
}

// start starts cmd in a new mount namespace, as a runtime starts a
// container.
func start(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	return startIn(t, cmd, true)
}

// startIn starts cmd, in a new mount namespace if newNS is set.
func startIn(t *testing.T, cmd *exec.Cmd, newNS bool) *proc {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if newNS {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNS
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid}
	t.Cleanup(p.kill)
	return p
}

// kill kills and reaps p; it may be called more than once.
func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// killPID kills a process that is not our child and waits until it is gone
// (pause reaps it).
func killPID(t *testing.T, pid int) {
	t.Helper()
	unix.Kill(pid, unix.SIGKILL)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if st, err := parseStat(b); err == nil && st.dead() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Errorf("pid %d still alive", pid)
}

// waitExe waits until pid runs exe (after fork, before exec, it runs the
// parent's).
func waitExe(t *testing.T, pid int, exe string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		got, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
		if err == nil && got == exe {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d runs %q (%v), want %q", pid, got, err, exe)
		}
		time.Sleep(time.Millisecond)
	}
}

// sleepExe is /bin/sleep as /proc/PID/exe shows it (/bin may be a
// symlink).
func sleepExe(t *testing.T) string {
	t.Helper()
	exe, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	return exe
}
