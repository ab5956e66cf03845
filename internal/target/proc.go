package target

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Finder reads /proc. Its zero value is ready for use in the sidecar.
type Finder struct {
	// Proc is where procfs is mounted; "" means "/proc".
	Proc string
	// Self is a process in the sidecar's own mount namespace, which is
	// skipped; 0 means os.Getpid().
	Self int
	// Infra is the pod's infra process (pause, or podman's infra in
	// `podman kube play`), whose mount namespace is skipped; 0 means 1, a
	// negative value skips nothing.
	Infra int
	// SkipDenied leaves out every process it may not inspect, even with
	// CAP_SYS_PTRACE: the node agent (hostPID) lists the host's own
	// processes too, some of which a sandbox or security module keeps from
	// it (pid 1 of this CI machine's VM); none of them is a container it
	// protects, which it selects by container ID.
	SkipDenied bool
}

func (f *Finder) proc() string { return procOrDefault(f.Proc) }

func procOrDefault(proc string) string {
	if proc == "" {
		return "/proc"
	}
	return proc
}

func (f *Finder) self() int {
	if f.Self == 0 {
		return os.Getpid()
	}
	return f.Self
}

func (f *Finder) infra() int {
	if f.Infra == 0 {
		return 1
	}
	return f.Infra
}

// Containers lists the containers of the pod other than the sidecar's own
// and the infra container, sorted by main PID. Processes that exit while
// they are read, kernel threads and zombies are left out.
func (f *Finder) Containers() ([]Container, error) {
	proc := f.proc()
	self, err := f.readOwn(f.self(), "the sidecar's own process")
	if err != nil {
		return nil, err
	}
	skip := map[uint64]bool{self.MountNS: true}
	// denied is the first process the sidecar may not inspect for lack of
	// CAP_SYS_PTRACE (restricted mode): the infra process of a pod that
	// sets its user per container, another user's container, the
	// sidecar's own non-dumpable probes. None of them can be the target,
	// which must share the sidecar's uid and gid, so they are left out;
	// when nothing else is found, the denial says why.
	var denied error
	if infra := f.infra(); infra > 0 && infra != self.PID {
		p, err := f.readOwn(infra, "the infra process")
		switch {
		case errors.Is(err, errVanished):
			// No infra process (no shared pid namespace): nothing to skip.
		case deniedWithoutPtrace(err):
			denied = err
		case err != nil:
			return nil, err
		default:
			skip[p.MountNS] = true
		}
	}

	d, err := os.Open(proc)
	if err != nil {
		return nil, fmt.Errorf("failed to list processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("failed to list processes: %w", err)
	}
	var procs []Process
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		p, err := readProcess(proc, pid, skip)
		switch {
		case errors.Is(err, errVanished) || errors.Is(err, errSkipped):
			continue
		case f.SkipDenied && errors.As(err, new(*AccessError)):
			continue
		case deniedWithoutPtrace(err):
			denied = cmp.Or(denied, err)
			continue
		case err != nil:
			return nil, err
		}
		procs = append(procs, p)
	}
	cs := group(procs, self.ContainerID, proc)
	if len(cs) == 0 && denied != nil {
		return nil, denied
	}
	return cs, nil
}

// deniedWithoutPtrace reports an *AccessError of a sidecar that lacks
// CAP_SYS_PTRACE. With it, a denial is a security module's or a user
// namespace's, and stays an error.
func deniedWithoutPtrace(err error) bool {
	var ae *AccessError
	return errors.As(err, &ae) && !ae.Ptrace
}

// readOwn reads the mount namespace and container ID of the sidecar's own
// or the infra process.
func (f *Finder) readOwn(pid int, what string) (Process, error) {
	p, err := readProcess(f.proc(), pid, nil)
	if errors.Is(err, errVanished) {
		return p, fmt.Errorf("%s (pid %d) not found: %w", what, pid, err)
	}
	if err != nil {
		return p, fmt.Errorf("failed to read %s: %w", what, err)
	}
	return p, nil
}

// Find returns the one container that sel matches. It fails with an error
// satisfying errors.Is(err, ErrNoTarget) when none does (the application
// may not have started yet: retry), with an *AmbiguousError when several
// do, and with an *AccessError when /proc cannot be read for lack of
// privilege.
func (f *Finder) Find(sel Selector) (*Container, error) {
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	cs, err := f.Containers()
	if err != nil {
		return nil, err
	}
	return choose(sel, cs)
}

var (
	// errVanished: the process exited (or its pid was reused) while it was
	// read.
	errVanished = errors.New("process exited")
	// errSkipped: a process that is no container's (kernel thread, zombie)
	// or is in a skipped namespace.
	errSkipped = errors.New("process skipped")
)

// readProcess reads one process. Processes in the mount namespaces of skip
// are skipped before their executable and cgroup are read.
func readProcess(proc string, pid int, skip map[uint64]bool) (Process, error) {
	d, err := openProcDir(proc, pid)
	if err != nil {
		return Process{}, err
	}
	defer d.close()
	st, err := d.stat()
	if err != nil {
		return Process{}, err
	}
	if st.kernelThread() || st.dead() {
		return Process{}, errSkipped
	}
	p := Process{PID: pid, StartTime: st.StartTime}
	if p.MountNS, err = d.mountNS(); err != nil {
		return Process{}, err
	}
	if skip[p.MountNS] {
		return Process{}, errSkipped
	}
	// ENOENT here also covers a kernel thread that slipped through: it has
	// no executable.
	exe, err := d.readlink("exe")
	if err != nil {
		return Process{}, err
	}
	p.Exe, p.ExeDeleted = parseExe(exe)
	cg, err := d.readFile("cgroup")
	if err != nil {
		return Process{}, err
	}
	p.ContainerID = containerIDFromCgroup(string(cg))
	return p, nil
}

