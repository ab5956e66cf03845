// Package sidecar_test runs the real `podfim sidecar` in a pod built for the
// test out of Linux namespaces, and checks what it does to an app container
// that is tampered with: detection, readiness, kill, restart, escalation and
// shutdown.
//
// The pod is made the way a container runtime makes one (package testpod):
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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/podfim/podfim/internal/cli"
	"github.com/podfim/podfim/internal/testpod"
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

// testPod is the pod of these tests (package testpod): the runner runs the
// tests; role "podfim" is the sidecar, podfim's main.
func testPod() testpod.Pod {
	return testpod.Pod{
		Name:    "sidecar",
		RoleEnv: roleEnv,
		Runner:  "runner",
		Roles:   map[string]func() int{"podfim": podfim, "flood": floodRole, "probe": probeRole},
		Setup:   setup,
	}
}

func TestMain(m *testing.M) { testPod().Main(m) }

func selfCmd(role string, args ...string) *exec.Cmd { return testPod().Cmd(role, args...) }

// setup checks for root and builds the app, for every process of the pod.
func setup() ([]string, func(), error) {
	if os.Geteuid() != 0 {
		return nil, nil, errors.New("they need root: they build a pod of their own " +
			"(pid and mount namespaces, tmpfs roots) and the sidecar needs CAP_SYS_PTRACE and CAP_KILL")
	}
	dir, err := os.MkdirTemp("", "podfim-sidecar-test-")
	if err != nil {
		return nil, nil, err
	}
	app := filepath.Join(dir, "app")
	if err := buildApp(app); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("building the test app: %w", err)
	}
	return []string{appEnv + "=" + app}, func() { os.RemoveAll(dir) }, nil
}

// buildApp builds testdata/app as a static binary: the app container's
// root has no libc.
func buildApp(out string) error {
	// go test puts the go command that runs it first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/app")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, b)
	}
	return nil
}

// podfim is the sidecar container's process: podfim's main, as in
// cmd/podfim.
func podfim() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code) // GORACE=atexit_sleep_ms=0 is set for this role
	return code
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
