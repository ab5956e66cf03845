package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A daemon is one long-running process of the cluster. Its pidfile holds
// "PID STARTTIME EXE" so that a recycled pid is never signalled.
type daemon struct {
	name string
	bin  string
	args []string
	env  []string

	exited chan struct{} // closed when a process this harness started exits
	err    error         // its exit status, valid after exited is closed
}

// Order of start; down stops them in reverse.
var daemonNames = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "registry", "containerd", "kubelet"}

func (c *Config) pidfile(name string) string { return c.path("run", name+".pid") }
func (c *Config) logfile(name string) string { return c.path("logs", name+".log") }

// start runs d in its own session with stdin from /dev/null and output to
// its log file, so no pipe of the caller stays open, and records its pid.
func (c *Config) start(d *daemon) error {
	for _, dir := range []string{c.path("run"), c.path("logs")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	logf, err := os.OpenFile(c.logfile(d.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(d.bin, d.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(baseEnv(c), d.env...)
	cmd.Dir = c.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", d.name, err)
	}
	pid := cmd.Process.Pid
	st, _ := startTime(pid)
	if err := os.WriteFile(c.pidfile(d.name), fmt.Appendf(nil, "%d %d %s\n", pid, st, d.bin), 0o644); err != nil {
		cmd.Process.Kill()
		return err
	}
	d.exited = make(chan struct{})
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	return nil
}

// baseEnv is a clean environment for the daemons: a PATH with the cached
// binaries and the sbin directories (runc, mount, iptables), no proxies.
func baseEnv(c *Config) []string {
	env := []string{"PATH=" + filepath.Join(c.Cache, "bin") + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	for _, k := range []string{"LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// running returns the pid recorded for name if that process still runs
// (and is not a zombie); 0 otherwise.
func (c *Config) running(name string) int {
	b, err := os.ReadFile(c.pidfile(name))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pid, err1 := strconv.Atoi(f[0])
	st, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 1 {
		return 0
	}
	if now, ok := startTime(pid); !ok || now != st {
		return 0
	}
	return pid
}

// startTime reads field 22 of /proc/PID/stat; ok is false for a process
// that is gone or a zombie.
func startTime(pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, err == nil
}

func alive(pid int) bool {
	_, ok := startTime(pid)
	return ok
}

// stop sends SIGTERM to the daemon recorded for name, then SIGKILL after
// grace, and waits until it is gone.
func (c *Config) stop(name string, grace time.Duration) error {
	pid := c.running(name)
	if pid == 0 {
		os.Remove(c.pidfile(name))
		return nil
	}
	if err := killWait(pid, grace); err != nil {
		return fmt.Errorf("%s (pid %d): %w", name, pid, err)
	}
	os.Remove(c.pidfile(name))
	return nil
}

func killWait(pid int, grace time.Duration) error {
	syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, grace) {
		return nil
	}
	syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, 10*time.Second) {
		return nil
	}
	return errors.New("still running after SIGKILL")
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !alive(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail returns the last n lines of a daemon's log.
func (c *Config) tail(name string, n int) string {
	b, err := os.ReadFile(c.logfile(name))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