// procDir is an open /proc/PID directory. Everything read through it is
// about the one process it was opened for: once that process has exited,
// reads fail (as errVanished) instead of reaching a new process that reuses
// the pid.
type procDir struct {
	fd   int
	pid  int
	path string
}

func openProcDir(proc string, pid int) (*procDir, error) {
	d := &procDir{fd: -1, pid: pid, path: proc + "/" + strconv.Itoa(pid)}
	fd, err := retry(func() (int, error) {
		return unix.Open(d.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, d.err("", err)
	}
	d.fd = fd
	return d, nil
}

func (d *procDir) close() { unix.Close(d.fd) }

// maxProcFile bounds what is read of a /proc/PID file (stat, cgroup).
const maxProcFile = 64 << 10

func (d *procDir) readFile(name string) ([]byte, error) {
	fd, err := d.openat(name, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.path+"/"+name)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProcFile+1))
	if err != nil {
		return nil, d.err(name, err)
	}
	if len(b) > maxProcFile {
		return nil, fmt.Errorf("failed to read %s/%s: longer than %d bytes", d.path, name, maxProcFile)
	}
	return b, nil
}

func (d *procDir) openat(name string, flags int) (int, error) {
	fd, err := retry(func() (int, error) {
		return unix.Openat(d.fd, name, flags|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return -1, d.err(name, err)
	}
	return fd, nil
}

func (d *procDir) readlink(name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := retry(func() (int, error) { return unix.Readlinkat(d.fd, name, buf) })
		if err != nil {
			return "", d.err(name, err)
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= unix.PathMax*2 {
			return "", fmt.Errorf("failed to read %s/%s: link longer than %d bytes", d.path, name, len(buf))
		}
		buf = make([]byte, len(buf)*4)
	}
}

func (d *procDir) stat() (stat, error) {
	b, err := d.readFile("stat")
	if err != nil {
		return stat{}, err
	}
	st, err := parseStat(b)
	if err != nil {
		return stat{}, fmt.Errorf("failed to read %s/stat: %w", d.path, err)
	}
	return st, nil
}

func (d *procDir) mountNS() (uint64, error) {
	link, err := d.readlink("ns/mnt")
	if err != nil {
		return 0, err
	}
	ino, err := parseNS(link, "mnt")
	if err != nil {
		return 0, fmt.Errorf("failed to read %s/ns/mnt: %w", d.path, err)
	}
	return ino, nil
}

// err classifies an error from reading name in d: a process that exited is
// errVanished, a denied access an *AccessError.
func (d *procDir) err(name string, err error) error {
	path := d.path
	if name != "" {
		path += "/" + name
	}
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return fmt.Errorf("%s: %w", path, errVanished)
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		uid := -1
		if d.fd >= 0 {
			var st unix.Stat_t
			if unix.Fstat(d.fd, &st) == nil {
				uid = int(st.Uid)
			}
		}
		return &AccessError{PID: d.pid, UID: uid, Path: path, Ptrace: havePtrace(), Err: err}
	}
	return fmt.Errorf("failed to read %s: %w", path, err)
}

func retry(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// AccessError reports that the sidecar may not inspect a process: it lacks
// ptrace read access to it. errors.Is(err, fs.ErrPermission) holds.
type AccessError struct {
	PID  int
	UID  int    // owner of the process, -1 if unknown
	Path string // what could not be read, e.g. /proc/7/ns/mnt
	// Ptrace is whether the sidecar had CAP_SYS_PTRACE in its effective
	// set: if it had, a security module or a user namespace denied access.
	Ptrace bool
	Err    error
}

func (e *AccessError) Error() string {
	who := fmt.Sprintf("pid %d", e.PID)
	if e.UID >= 0 {
		who += fmt.Sprintf(" (uid %d; the sidecar runs as uid %d)", e.UID, os.Geteuid())
	}
	if e.Ptrace {
		return fmt.Sprintf("cannot inspect %s through %s: %v, although the sidecar has CAP_SYS_PTRACE: a security module (AppArmor, SELinux) or a user namespace boundary denies ptrace read access", who, e.Path, e.Err)
	}
	return fmt.Sprintf("cannot inspect %s through %s: %v: the sidecar needs the SYS_PTRACE capability (securityContext.capabilities.add: [SYS_PTRACE], effective for its user) to read another container's processes, or, in restricted mode (podfim.io/privileges: restricted), the same uid and gid as the app and an app process that is dumpable (no setuid or file capabilities)", who, e.Path, e.Err)
}

func (e *AccessError) Unwrap() error { return e.Err }

// havePtrace reports whether CAP_SYS_PTRACE is in the effective set.
func havePtrace() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_PTRACE/32].Effective&(1<<(unix.CAP_SYS_PTRACE%32)) != 0
}
