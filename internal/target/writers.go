package target

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of Attribute: the work per finding is bounded whatever the app
// does (thousands of processes, a process with a million descriptors).
const (
	MaxAttributedProcs = 256  // processes of the container looked at
	MaxAttributedFDs   = 4096 // descriptors looked at per process
	maxCmdline         = 1024 // bytes of /proc/PID/cmdline read
)

// ProcInfo describes a process named by Attribute. Exe and Cmdline are the
// app's to choose: callers escape them.
type ProcInfo struct {
	PID, PPID, UID int
	StartTime      uint64 // clock ticks since boot (stat field 22)
	Exe            string
	// Cmdline is the arguments joined by spaces, cut at 1 KiB.
	Cmdline string
}

// Attribution is what Attribute found.
type Attribution struct {
	// Writers had the inode open for writing (O_WRONLY or O_RDWR).
	Writers []ProcInfo
	// Recent started at or after the since tick (and are not Writers).
	Recent []ProcInfo
	// Omitted counts processes and descriptors not looked at (bounds) and
	// processes that could not be read (not those that exited meanwhile).
	Omitted int
}

// Attribute finds the processes of container c (its processes now, read
// again from /proc) that have the file dev:ino open for writing, and those
// that started at or after since (clock ticks since boot, as
// /proc/PID/stat counts them; 0: none are recent). A process that exits
// while it is read is left out: that is no error. Best effort: a writer
// that closed the file or exited is not found.
func (f *Finder) Attribute(c *Container, dev, ino, since uint64) (Attribution, error) {
	var a Attribution
	cs, err := f.Containers()
	if err != nil {
		return a, err
	}
	var procs []Process
	for i := range cs {
		if cs[i].MountNS == c.MountNS && cs[i].ContainerID == c.ContainerID {
			procs = cs[i].Processes
		}
	}
	if len(procs) > MaxAttributedProcs {
		a.Omitted += len(procs) - MaxAttributedProcs
		procs = procs[:MaxAttributedProcs]
	}
	for _, p := range procs {
		writer, over, err := hasOpenForWrite(f.proc(), p.PID, dev, ino)
		a.Omitted += over
		if errors.Is(err, errVanished) {
			continue
		}
		if err != nil {
			a.Omitted++
			continue
		}
		if !writer && (since == 0 || p.StartTime < since) {
			continue
		}
		info, err := procInfo(f.proc(), p)
		if err != nil {
			continue // exited meanwhile
		}
		if writer {
			a.Writers = append(a.Writers, info)
		} else {
			a.Recent = append(a.Recent, info)
		}
	}
	return a, nil
}

// hasOpenForWrite reports whether process pid has dev:ino open for
// writing, and how many of its descriptors were over the bound.
func hasOpenForWrite(proc string, pid int, dev, ino uint64) (bool, int, error) {
	d, err := openProcDir(proc, pid)
	if err != nil {
		return false, 0, err
	}
	defer d.close()
	fdDir, err := d.openat("fd", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return false, 0, err
	}
	dir := os.NewFile(uintptr(fdDir), d.path+"/fd")
	defer dir.Close()
	names, err := dir.Readdirnames(MaxAttributedFDs)
	if errors.Is(err, io.EOF) {
		return false, 0, nil // no descriptors
	}
	if err != nil {
		return false, 0, d.err("fd", err)
	}
	over := 0
	if len(names) == MaxAttributedFDs {
		over = countRest(dir)
	}
	for _, name := range names {
		// fstatat through the magic link stats the open file itself,
		// wherever (and in whichever mount namespace) it is.
		var st unix.Stat_t
		if unix.Fstatat(fdDir, name, &st, 0) != nil || st.Ino != ino || st.Dev != dev {
			continue
		}
		if flags, ok := fdFlags(d, name); ok && flags&unix.O_ACCMODE != unix.O_RDONLY {
			return true, over, nil
		}
	}
	return false, over, nil
}

// countRest counts the names left in dir, a batch at a time: a process
// may hold a million descriptors, and only their number is wanted.
func countRest(dir *os.File) int {
	n := 0
	for {
		names, err := dir.Readdirnames(MaxAttributedFDs)
		n += len(names)
		if err != nil || len(names) == 0 {
			return n
		}
	}
}

// fdFlags reads the open flags of a descriptor from /proc/PID/fdinfo/N
// ("flags:\t0100001", octal).
func fdFlags(d *procDir, fd string) (int, bool) {
	b, err := d.readFile("fdinfo/" + fd)
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return int(n), err == nil
		}
	}
	return 0, false
}

// procInfo reads what an attribution says of p: its parent and uid from
// status, its command line.
func procInfo(proc string, p Process) (ProcInfo, error) {
	info := ProcInfo{PID: p.PID, StartTime: p.StartTime, Exe: p.Exe, UID: -1}
	d, err := openProcDir(proc, p.PID)
	if err != nil {
		return info, err
	}
	defer d.close()
	st, err := d.stat()
	if err != nil || st.StartTime != p.StartTime {
		return info, errVanished // the pid was reused
	}
	status, err := d.readFile("status")
	if err != nil {
		return info, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		fields := strings.Fields(v)
		switch {
		case k == "PPid" && len(fields) > 0:
			info.PPID, _ = strconv.Atoi(fields[0])
		case k == "Uid" && len(fields) > 1:
			info.UID, _ = strconv.Atoi(fields[1]) // effective
		}
	}
	if cmd, err := d.readPrefix("cmdline", maxCmdline); err == nil {
		cmd = bytes.TrimRight(cmd, "\x00")
		info.Cmdline = string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '}))
	}
	return info, nil
}

// readPrefix reads at most n bytes of a /proc/PID file (a command line
// may be megabytes long; its start is what names the process).
func (d *procDir) readPrefix(name string, n int) ([]byte, error) {
	fd, err := d.openat(name, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), d.path+"/"+name)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(n)))
	if err != nil {
		return nil, d.err(name, err)
	}
	return b, nil
}

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// TicksAt converts t to the clock ticks since boot that /proc/PID/stat's
// start times count, for Attribute's since.
func TicksAt(t time.Time) uint64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	boot := time.Duration(ts.Nano()) - time.Since(t)
	if boot < 0 {
		return 0
	}
	return uint64(boot / (time.Second / userHZ))
}
