// Package drift owns execution drift: it watches the processes of the app
// container and reports each one that runs what the trusted baseline does
// not hold (a binary added after the baseline, wherever it lives; an entry
// whose content changed; a file deleted while it runs; a file on a volume;
// memory-backed code such as a memfd; a script given to an interpreter that
// the baseline does not hold).
//
// The mechanism is /proc polling of the pod's pid namespace (see
// docs/drift.md for the figures): every Interval one getdents of /proc
// finds the new pids, and only those are read. A process may exec in place
// (fork, then execve, keeps its pid), so the executable link of a process
// younger than youngFor is read again at every poll, and that of older
// ones every sweepEvery polls. What it reads of a hostile process is
// bounded (command line, mappings, the processes tracked), goes through
// package target (which pins every read to the process listed and never
// follows a link of the container into the sidecar's root), and a process
// that dies while it is read is not an error.
package drift

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/target"
)

// Reason is why a process is drift; it is the label value of
// podfim_exec_drift_total as it is.
type Reason = metrics.DriftReason

// Reasons.
const (
	Added   = metrics.DriftAdded
	Changed = metrics.DriftChanged
	Deleted = metrics.DriftDeleted
	Volume  = metrics.DriftVolume
	Memory  = metrics.DriftMemory
	Script  = metrics.DriftScript
	// Unverified: an entry of the baseline that could not be compared.
	Unverified = metrics.DriftUnverified
	// Namespace: a process of the container in a mount namespace of its
	// own (unshare -m), whose files are not judged.
	Namespace = metrics.DriftNamespace
)

// Bounds and defaults.
const (
	// DefaultInterval is how often /proc is polled: a new process is seen
	// within it (50 ms, half of the 100 ms the sidecar promises).
	DefaultInterval = 50 * time.Millisecond
	// DefaultMaxProcesses bounds the processes of the pod tracked at once;
	// beyond it new pids are counted (podfim_limit_overflows_total
	// {limit="processes"}) and looked at once room frees up.
	DefaultMaxProcesses = 4096
	// DefaultMaxMappings bounds the executable mappings read per process.
	DefaultMaxMappings = 1024
	// MaxCmdlineBytes bounds the command line kept of a process.
	MaxCmdlineBytes = 4096
	// youngFor: a process is "young" for this long after it was first
	// seen; its executable link is read at every poll, since a fork that
	// has not yet exec'd shows its parent's executable.
	youngFor = time.Second
	// sweepEvery: the executable links of older processes are read every
	// this many polls (an exec in place by a long-lived process).
	sweepEvery = 10
	// helperGrace is how long a process excused as a runtime's helper
	// (runc init, nsenter between setns and execve: milliseconds) may run
	// its file before it is judged like any other: the excuse rests on
	// its parent being outside the pod, which the app's main process (or
	// a shell of kubectl exec) can give a child of its own with
	// clone(CLONE_PARENT).
	helperGrace = 5 * time.Second
	// maxVerdicts bounds the verdicts kept per (path, inode, ctime); when
	// full the cache starts afresh (files are hashed again, nothing is
	// missed).
	maxVerdicts = 4096
)

// Finding is one drifted process.
type Finding struct {
	Process target.Process // pid, start time, exe
	Info    target.Info    // parent, uid, command line (empty when the process died first)
	// Path is the file that is drift: the executable, a mapped library or
	// the script, in the container's root.
	Path   string
	Reason Reason
	// Seen is when the poll that found the process started.
	Seen time.Time
}

// Lookup finds a baseline entry by path (*baseline.Baseline).
type Lookup interface {
	Lookup(path string) (*attr.Entry, bool)
}

// Sink receives findings; it is called from Run's goroutine.
type Sink interface {
	Drift(ctx context.Context, f Finding)
}

