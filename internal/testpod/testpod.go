// Package testpod runs a package's tests inside a pod of their own, built
// out of Linux namespaces the way a container runtime builds one, so that
// /proc shows what a sidecar sees and nothing else of the machine:
//
//	go test's process (role "")  runs Setup, then starts
//	  "pause"   pid 1 of a new pid namespace, in a new mount namespace
//	            with the pod's own /proc; it starts the runner and reaps
//	            every process (orphans included) until the runner exits
//	  Runner    the sidecar container: in another mount namespace, runs
//	            the tests, which start "containers" (this binary again in
//	            another role, or any program) in new mount namespaces.
//
// Every process is the test binary, told its role by an environment
// variable. It needs root (CAP_SYS_ADMIN for the namespaces): the tests
// that use it fail without it, never skip. It is for tests only.
package testpod

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Pod describes a test binary's pod.
type Pod struct {
	// Name names the tests in messages ("target", "sidecar").
	Name string
	// RoleEnv is the environment variable that names a process's role.
	RoleEnv string
	// Runner is the role that runs the tests.
	Runner string
	// Roles are the other roles: each returns the process's exit code.
	Roles map[string]func() int
	// Setup, when set, runs in go test's own process before the pod
	// starts (to check for root or build an app, say): it returns
	// environment for the pod's processes and a cleanup to run after.
	Setup func() (env []string, cleanup func(), err error)
}

// Main is the body of the package's TestMain. It does not return.
//
// Roles other than the runner leave with exit(2), not os.Exit: with the
// race detector, os.Exit sleeps a second (GORACE=atexit_sleep_ms) to catch
// late reports, in every process.
func (p Pod) Main(m *testing.M) {
	switch role := os.Getenv(p.RoleEnv); role {
	case "":
		exit(p.run())
	case "pause":
		exit(p.pause())
	case p.Runner:
		os.Exit(m.Run())
	default:
		if f, ok := p.Roles[role]; ok {
			exit(f())
		}
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", p.RoleEnv, role)
		exit(2)
	}
}

func exit(code int) { syscall.Exit(code) }

// Cmd returns a command that runs this test binary in role, with args.
func (p Pod) Cmd(role string, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), p.RoleEnv+"="+role)
	return cmd
}

// run starts "pause" in new pid and mount namespaces and returns its exit
// code, which is the tests'.
func (p Pod) run() int {
	var env []string
	if p.Setup != nil {
		e, cleanup, err := p.Setup()
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %s tests: %v\n", p.Name, err)
			return 1
		}
		if cleanup != nil {
			defer cleanup()
		}
		env = e
	}
	cmd := p.Cmd("pause", os.Args[1:]...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL, // and with pid 1, the whole pod dies
	}
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "FAIL: the %s tests need root to create pid and mount namespaces (a pod of their own): %v\n", p.Name, err)
		return 1
	}
	return 0
}

// pause is pid 1 of the pod: it mounts the pod's /proc, starts the runner
// in its own mount namespace and reaps every process until the runner
// exits.
func (p Pod) pause() int {
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
	cmd := p.Cmd(p.Runner, os.Args[1:]...)
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
			return fail(fmt.Errorf("%s killed by %v", p.Runner, ws.Signal()))
		}
		return ws.ExitStatus()
	}
}
