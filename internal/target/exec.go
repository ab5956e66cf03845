package target

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// This file is the part of /proc that execution drift (package drift)
// reads: the processes of the pod one by one, their command line, owner,
// parent and executable mappings, and a kill of one process by pidfd.

// Exited reports whether err says that a process exited (or its pid was
// reused, or it is a zombie) while it was read: not an error for a reader
// of a hostile container's processes, which may die at any time.
func Exited(err error) bool {
	return errors.Is(err, errVanished) || errors.Is(err, errSkipped) || errors.Is(err, ErrGone)
}

// PIDs appends the pids listed in /proc to buf[:0]: one getdents pass, no
// file of any process opened.
func (f *Finder) PIDs(buf []int) ([]int, error) {
	d, err := os.Open(f.proc())
	if err != nil {
		return buf[:0], fmt.Errorf("failed to list processes: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return buf[:0], fmt.Errorf("failed to list processes: %w", err)
	}
	buf = buf[:0]
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			buf = append(buf, pid)
		}
	}
	return buf, nil
}

// Process reads one process as Containers lists it. A process that exited,
// a kernel thread or a zombie gives an error for which Exited holds.
func (f *Finder) Process(pid int) (Process, error) {
	return readProcess(f.proc(), pid, nil)
}

// ExeLink reads the executable link of pid (one readlink, no check of the
// process's identity: a cheap look for an exec in place, to be confirmed
// with Process).
func (f *Finder) ExeLink(pid int) (string, error) {
	buf := make([]byte, 512)
	n, err := retry(func() (int, error) {
		return unix.Readlink(f.proc()+"/"+strconv.Itoa(pid)+"/exe", buf)
	})
	if err != nil {
		return "", fmt.Errorf("pid %d: %w", pid, errVanished)
	}
	return string(buf[:n]), nil
}

// FileID names one version of a file: its device and inode, and its
// ctime, which any change of content or metadata moves.
type FileID struct {
	Dev, Ino uint64
	Ctime    int64
}

// ExeID returns the identity of the file pid runs (a stat(2) of
// /proc/PID/exe, which the kernel resolves to the file the process
// executed, in whatever mount namespace). An exec of the same path after
// the file was replaced keeps the executable link as it was; its identity
// changes.
func (f *Finder) ExeID(pid int) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(f.proc()+"/"+strconv.Itoa(pid)+"/exe", &st); err != nil {
		return FileID{}, fmt.Errorf("pid %d: %w", pid, errVanished)
	}
	return FileID{Dev: st.Dev, Ino: st.Ino, Ctime: st.Ctim.Nano()}, nil
}

// MountNSOf reads the mount namespace of pid (one readlink of ns/mnt, no
// check of the process's identity: a cheap look for a process that moved
// to a mount namespace of its own, to be confirmed with Process).
func (f *Finder) MountNSOf(pid int) (uint64, error) {
	buf := make([]byte, 64)
	n, err := retry(func() (int, error) {
		return unix.Readlink(f.proc()+"/"+strconv.Itoa(pid)+"/ns/mnt", buf)
	})
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, errVanished)
	}
	return parseNS(string(buf[:n]), "mnt")
}

// Info is what an execution-drift finding says about a process beyond
// Process: its parent, owner and command line.
type Info struct {
	// PPID is the parent's pid in the reader's pid namespace; 0 when the
	// parent is outside it (the runtime that started the container's init or
	// an exec'd process).
	PPID int
	UID  int // real user ID
	// Cmdline are the arguments, at most maxBytes of them in total; the
	// arguments are raw bytes (hostile: escape them in any output).
	Cmdline []string
	// CmdlineTruncated says the command line was longer than maxBytes.
	CmdlineTruncated bool
	// Cwd is the working directory, a path in the process's root ("" if
	// unreadable).
	Cwd string
}

// Info reads p's parent, owner, working directory and command line (at
// most maxBytes), after checking p is still the process listed.
func (f *Finder) Info(p Process, maxBytes int) (Info, error) {
	d, err := openListed(f.proc(), p)
	if err != nil {
		return Info{}, err
	}
	defer d.close()
	var in Info
	b, err := d.readFile("stat")
	if err != nil {
		return in, err
	}
	if in.PPID, err = parsePPID(b); err != nil {
		return in, fmt.Errorf("failed to read %s/stat: %w", d.path, err)
	}
	b, err = d.readFile("status")
	if err != nil {
		return in, err
	}
	if in.UID, err = parseUID(b); err != nil {
		return in, fmt.Errorf("failed to read %s/status: %w", d.path, err)
	}
	if cwd, err := d.readlink("cwd"); err == nil {
		in.Cwd, _ = parseExe(cwd)
	}
	in.Cmdline, in.CmdlineTruncated, err = d.cmdline(maxBytes)
	return in, err
}