// Config configures a Checker.
type Config struct {
	Finder    *target.Finder
	Container *target.Container // the app container followed
	Root      *scan.Root        // its root, for the files processes run
	Baseline  Lookup
	// Covers reports whether the baseline's policy speaks of a path at
	// all (policy.Matcher.Covers): a file it does not cover and that is
	// not an entry cannot be called added (a baseline of /www says nothing
	// of /hello). nil: every path is covered.
	Covers func(path string) bool
	// MountPoints are the container's mount points (target.MountPoints);
	// a file under one other than "/" is on a volume.
	MountPoints  []string
	Interval     time.Duration // DefaultInterval if 0
	MaxProcesses int           // DefaultMaxProcesses if 0
	MaxFileBytes int64         // the largest file hashed (0: no limit)
	Metrics      *metrics.Sidecar
	Log          *slog.Logger
	Clock        func() time.Time
}

// tracked is what is remembered of one pid.
type tracked struct {
	start   uint64
	link    string // the executable link as last read
	mountNS uint64 // its mount namespace as last read
	// exe is the identity of the file it runs as last read (zero when it
	// could not be read): an exec of the same path after the file was
	// replaced leaves link as it was.
	exe     target.FileID
	seen    time.Time
	gen     uint64
	member  bool // in the container's mount namespace: checked
	pending bool // a runtime's exec helper: judged again once it execs
	// pendingSince is when the process was first found pending: past
	// helperGrace it is judged without the excuse.
	pendingSince time.Time
}

// fileKey names one version of a file: a write changes ctime, a
// replacement the inode.
type fileKey struct {
	path  string
	inode uint64
	ctime int64
}

// Checker watches the processes of one container.
type Checker struct {
	cfg      Config
	sink     Sink
	procs    map[int]*tracked
	verdicts map[fileKey]Reason // "": the file is the baseline's; Changed
	pids     []int
	counter  *target.PIDCounter // nil: /proc is listed at every poll
	lastPID  int
	gen      uint64
	polls    int
	warned   map[string]bool // warnings said once
	primed   bool            // had its first round in a Poller
}

// New returns a Checker; Run starts it.
func New(cfg Config, sink Sink) *Checker {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxProcesses <= 0 {
		cfg.MaxProcesses = DefaultMaxProcesses
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Checker{
		cfg: cfg, sink: sink,
		procs:    map[int]*tracked{},
		verdicts: map[fileKey]Reason{},
		warned:   map[string]bool{},
	}
}

// Run checks every process of the container now, then every new one, until
// ctx ends. It returns ctx's end as nil, and an error only when /proc
// cannot be listed.
func (c *Checker) Run(ctx context.Context) error {
	if pc, err := c.cfg.Finder.OpenPIDCounter(); err == nil {
		c.counter = pc
		defer func() { pc.Close(); c.counter = nil }()
	} else {
		c.warnOnce("counter", "cannot read the last pid; /proc is listed at every poll", slog.String("error", err.Error()))
	}
	// Pinned to one OS thread that sleeps in nanosleep(2) between polls:
	// a wake-up through the runtime's timers (a time.Ticker) cost 250 µs
	// of CPU here, this one 50 µs (docs/drift.md, "Cost"), and at 20
	// polls a second that is the idle sidecar's whole budget. The thread
	// is the poll's alone; the sink may still block it (an API call).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		if err := c.Poll(ctx); err != nil {
			return err
		}
		if !sleep(ctx, c.cfg.Interval) {
			return nil
		}
	}
}

// sleep waits d in nanosleep(2) on the calling thread and reports whether
// ctx is still alive: the end of ctx is seen at the next wake-up, within
// d, which is all a poller needs.
func sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for {
		var left unix.Timespec
		err := unix.Nanosleep(&ts, &left)
		if err != unix.EINTR {
			break
		}
		ts = left // a signal (the runtime's preemption) cut it short
	}
	return ctx.Err() == nil
}

// Poll looks at /proc once: new processes, and executable links that
// changed.
func (c *Checker) Poll(ctx context.Context) error {
	now := c.cfg.Clock()
	sweep := c.polls%sweepEvery == 0
	c.polls++
	if !c.started() {
		return c.relink(ctx, now, sweep)
	}
	pids, err := c.cfg.Finder.PIDs(c.pids)
	if err != nil {
		return err
	}
	c.pids = pids
	c.step(ctx, now, sweep, pids)
	return nil
}

