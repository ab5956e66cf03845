package drift

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/target"
)

// fakeProc is a /proc of plain files and symlinks (no root needed): what
// target.Finder reads of a process is stat, ns/mnt, exe, cgroup, status,
// cwd, cmdline and maps.
type fakeProc struct {
	t   *testing.T
	dir string
}

// add writes /proc/PID for a process started at start in the mount
// namespace ns, running exe, in the cgroup of container id ("" for none).
func (f fakeProc) add(pid, ppid int, start, ns uint64, exe, id string, args ...string) target.Process {
	f.t.Helper()
	d := filepath.Join(f.dir, fmt.Sprint(pid))
	cg := "0::/\n"
	if id != "" {
		cg = "0::/machine.slice/libpod-" + id + ".scope\n"
	}
	stat := fmt.Sprintf("%d (%s) S %d 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n", pid, filepath.Base(exe), ppid, start)
	for _, err := range []error{
		os.MkdirAll(filepath.Join(d, "ns"), 0o755),
		os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644),
		os.WriteFile(filepath.Join(d, "cgroup"), []byte(cg), 0o644),
		os.WriteFile(filepath.Join(d, "status"), []byte("Name:\tx\nUid:\t65532\t65532\t65532\t65532\n"), 0o644),
		os.WriteFile(filepath.Join(d, "cmdline"), []byte(strings.Join(append([]string{exe}, args...), "\x00")+"\x00"), 0o644),
		os.WriteFile(filepath.Join(d, "maps"), nil, 0o644),
		os.Symlink(fmt.Sprintf("mnt:[%d]", ns), filepath.Join(d, "ns", "mnt")),
		os.Symlink(exe, filepath.Join(d, "exe")),
		os.Symlink("/", filepath.Join(d, "cwd")),
	} {
		if err != nil {
			f.t.Fatal(err)
		}
	}
	return target.Process{PID: pid, StartTime: start, MountNS: ns, Exe: exe, ContainerID: id}
}

func (f fakeProc) remove(pid int) {
	if err := os.RemoveAll(filepath.Join(f.dir, fmt.Sprint(pid))); err != nil {
		f.t.Fatal(err)
	}
}

// TestNestedMountNamespace: a process of the app container (its container
// ID) in a mount namespace of its own (`unshare -m`) names its files
// relative to its own root, which cannot be judged against the baseline:
// it is reported with reason namespace, not only logged. A process of
// another container is not; nor is one of the container's while its main
// process is gone (podman restarts a container under the same ID, in a new
// mount namespace, before the sidecar follows it).
func TestNestedMountNamespace(t *testing.T) {
	const (
		nestedNS, otherNS = 4026532002, 4026532003
	)
	id, other := podID, strings.Repeat("cd", 32)
	pod := newFakePod(t, "/app", []string{"app"}, Config{})
	proc := pod.proc
	proc.add(20, 0, 1001, otherNS, "/other", other)
	poll := func() []Finding { t.Helper(); return pod.poll(t) }
	if got := poll(); len(got) != 0 {
		t.Fatalf("the app and another container: findings %+v, want none", got)
	}

	proc.add(11, 10, 1002, nestedNS, "/bin/busybox", id, "sh", "-c", "mount --bind /tmp/x /bin/busybox")
	got := poll()
	if len(got) != 1 {
		t.Fatalf("after unshare -m: findings %+v, want one", got)
	}
	if f := got[0]; f.Reason != Namespace || f.Process.PID != 11 || f.Path != "/bin/busybox" ||
		f.Info.PPID != 10 || f.Info.UID != 65532 || f.CommandLine() != `/bin/busybox sh -c "mount --bind /tmp/x /bin/busybox"` {
		t.Errorf("finding = %+v (command line %s), want reason namespace for pid 11 /bin/busybox", f, f.CommandLine())
	}

	// A process of the container seen in its namespace that moves to one
	// of its own and execs the same path (`busybox unshare -m busybox sh`):
	// its link does not change, its namespace does.
	pod.write(t, "bin/busybox")
	proc.add(14, 10, 1004, appNS, "/bin/busybox", id, "unshare", "-m", "busybox", "sh")
	if got := poll(); len(got) != 0 {
		t.Fatalf("the image's busybox: findings %+v, want none", got)
	}
	link := filepath.Join(proc.dir, "14", "ns", "mnt")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fmt.Sprintf("mnt:[%d]", nestedNS), link); err != nil {
		t.Fatal(err)
	}
	if got := poll(); len(got) != 1 || got[0].Process.PID != 14 || got[0].Reason != Namespace {
		t.Fatalf("after its unshare: findings %+v, want pid 14 namespace", got)
	}

	// The main process gone (the container restarting): a process of the
	// same container ID in a new mount namespace is the next container's.
	proc.remove(10)
	proc.add(12, 0, 1003, nestedNS+10, "/app", id)
	if got := poll(); len(got) != 0 {
		t.Errorf("while the main process is gone: findings %+v, want none", got)
	}
	// A reused pid 10 (another start time) is no main process either.
	proc.add(10, 0, 2000, appNS, "/app", id)
	proc.add(13, 0, 2001, nestedNS, "/bin/busybox", id)
	if got := poll(); len(got) != 0 {
		t.Errorf("with pid 10 reused: findings %+v, want none", got)
	}
}

