package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mountNSOf(t *testing.T, pid int) uint64 {
	t.Helper()
	link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := parseNS(link, "mnt")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func pidsOf(c Container) []int {
	var pids []int
	for _, p := range c.Processes {
		pids = append(pids, p.PID)
	}
	return pids
}

func byPID(cs []Container, pid int) *Container {
	for i := range cs {
		if slices.Contains(pidsOf(cs[i]), pid) {
			return &cs[i]
		}
	}
	return nil
}

func TestContainers(t *testing.T) {
	a := startApp(t, appOpts{worker: true})                    // two processes, one namespace
	b := startSleep(t)                                         // one process, another
	own := startIn(t, exec.Command("/bin/sleep", "60"), false) // the sidecar's namespace
	waitExe(t, a.worker, testExe(t))

	cs, err := (&Finder{}).Containers()
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("got %d containers, want 2: %+v", len(cs), cs)
	}
	ca, cb := cs[0], cs[1]
	if ca.PID != a.pid || !slices.Equal(pidsOf(ca), []int{a.pid, a.worker}) {
		t.Errorf("container a: main %d, processes %v; want %d, [%d %d]", ca.PID, pidsOf(ca), a.pid, a.pid, a.worker)
	}
	if ca.MountNS != mountNSOf(t, a.pid) || ca.Processes[1].MountNS != ca.MountNS {
		t.Errorf("container a: mount ns %d, want %d for both", ca.MountNS, mountNSOf(t, a.pid))
	}
	if ca.Exe != testExe(t) {
		t.Errorf("container a: exe %q, want %q", ca.Exe, testExe(t))
	}
	if cb.PID != b.pid || len(cb.Processes) != 1 || cb.Exe != sleepExe(t) || cb.MountNS != mountNSOf(t, b.pid) {
		t.Errorf("container b: %+v; want pid %d exe %s", cb, b.pid, sleepExe(t))
	}
	if ca.MountNS == cb.MountNS {
		t.Error("a and b share a mount namespace")
	}
	for _, c := range cs {
		if c.MountNS == mountNSOf(t, os.Getpid()) || c.MountNS == mountNSOf(t, 1) {
			t.Errorf("container %s is the sidecar's or the infra's", &c)
		}
		if p := c.Main(); p.StartTime == 0 || p.PID != c.PID {
			t.Errorf("container %s: main process %+v", &c, p)
		}
	}
	if byPID(cs, own.pid) != nil {
		t.Errorf("pid %d, in the sidecar's mount namespace, was listed", own.pid)
	}

	// Seen from a's namespace (Self), the sidecar is a container and a is
	// not; with no infra (Infra < 0), pause is one too.
	cs, err = (&Finder{Self: a.pid, Infra: -1}).Containers()
	if err != nil {
		t.Fatal(err)
	}
	if byPID(cs, a.pid) != nil || byPID(cs, b.pid) == nil || byPID(cs, os.Getpid()) == nil || byPID(cs, 1) == nil {
		t.Errorf("Finder{Self: %d, Infra: -1}: %v", a.pid, cs)
	}
	if c := byPID(cs, os.Getpid()); c != nil && !slices.Contains(pidsOf(*c), own.pid) {
		t.Errorf("sidecar container %v lacks pid %d", pidsOf(*c), own.pid)
	}
}

func TestFind(t *testing.T) {
	a := startApp(t, appOpts{worker: true})
	b := startSleep(t)
	f := &Finder{}

	_, err := f.Find(Selector{})
	var amb *AmbiguousError
	if !errors.As(err, &amb) || !errors.Is(err, ErrAmbiguous) || len(amb.Candidates) != 2 {
		t.Fatalf("Find(zero) with two containers: %v", err)
	}
	want := fmt.Sprintf("found 2 candidate containers (exe %s pid %d, exe %s pid %d); select one with --target-name, --target-exe or --target-container",
		testExe(t), a.pid, sleepExe(t), b.pid)
	if got := err.Error(); !strings.Contains(got, "found 2 candidate containers (exe ") || !strings.HasSuffix(got, "; select one with --target-name, --target-exe or --target-container") {
		t.Errorf("error %q, want like %q", got, want)
	}

	c, err := f.Find(Selector{Exe: sleepExe(t)})
	if err != nil || c.PID != b.pid {
		t.Fatalf("Find(exe sleep) = %v, %v; want pid %d", c, err, b.pid)
	}
	c, err = f.Find(Selector{Exe: testExe(t)})
	if err != nil || c.PID != a.pid {
		t.Fatalf("Find(exe test) = %v, %v; want pid %d", c, err, a.pid)
	}
	if _, err := f.Find(Selector{Exe: "/no/such/exe"}); !errors.Is(err, ErrNoTarget) {
		t.Errorf("Find(exe /no/such/exe): %v, want ErrNoTarget", err)
	}
	if _, err := f.Find(Selector{Exe: "relative"}); err == nil {
		t.Error("Find(exe relative) did not fail")
	}

	b.kill()
	c, err = f.Find(Selector{})
	if err != nil || c.PID != a.pid {
		t.Fatalf("Find(zero) with one container = %v, %v; want pid %d", c, err, a.pid)
	}
	a.kill()
	killPID(t, a.worker)
	if _, err := f.Find(Selector{}); !errors.Is(err, ErrNoTarget) {
		t.Errorf("Find(zero) with none: %v, want ErrNoTarget", err)
	}
}

func TestFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events := make(chan Event)
	done := make(chan error, 1)
	x := startSleep(t)
	go func() { done <- (&Finder{}).Follow(ctx, Selector{}, 0, events) }()

	// next returns the next event but Lost, which may come between a kill
	// and the next start, when skip is set.
	next := func(what string, skipLost bool) Event {
		t.Helper()
		timeout := time.After(time.Second)
		for {
			select {
			case ev := <-events:
				if skipLost && ev.Kind == Lost {
					continue
				}
				return ev
			case err := <-done:
				t.Fatalf("%s: Follow returned %v", what, err)
			case <-timeout:
				t.Fatalf("%s: no event within 1s", what)
			}
		}
	}

	ev := next("start", false)
	if ev.Kind != Found || ev.Container.PID != x.pid || ev.Previous != nil {
		t.Fatalf("got %v %v, want found pid %d", ev.Kind, ev.Container, x.pid)
	}

	// Killed, then a new one in a fresh namespace.
	x.kill()
	y := startSleep(t)
	ev = next("restart", true)
	if ev.Kind != Restarted || ev.Container.PID != y.pid || ev.Previous.PID != x.pid {
		t.Fatalf("got %v %v (previous %v), want restarted pid %d", ev.Kind, ev.Container, ev.Previous, y.pid)
	}

	// A new one while the old one still runs: the old one is still
	// followed; when it ends, the new one is.
	z := startSleep(t)
	time.Sleep(2 * DefaultInterval)
	y.kill()
	ev = next("overlapping restart", false)
	if ev.Kind != Restarted || ev.Container.PID != z.pid || ev.Previous.PID != y.pid {
		t.Fatalf("got %v %v (previous %v), want restarted pid %d", ev.Kind, ev.Container, ev.Previous, z.pid)
	}

	z.kill()
	ev = next("exit", false)
	if ev.Kind != Lost || ev.Container != nil || ev.Previous.PID != z.pid {
		t.Fatalf("got %v %v (previous %v), want lost pid %d", ev.Kind, ev.Container, ev.Previous, z.pid)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("Follow returned %v after cancel, want nil", err)
	}
}

func TestOpenRoot(t *testing.T) {
	mark := t.TempDir()
	a := startApp(t, appOpts{mark: mark, worker: true})
	c, err := (&Finder{}).Find(Selector{})
	if err != nil {
		t.Fatal(err)
	}

	// The tmpfs with the mark exists in a's namespace only.
	if _, err := os.Stat(mark + "/mark"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("mark visible in the sidecar's namespace: %v", err)
	}
	f, err := c.OpenRoot()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if want := fmt.Sprintf("/proc/%d/root", a.pid); f.Name() != want {
		t.Errorf("OpenRoot through %s, want %s (the main process)", f.Name(), want)
	}
	if got := readMark(t, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), mark); got != "app" {
		t.Errorf("mark through OpenRoot: %q", got)
	}
	root, err := c.Root()
	if err != nil || root != fmt.Sprintf("/proc/%d/root", a.pid) {
		t.Errorf("Root() = %q, %v", root, err)
	}
	// The app's tmpfs is one of its mount points (and not one of ours).
	mounts, err := c.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	if mps := mounts.Points(); !slices.Contains(mps, filepath.Clean(mark)) {
		t.Errorf("Mounts() = %q, want %s", mps, mark)
	}
	if !slices.Contains(mounts.Ancestors(), filepath.Dir(filepath.Clean(mark))) {
		t.Errorf("Mounts().Ancestors() = %q, lacks %s", mounts.Ancestors(), filepath.Dir(mark))
	}

	// The main process exits: the worker's root is used, and the directory
	// opened before stays valid while the namespace lives.
	a.kill()
	g, err := c.OpenRoot()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if want := fmt.Sprintf("/proc/%d/root", a.worker); g.Name() != want {
		t.Errorf("OpenRoot through %s, want %s", g.Name(), want)
	}
	if got := readMark(t, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), mark); got != "app" {
		t.Errorf("mark through the root opened before the main process exited: %q", got)
	}
	// Once no process is left, the namespace and its submounts go; the
	// opened root directory itself stays usable.
	killPID(t, a.worker)
	if _, err := os.Stat(fmt.Sprintf("/proc/self/fd/%d/%s", g.Fd(), strings.TrimPrefix(mark, "/"))); err != nil {
		t.Errorf("root opened before exit: %v", err)
	}
	if _, err := c.OpenRoot(); !errors.Is(err, ErrGone) {
		t.Errorf("OpenRoot after exit: %v, want ErrGone", err)
	}
	if _, err := c.Root(); !errors.Is(err, ErrGone) {
		t.Errorf("Root after exit: %v, want ErrGone", err)
	}
}