// step looks at the pids listed in /proc: the new ones, and again the
// tracked ones that may have exec'd since (recheck).
func (c *Checker) step(ctx context.Context, now time.Time, sweep bool, pids []int) {
	c.gen++
	over := 0
	for _, pid := range pids {
		t := c.procs[pid]
		if t == nil {
			if len(c.procs) >= c.cfg.MaxProcesses {
				over++
				continue
			}
			c.look(ctx, pid, now)
			continue
		}
		t.gen = c.gen
		c.recheck(ctx, pid, t, now, sweep)
	}
	for pid, t := range c.procs {
		if t.gen != c.gen {
			delete(c.procs, pid)
		}
	}
	if over > 0 {
		c.cfg.Metrics.Overflow(metrics.LimitProcesses, over)
		c.warnOnce("processes", "more processes in the pod than execution drift tracks; the rest are checked when room frees up",
			slog.Int("limit", c.cfg.MaxProcesses))
	}
}

// started reports whether a process was started in the pod since the last
// poll (always true without the counter). The idle cost of execution drift
// is this one pread: listing /proc costs about ten times more.
func (c *Checker) started() bool {
	if c.counter == nil {
		return true
	}
	last, err := c.counter.LastPID()
	if err != nil {
		return true
	}
	moved := last != c.lastPID
	c.lastPID = last
	return moved
}

// relink is a poll that started no process: the executable links of the
// young and pending processes (every sweepEvery polls, all of them) are
// read again for an exec in place.
func (c *Checker) relink(ctx context.Context, now time.Time, sweep bool) error {
	for pid, t := range c.procs {
		c.recheck(ctx, pid, t, now, sweep)
	}
	return nil
}

// recheck looks at a tracked process again when its executable link or
// its mount namespace changed (an exec in place, its file deleted, an
// unshare): they are read for young and pending processes, and for all of
// them in a sweep. Foreign processes too: nsenter and a runtime's helper
// are seen in another mount namespace, join the container's, then exec. A
// pending process that has not exec'd within helperGrace is judged again
// without the excuse.
func (c *Checker) recheck(ctx context.Context, pid int, t *tracked, now time.Time, sweep bool) {
	if t.pending && now.Sub(t.pendingSince) >= helperGrace {
		c.look(ctx, pid, now)
		return
	}
	if !t.pending && !sweep && now.Sub(t.seen) >= youngFor {
		return
	}
	link, err := c.cfg.Finder.ExeLink(pid)
	if err != nil {
		return
	}
	if link != t.link {
		c.look(ctx, pid, now) // exec'd since, or its file was deleted
		return
	}
	// The same link in another mount namespace: `unshare -m` then an exec
	// of the same path, which the new namespace may have bound anything
	// over.
	if ns, err := c.cfg.Finder.MountNSOf(pid); err == nil && ns != t.mountNS {
		c.look(ctx, pid, now)
		return
	}
	// The same link, another file: the path was replaced, then exec'd
	// again by a process that ran it before (a re-exec to upgrade).
	if id, err := c.cfg.Finder.ExeID(pid); err == nil && id != t.exe {
		c.look(ctx, pid, now)
	}
}

// look reads pid and judges it when it is the container's.
func (c *Checker) look(ctx context.Context, pid int, now time.Time) {
	p, err := c.cfg.Finder.Process(pid)
	if err != nil {
		if !target.Exited(err) {
			c.warnOnce("read", "cannot read a process of the pod; its execution is not checked", slog.Int("pid", pid), slog.String("error", err.Error()))
		}
		return
	}
	link := p.Exe
	if p.ExeDeleted {
		link += " (deleted)"
	}
	t := c.procs[pid]
	if t == nil || t.start != p.StartTime {
		t = &tracked{start: p.StartTime, seen: now}
		c.procs[pid] = t
	}
	t.gen, t.link, t.mountNS = c.gen, link, p.MountNS
	t.exe, _ = c.cfg.Finder.ExeID(pid) // zero when gone: read again, then differs
	t.member = p.MountNS == c.cfg.Container.MountNS
	if !t.member {
		t.pending = false // only a process of the container is excused
		if !c.nested(p) {
			return // another container's, or a runtime's on its way in
		}
	}
	info, err := c.info(p)
	if err != nil && !target.Exited(err) {
		c.warnOnce("info", "cannot read a process's command line", slog.Int("pid", pid), slog.String("error", err.Error()))
	}
	path, reason, ok := p.Exe, Namespace, true
	if t.member {
		excuse := !t.pending || now.Sub(t.pendingSince) < helperGrace
		wasPending := t.pending
		path, reason, t.pending, ok = c.judge(p, info, excuse)
		if t.pending && !wasPending {
			t.pendingSince = now
		}
	}
	if ok {
		c.sink.Drift(ctx, Finding{Process: p, Info: info, Path: path, Reason: reason, Seen: now})
	}
}

