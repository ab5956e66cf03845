package harness

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Down stops everything Up started and removes what it left: containers
// and their shims, mounts under Dir, the kubelet's kubepods cgroups, the
// system paths that did not exist before Up, and Dir itself.
func (c *Config) Down() error { return c.down(false) }

// failedLogs is where down(true) keeps the logs of a failed run; the next
// up removes it.
func (c *Config) failedLogs() string { return c.Dir + ".failed-logs" }

func (c *Config) down(keepLogs bool) error {
	t := time.Now()
	if _, err := os.Stat(c.Dir); os.IsNotExist(err) {
		c.logf("down: nothing at %s", c.Dir)
		return nil
	}
	var errs []error
	keep := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	// The kubelet first, so that it restarts nothing.
	keep(c.stop("kubelet", 10*time.Second))
	keep(c.restoreSysctls())
	if c.running("containerd") != 0 {
		// Best effort: what survives it is killed by pid below.
		if err := c.removeContainers(); err != nil {
			c.logf("down: removing containers: %v", err)
		}
	}
	keep(c.stop("containerd", 10*time.Second))
	keep(c.killLeftovers())
	keep(c.stop("registry", 5*time.Second))

	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range []string{"kube-scheduler", "kube-controller-manager", "kube-apiserver"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.stop(n, 15*time.Second)
			mu.Lock()
			keep(err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	keep(c.stop("etcd", 10*time.Second))

	keep(unmountUnder(c.Dir))
	keep(removeCgroups())
	if len(errs) == 0 {
		keep(c.removeSystemPaths())
	}
	if keepLogs {
		os.RemoveAll(c.failedLogs())
		if err := os.Rename(c.path("logs"), c.failedLogs()); err == nil {
			c.logf("logs kept in %s", c.failedLogs())
		}
	}
	if left := mountsUnder(c.Dir); len(left) > 0 {
		// Never let RemoveAll walk into a mount.
		errs = append(errs, fmt.Errorf("not removing %s: still mounted: %s", c.Dir, strings.Join(left, " ")))
	} else if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.logf("down in %s", since(t))
	return nil
}

// removeContainers kills and deletes every task and container in every
// containerd namespace, so the shims exit and unmount the rootfs. A task
// can vanish meanwhile: killing a pod's sandbox ends all processes of a
// shared process namespace, and the CRI plugin deletes their tasks.
func (c *Config) removeContainers() error {
	ctx := context.Background()
	out, err := c.ctr(ctx, "namespaces", "ls", "-q")
	if err != nil {
		return err
	}
	var errs []error
	gone := func(err error) bool { return err == nil || strings.Contains(err.Error(), "not found") }
	for _, ns := range strings.Fields(out) {
		tasks, err := c.ctr(ctx, "-n", ns, "tasks", "ls", "-q")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, id := range strings.Fields(tasks) {
			if _, err := c.ctr(ctx, "-n", ns, "tasks", "rm", "-f", id); !gone(err) {
				errs = append(errs, err)
			}
		}
		ctrs, err := c.ctr(ctx, "-n", ns, "containers", "ls", "-q")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, id := range strings.Fields(ctrs) {
			if _, err := c.ctr(ctx, "-n", ns, "containers", "rm", id); !gone(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// killLeftovers kills, by pid, what outlived containerd: processes still
// in the kubepods cgroups, and shims started for this cluster's socket.
func (c *Config) killLeftovers() error {
	var pids []int
	for _, dir := range kubepodsDirs() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	sock := c.containerdSock()
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.Split(string(b), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == sock {
				pids = append(pids, pid)
			}
		}
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	var stuck []string
	for _, pid := range pids {
		if !waitGone(pid, 5*time.Second) {
			stuck = append(stuck, strconv.Itoa(pid))
		}
	}
	if len(stuck) > 0 {
		return fmt.Errorf("processes survive SIGKILL: %s", strings.Join(stuck, " "))
	}
	return nil
}

// mounts returns the mount points from /proc/self/mountinfo.
func mounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func mountsUnder(dir string) []string {
	var out []string
	for _, m := range mounts() {
		if m == dir || strings.HasPrefix(m, dir+"/") {
			out = append(out, m)
		}
	}
	return out
}

// unmountUnder unmounts everything at or below dir, deepest first.
func unmountUnder(dir string) error {
	for round := 0; round < 10; round++ {
		ms := mountsUnder(dir)
		if len(ms) == 0 {
			return nil
		}
		sort.Slice(ms, func(i, j int) bool { return len(ms[i]) > len(ms[j]) })
		for _, m := range ms {
			if err := syscall.Unmount(m, 0); err != nil {
				syscall.Unmount(m, syscall.MNT_DETACH)
			}
		}
	}
	if ms := mountsUnder(dir); len(ms) > 0 {
		return fmt.Errorf("cannot unmount: %s", strings.Join(ms, " "))
	}
	return nil
}

// cgroupMounts returns the mount points of every cgroup hierarchy.
func cgroupMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		i := strings.Index(l, " - ")
		f := strings.Fields(l)
		if i < 0 || len(f) < 5 {
			continue
		}
		if fst := strings.Fields(l[i+3:]); len(fst) > 0 && (fst[0] == "cgroup" || fst[0] == "cgroup2") {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out
}

// kubepodsDirs are the kubelet's top cgroups (cgroupfs driver, cgroupRoot
// /) in every hierarchy.
func kubepodsDirs() []string {
	var out []string
	for _, m := range cgroupMounts() {
		d := filepath.Join(m, "kubepods")
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// removeCgroups removes the kubepods trees, children first. A cgroup
// whose last process just died can be busy for a moment: retry.
func removeCgroups() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		for _, top := range kubepodsDirs() {
			var dirs []string
			filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
			for _, d := range dirs {
				if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
					left = append(left, d)
				}
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cannot remove cgroups: %s", strings.Join(left, " "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeSystemPaths removes the system paths Up recorded as missing,
// unless something is mounted below them or a containerd serves there.
func (c *Config) removeSystemPaths() error {
	// The kubelet links container logs into /var/log/containers whatever
	// its podLogsDir; drop the links into this cluster.
	if links, err := os.ReadDir("/var/log/containers"); err == nil {
		for _, l := range links {
			p := filepath.Join("/var/log/containers", l.Name())
			if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, c.Dir+"/") {
				os.Remove(p)
			}
		}
	}
	b, err := os.ReadFile(c.path("created-system-paths"))
	if err != nil {
		return nil
	}
	var errs []error
	for _, p := range strings.Fields(string(b)) {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if ms := mountsUnder(p); len(ms) > 0 {
			errs = append(errs, fmt.Errorf("not removing %s: mounted: %s", p, strings.Join(ms, " ")))
			continue
		}
		if _, err := os.Stat(filepath.Join(p, "containerd.sock")); err == nil {
			continue // another containerd started meanwhile
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