// TestHelperGrace: a process excused as a runtime's helper (runc init from
// a memfd, or from its detached bind mount, whose link reads "/") that has
// not exec'd within helperGrace is judged like any other: the excuse rests
// on a parent outside the pod, which clone(CLONE_PARENT) can forge.
func TestHelperGrace(t *testing.T) {
	id := podID
	now := time.Unix(1e9, 0)
	pod := newFakePod(t, "/app", []string{"app"}, Config{Clock: func() time.Time { return now }})
	proc := pod.proc
	poll := func(after time.Duration) []Finding {
		t.Helper()
		now = now.Add(after)
		return pod.poll(t)
	}
	poll(0)
	proc.add(11, 0, 1001, appNS, "/memfd:runc_cloned:/proc/self/exe (deleted)", id, "runc", "init")
	proc.add(12, 0, 1002, appNS, "/", id, "runc", "init")
	if got := poll(10 * time.Millisecond); len(got) != 0 {
		t.Fatalf("runtime helpers just seen: findings %+v, want none", got)
	}
	if got := poll(helperGrace - time.Second); len(got) != 0 {
		t.Fatalf("runtime helpers within the grace: findings %+v, want none", got)
	}
	got := poll(time.Second)
	want := map[int]Reason{11: Memory, 12: Added}
	if len(got) != len(want) {
		t.Fatalf("helpers past the grace: findings %+v, want pids 11 (memory) and 12 (added)", got)
	}
	for _, f := range got {
		if want[f.Process.PID] != f.Reason {
			t.Errorf("pid %d: reason %q, want %q", f.Process.PID, f.Reason, want[f.Process.PID])
		}
	}
	if got := poll(helperGrace); len(got) != 0 {
		t.Errorf("reported twice: %+v", got)
	}
	// A helper that moves to a mount namespace of its own is reported
	// as such, once, not again at each poll past the grace.
	proc.add(14, 0, 1004, appNS, "/", id, "runc", "init")
	if got := poll(10 * time.Millisecond); len(got) != 0 {
		t.Fatalf("a new helper: findings %+v", got)
	}
	link := filepath.Join(proc.dir, "14", "ns", "mnt")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("mnt:[4026532002]", link); err != nil {
		t.Fatal(err)
	}
	if got := poll(10 * time.Millisecond); len(got) != 1 || got[0].Reason != Namespace {
		t.Fatalf("the helper in a namespace of its own: findings %+v, want one namespace", got)
	}
	for range 3 {
		if got := poll(helperGrace); len(got) != 0 {
			t.Fatalf("reported again past the grace: %+v", got)
		}
	}

	// A helper that execs what it was asked within the grace is judged by
	// what it runs: the image's /app is no drift.
	proc.add(13, 0, 1003, appNS, "/", id, "runc", "init")
	if got := poll(10 * time.Millisecond); len(got) != 0 {
		t.Fatalf("a new helper: findings %+v", got)
	}
	proc.remove(13)
	proc.add(13, 0, 1003, appNS, "/app", id)
	if got := poll(10 * time.Millisecond); len(got) != 0 {
		t.Errorf("the helper exec'd the image's /app: findings %+v, want none", got)
	}
	if got := poll(helperGrace); len(got) != 0 {
		t.Errorf("after its exec, past the grace: findings %+v, want none", got)
	}
}

// The fake pod's app container: its mount namespace and container ID.
const appNS = 4026532001

var podID = strings.Repeat("ab", 32)

// fakePod is a Checker over a fake /proc whose app container's main
// process (pid 10) runs exe from a root holding files (each with its name
// as content).
type fakePod struct {
	proc fakeProc
	root string
	c    *Checker
	sink *sink
}

// newFakePod builds it; cfg gives what the test sets (Baseline, Covers,
// Clock), the rest is the fake's.
func newFakePod(t *testing.T, exe string, files []string, cfg Config) *fakePod {
	t.Helper()
	pod := &fakePod{proc: fakeProc{t: t, dir: t.TempDir()}, root: t.TempDir(), sink: &sink{ch: make(chan Finding, 16)}}
	for _, f := range files {
		pod.write(t, f)
	}
	root, err := scan.OpenRoot(pod.root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	main := pod.proc.add(10, 0, 1000, appNS, exe, podID)
	cfg.Finder = &target.Finder{Proc: pod.proc.dir, Self: -1, Infra: -1}
	cfg.Container = &target.Container{PID: 10, MountNS: appNS, Exe: exe, ContainerID: podID, Processes: []target.Process{main}}
	cfg.Root = root
	if cfg.Baseline == nil {
		cfg.Baseline = &fakeBase{}
	}
	pod.c = New(cfg, pod.sink)
	return pod
}

// write creates the executable file name (relative to the root).
func (p *fakePod) write(t *testing.T, name string) {
	t.Helper()
	path := filepath.Join(p.root, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(name), 0o755); err != nil {
		t.Fatal(err)
	}
}

// poll polls once and returns the findings it sent.
func (p *fakePod) poll(t *testing.T) []Finding {
	t.Helper()
	if err := p.c.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []Finding
	for {
		select {
		case f := <-p.sink.ch:
			got = append(got, f)
		default:
			return got
		}
	}
}