// info reads p's parent, user and command line. A process caught inside
// execve already has its new executable but not yet its arguments: its
// /proc/PID/cmdline reads empty for a few microseconds. It is read again,
// a millisecond apart and at most three times, so that a finding names what
// runs; a process that empties its own arguments costs 3 ms once.
func (c *Checker) info(p target.Process) (target.Info, error) {
	info, err := c.cfg.Finder.Info(p, MaxCmdlineBytes)
	for i := 0; err == nil && len(info.Cmdline) == 0 && i < 3; i++ {
		time.Sleep(time.Millisecond)
		info, err = c.cfg.Finder.Info(p, MaxCmdlineBytes)
	}
	return info, err
}

// nested reports whether p, which is not in the container's mount
// namespace, is a process of the container (the same container ID) in a
// mount namespace of its own (`unshare -m`, a sandbox). Its files are named
// relative to its own root and mounts: they cannot be judged against the
// baseline through the container's root, so it is reported (Namespace)
// instead of being left unchecked. Not while the container's main process
// is gone: a container restarted by a runtime that keeps its ID (podman)
// runs in a new mount namespace until the sidecar follows it.
func (c *Checker) nested(p target.Process) bool {
	cont := c.cfg.Container
	if cont.ContainerID == "" || p.ContainerID != cont.ContainerID {
		return false
	}
	main := cont.Main()
	m, err := c.cfg.Finder.Process(main.PID)
	return err == nil && m.MountNS == cont.MountNS && (main.StartTime == 0 || m.StartTime == main.StartTime)
}

func (c *Checker) warnOnce(key, msg string, attrs ...slog.Attr) {
	if c.warned[key] {
		return
	}
	c.warned[key] = true
	c.cfg.Log.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}

// runtimeHelper reports whether p is a container runtime's exec helper
// caught between joining the container and exec'ing what it was asked to
// run: runc (1.1) re-executes a copy of itself sealed in a memfd
// ("runc_cloned:/proc/self/exe") as `runc init`, which setns()es into the
// container, so for a few milliseconds a process of the container runs
// from memory. Its parent is outside the pod's pid namespace (PPID 0).
// A process of the container can have that too (clone(CLONE_PARENT) from
// one whose parent is outside: the main process, a kubectl exec shell), so
// the excuse lasts helperGrace only.
func runtimeHelper(p target.Process, info target.Info) bool {
	return info.PPID == 0 && p.ExeDeleted && p.RuntimeInit()
}

// CommandLine is the command line for a log line or an Event: the
// arguments separated by spaces, each quoted as a Go string when it holds
// a space, a quote, a backslash or anything not printable (the arguments
// are the attacker's: no newline or terminal escape gets out), and "..."
// when it was cut.
func (f Finding) CommandLine() string {
	var b strings.Builder
	for i, a := range f.Info.Cmdline {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a == "" || strings.IndexFunc(a, needsQuote) >= 0 || !utf8.ValidString(a) {
			b.WriteString(strconv.QuoteToASCII(a))
		} else {
			b.WriteString(a)
		}
	}
	if f.Info.CmdlineTruncated {
		b.WriteString(" ...")
	}
	return b.String()
}

func needsQuote(r rune) bool {
	return r == ' ' || r == '"' || r == '\\' || r == '\'' || !unicode.IsGraphic(r) || r > unicode.MaxASCII
}