// cmdline reads /proc/PID/cmdline up to maxBytes.
func (d *procDir) cmdline(maxBytes int) ([]string, bool, error) {
	fd, err := d.openat("cmdline", unix.O_RDONLY)
	if err != nil {
		return nil, false, err
	}
	f := os.NewFile(uintptr(fd), d.path+"/cmdline")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(maxBytes)+1))
	if err != nil {
		return nil, false, d.err("cmdline", err)
	}
	truncated := len(b) > maxBytes
	if truncated {
		b = b[:maxBytes]
	}
	b = bytes.TrimSuffix(b, []byte{0})
	if len(b) == 0 {
		return nil, truncated, nil
	}
	return strings.Split(string(b), "\x00"), truncated, nil
}

// parsePPID returns field 4 of /proc/PID/stat.
func parsePPID(b []byte) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, errors.New("malformed stat: no parent pid")
	}
	return strconv.Atoi(f[1])
}

// parseUID returns the real user ID of a /proc/PID/status.
func parseUID(b []byte) (int, error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.Atoi(f[0])
	}
	return 0, errors.New("no Uid line")
}

// ExecMapping is a file-backed executable mapping of a process.
type ExecMapping struct {
	// Path is the file, in the process's root, as /proc/PID/maps names it
	// (a memfd is "/memfd:NAME"), without " (deleted)".
	Path    string
	Deleted bool // the file was unlinked (or replaced) since it was mapped
	Inode   uint64
}

// ExecMappings lists the distinct files that p maps executable, at most max
// of them, and how many more there were. The exe itself is one of them.
func (f *Finder) ExecMappings(p Process, max int) ([]ExecMapping, int, error) {
	var out []ExecMapping
	over := 0
	seen := map[string]bool{}
	err := eachMapsLine(f.proc(), p, func(line []byte) {
		m, ok := parseExecLine(line)
		if !ok || seen[m.Path] {
			return
		}
		seen[m.Path] = true
		if len(out) < max {
			out = append(out, m)
		} else {
			over++
		}
	})
	if err != nil {
		return nil, 0, err
	}
	return out, over, nil
}

// parseExecLine returns the file of a /proc/PID/maps line that maps it
// executable ("r-xp", "--xs", ...):
//
//	55d4c6a00000-55d4c6b00000 r-xp 00001000 00:2d 12 /bin/busybox
//	7f0000000000-7f0000001000 r-xp 00000000 00:01 5 /memfd:x (deleted)
func parseExecLine(line []byte) (ExecMapping, bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	var fields [5][]byte
	rest := line
	for i := range fields {
		rest = bytes.TrimLeft(rest, " ")
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			return ExecMapping{}, false // anonymous
		}
		fields[i], rest = rest[:j], rest[j:]
	}
	if perms := fields[1]; len(perms) != 4 || perms[2] != 'x' {
		return ExecMapping{}, false
	}
	path := string(bytes.TrimLeft(rest, " "))
	if !strings.HasPrefix(path, "/") {
		return ExecMapping{}, false // [vdso], [vsyscall]
	}
	ino, _ := strconv.ParseUint(string(fields[4]), 10, 64)
	path, deleted := parseExe(path)
	return ExecMapping{Path: strings.ReplaceAll(path, `\012`, "\n"), Deleted: deleted, Inode: ino}, true
}

// KillProcess sends SIGKILL to the one process p through a pidfd, checked
// against its start time after pinning, so a reused pid is never
// signalled. It reports false when p had already exited.
func (f *Finder) KillProcess(p Process) (bool, error) {
	return killProcess(f.proc(), p)
}

// PIDCounter reads the pid most recently allocated in the reader's pid
// namespace (the fifth field of /proc/loadavg): when it has not moved, no
// process was started in the pod, and /proc need not be listed. One pread
// of a file kept open, by its raw descriptor: os.File.Fd would put the
// file in blocking mode with an fcntl(2) at every call, and this is read
// 20 times a second by an idle sidecar.
type PIDCounter struct {
	fd   int
	name string
}

// OpenPIDCounter opens /proc/loadavg for LastPID.
func (f *Finder) OpenPIDCounter() (*PIDCounter, error) {
	name := f.proc() + "/loadavg"
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to open %s: %w", name, err)
	}
	return &PIDCounter{fd: fd, name: name}, nil
}

// Close closes the file.
func (c *PIDCounter) Close() error { return unix.Close(c.fd) }

// LastPID returns the last pid allocated in the caller's pid namespace.
func (c *PIDCounter) LastPID() (int, error) {
	var buf [128]byte
	n, err := retry(func() (int, error) { return unix.Pread(c.fd, buf[:], 0) })
	if err != nil {
		return 0, fmt.Errorf("failed to read %s: %w", c.name, err)
	}
	return parseLastPID(buf[:n])
}

// parseLastPID parses "0.26 0.31 0.29 1/123 4567\n": the last field.
func parseLastPID(b []byte) (int, error) {
	f := bytes.Fields(b)
	if len(f) < 5 {
		return 0, fmt.Errorf("malformed loadavg %q", b)
	}
	return strconv.Atoi(string(f[4]))
}
