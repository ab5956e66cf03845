// Package sidecar_test runs the real `podfim sidecar` in a pod built for the
// test out of Linux namespaces, and checks what it does to an app container
// that is tampered with: detection, readiness, kill, restart, escalation and
// shutdown.
//
// The pod is made the way a container runtime makes one:
//
//	go test's process (role "")   builds the static app (testdata/app), then starts
//	  "pause"   pid 1 of a new pid namespace, in a new mount namespace with
//	            the pod's own /proc; it starts the runner and reaps orphans
//	  "runner"  the sidecar container's mount namespace: runs the tests,
//	            which start in it
//	    "podfim"  this binary again, running cli.Run (`podfim sidecar ...`)
//	    /app      the app container: a new mount namespace whose root is a
//	              fresh tmpfs holding a copy of an "image" directory
//	              (/app, /www/index.html), pivot_root'ed into, so the root is
//	              a mount root as in a real container
//
// The app is started from a thread of the runner that alone unshares its
// mount namespace and pivots into the new root before forking: the app
// process is visible in /proc only once its root is the container's (a
// process caught halfway, with the host's root, would be baselined as the
// app). The main goroutine stays locked to the main thread (see init), so
// that thread is never the one unshared and the runner's /proc/PID/ns/mnt
// and root never change.
//
// The tests need root (CAP_SYS_ADMIN for the namespaces and mounts,
// CAP_SYS_PTRACE and CAP_KILL for the sidecar). Without it they fail; they
// never skip.
package sidecar_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/cli"
)

// Environment of the test's own processes. Not PODFIM_*: the sidecar reads
// those as settings.
const (
	roleEnv = "SIDECARTEST_ROLE"
	appEnv  = "SIDECARTEST_APP" // the static app binary, built by role ""
)

func init() {
	// Keep the main goroutine, and no other, on the main thread: the app is
	// started from a thread that changes its mount namespace and root, and
	// that must never be the thread /proc/<runner>/ns/mnt and root describe.
	runtime.LockOSThread()
}

func TestMain(m *testing.M) {
	// Roles other than the runner leave with exit, not os.Exit: with the
	// race detector, os.Exit sleeps a second (GORACE=atexit_sleep_ms).
	switch role := os.Getenv(roleEnv); role {
	case "":
		exit(runPod())
	case "pause":
		exit(pause())
	case "runner":
		os.Exit(m.Run())
	case "podfim":
		podfim()
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", roleEnv, role)
		exit(2)
	}
}

func exit(code int) { syscall.Exit(code) }

func selfCmd(role string, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	return cmd
}

// runPod builds the app, starts "pause" in new pid and mount namespaces and
// returns its exit code, which is the tests'.
func runPod() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "FAIL: the sidecar integration tests need root: they build a pod of their own "+
			"(pid and mount namespaces, tmpfs roots) and the sidecar needs CAP_SYS_PTRACE and CAP_KILL")
		return 1
	}
	dir, err := os.MkdirTemp("", "podfim-sidecar-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	app := filepath.Join(dir, "app")
	if err := buildApp(app); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: building the test app: %v\n", err)
		return 1
	}

	cmd := selfCmd("pause", os.Args[1:]...)
	cmd.Env = append(cmd.Env, appEnv+"="+app)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL, // and with pid 1, the whole pod dies
	}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "FAIL: the sidecar tests need root to create pid and mount namespaces (a pod of their own): %v\n", err)
		return 1
	}
	return 0
}

// buildApp builds testdata/app as a static binary: the app container's
// root has no libc.
func buildApp(out string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/app")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, b)
	}
	return nil
}

// pause is pid 1 of the test pod: it mounts the pod's /proc, starts the
// runner in its own mount namespace and reaps every process until the
// runner exits.
func pause() int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "test pod: %v\n", err)
		return 1
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("make mounts private: %w", err))
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fail(fmt.Errorf("mount /proc: %w", err))
	}
	cmd := selfCmd("runner", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("wait: %w", err))
		}
		if pid != cmd.Process.Pid {
			continue // an orphan: an app's worker, say
		}
		if ws.Signaled() {
			return fail(fmt.Errorf("runner killed by %v", ws.Signal()))
		}
		return ws.ExitStatus()
	}
}

// podfim is the sidecar container's process: podfim's main, as in
// cmd/podfim.
func podfim() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code) // GORACE=atexit_sleep_ms=0 is set for this role
}

// sidecarEnv is the environment of the podfim role: no PODFIM_* settings
// from outside, and no second of sleep at exit under the race detector (the
// shutdown test times the exit).
func sidecarEnv() []string {
	var env []string
	gorace := ""
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "PODFIM_"), strings.HasPrefix(kv, roleEnv+"="):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = strings.TrimPrefix(kv, "GORACE=")
		default:
			env = append(env, kv)
		}
	}
	return append(env, roleEnv+"=podfim", "GORACE="+strings.TrimSpace(gorace+" atexit_sleep_ms=0"))
}