func readMark(t *testing.T, root, mark string) string {
	t.Helper()
	r, err := os.OpenRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fh, err := r.Open(strings.TrimPrefix(mark, "/") + "/mark")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b, err := io.ReadAll(fh)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A process of the container that chroot()ed into a decoy tree is not used
// as the container's root.
func TestOpenRootChroot(t *testing.T) {
	decoy := t.TempDir()
	a := startApp(t, appOpts{worker: true, chroot: decoy})
	c, err := (&Finder{}).Find(Selector{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.OpenRoot()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if want := fmt.Sprintf("/proc/%d/root", a.worker); f.Name() != want {
		t.Errorf("OpenRoot through %s, want the worker's %s", f.Name(), want)
	}

	killPID(t, a.worker)
	if _, err := c.OpenRoot(); err == nil || !strings.Contains(err.Error(), "chroot") || errors.Is(err, ErrGone) {
		t.Errorf("OpenRoot with only a chrooted process: %v", err)
	}
}

// As another user without CAP_SYS_PTRACE, the sidecar cannot read the pod's
// processes and says so; with only CAP_SYS_PTRACE, it can.
func TestAccess(t *testing.T) {
	a := startSleep(t)
	// The test binary's directory is private to root: copy it.
	dir, err := os.MkdirTemp("", "podfim-target-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "probe")
	copyFile(t, testExe(t), exe)

	run := func(caps []uintptr) string {
		t.Helper()
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), testPod().RoleEnv+"=probe")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
			AmbientCaps: caps,
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		return strings.TrimSpace(string(out))
	}

	out := run(nil)
	if !strings.HasPrefix(out, "access 1 false ") || !strings.Contains(out, "SYS_PTRACE") || !strings.Contains(out, "uid 0") {
		t.Errorf("without CAP_SYS_PTRACE: %s", out)
	}
	out = run([]uintptr{unix.CAP_SYS_PTRACE})
	if want := fmt.Sprintf("ok %d", a.pid); out != want {
		t.Errorf("with CAP_SYS_PTRACE: %q, want %q", out, want)
	}
}

// In restricted mode the sidecar runs as the app's uid and gid without
// CAP_SYS_PTRACE: it finds the app container although it may not inspect
// the infra process (root) nor another user's container, which cannot be
// its target; with nothing it may inspect, the denial says why.
func TestAccessSameUser(t *testing.T) {
	other := startSleep(t) // another container, as root
	dir, err := os.MkdirTemp("", "podfim-target-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "probe")
	copyFile(t, testExe(t), exe)
	as := &syscall.Credential{Uid: 65534, Gid: 65534}
	probeAs := func(env ...string) string {
		t.Helper()
		cmd := exec.Command(exe)
		cmd.Env = append(append(os.Environ(), testPod().RoleEnv+"=probe"), env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: as}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	if out := probeAs(); !strings.HasPrefix(out, "access ") || !strings.Contains(out, "SYS_PTRACE") {
		t.Errorf("no process of its own user: %q, want the denial", out)
	}
	// The node agent lists the host's processes too, some of which it may
	// not inspect: they are left out, never an error (SkipDenied).
	if out := probeAs(skipEnv + "=1"); out != "ok" {
		t.Errorf("listing as the node agent, nothing it may inspect: %q, want ok and no container", out)
	}

	cmd := exec.Command("/bin/sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Cloneflags: syscall.CLONE_NEWNS, Credential: as}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	app := &proc{cmd: cmd, pid: cmd.Process.Pid}
	t.Cleanup(app.kill)
	waitExe(t, app.pid, sleepExe(t))
	if out, want := probeAs(), fmt.Sprintf("ok %d", app.pid); !strings.HasPrefix(out, want) || strings.Contains(out, fmt.Sprint(other.pid)) {
		t.Errorf("same user as the app: %q, want %q (not the root container %d)", out, want, other.pid)
	}
	if out, want := probeAs(skipEnv+"=1"), fmt.Sprintf("ok %d", app.pid); !strings.HasPrefix(out, want) || strings.Contains(out, fmt.Sprint(other.pid)) {
		t.Errorf("as the node agent: %q, want %q (not the root container %d)", out, want, other.pid)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}
