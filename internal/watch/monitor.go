// Package watch is the sidecar's detection loop for one target root: a full
// verification at start, inotify on every watched directory for low latency,
// and scheduled quick and full checks. A lost event (queue overflow, a watch
// gone, the watch limit hit) always falls back to a rescan: there are no
// silent gaps.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/origin"
	"github.com/podfim/podfim/internal/scan"
)

// Matcher is the compiled policy (policy.Matcher satisfies it).
type Matcher interface {
	scan.Matcher
	// Transient reports whether a write to path that left its content as
	// it was is a finding (the rule's `transient`, default true).
	Transient(path string) bool
}

// Attributes of findings the monitor adds to those compare reports. Both
// concern protected files: those whose rule compares a content hash and
// does not let them grow (ReadOnly-like, not Growing).
const (
	// AttrMapped: a process of the app holds a writable shared mapping of
	// the file (Config.Mappings). Writes through it change the content
	// without write(2): no inotify event until munmap, no new mtime or
	// ctime until writeback (on tmpfs, never), so a quick check reuses the
	// old hash. The holder is the finding whatever the content is now;
	// full checks, which hash every file, remain the backstop.
	AttrMapped = "mmap"
	// AttrTransient: the file was written (an inotify write event) and
	// matches the baseline again when it is checked: a tamper reverted
	// within the coalescing window (a few ms) that a policy without ctime
	// would otherwise never report.
	AttrTransient = "transient"
)

// Mapping is a writable shared mapping of a file by a process of the
// target (target.Mapping, which the sidecar passes on).
type Mapping struct {
	PID  int
	Exe  string
	Path string
}

// Sink receives what the monitor finds; the respond stage implements it
// and owns the record of open violations (the monitor keeps none).
type Sink interface {
	// Finding is called once per distinct state of a violation seen by
	// this monitor. detected is when the change was first seen (event
	// read, or scan start).
	Finding(ctx context.Context, f compare.Finding, detected time.Time)
	// Resolved is called when a path a check found matching the baseline
	// (or its accepted state) may have an open violation: one this monitor
	// reported, or one of Open. The sink ignores a path with none.
	Resolved(path string)
	// Open returns the paths with an open violation, those left by an
	// earlier container included: a whole-tree check resolves every one it
	// does not find again, so a new container's first full check resolves
	// what it is clean of.
	Open() []string
	// Scanned reports a check of the whole tree (full or quick) or of the
	// paths of an event batch.
	Scanned(kind metrics.ScanType, err error, took time.Duration, entries int)
	// Rescan reports a fall back to a whole-tree check and why.
	Rescan(reason metrics.RescanReason)
	// Incomplete is called at the end of every whole-tree check, before
	// Scanned: n is the number of paths it could not compare in full (not
	// readable, not hashed, not descended: scan.Warning.Incomplete), 0 when
	// it compared everything; sample holds the first MaxWarningSample of
	// them. Open violations of those paths stay open.
	Incomplete(kind metrics.ScanType, n int, sample []scan.Warning)
	// Omitted reports findings not passed on because the monitor holds
	// Config.MaxFindings violations already: at the end of every
	// whole-tree check, those it left out (check true, 0 included: the
	// count replaces the last), and after an event check, those it left
	// out (check false: added). The pod must stay out of service while any
	// are left out.
	Omitted(n int, check bool)
}

// Config says how the monitor checks.
type Config struct {
	Matcher   Matcher
	Baseline  *Index       // the trusted state: streamed by whole-tree checks, looked up for single paths
	Scan      scan.Options // Matcher and Quick are set by the monitor
	Inotify   bool
	Quick     time.Duration // interval of quick checks; 0 disables them
	Full      time.Duration // interval of full checks; 0 disables them
	Coalesce  time.Duration // how long to gather a burst of events; default 2 ms
	MaxEvents int           // events handled one by one per batch before falling back to a quick rescan; default 1024
	// EventHashBytes bounds the bytes one event batch hashes before the
	// loop goes on: its paths are checked cheapest first, and those whose
	// hashing would exceed the rest of the budget are checked in the
	// background, one at a time (see slowLane). Default
	// DefaultEventHashBytes.
	EventHashBytes int64
	// MaxFindings bounds the violations the monitor passes on and
	// remembers (and so the responder's ledger, the log and the Events): an
	// app that creates 300,000 files must not grow the sidecar by them. The
	// rest are counted (Sink.Omitted). Default DefaultMaxFindings.
	MaxFindings int
	// Accepted holds the states accepted after restores. Share one between
	// the monitors of successive containers of a pod: a runtime that
	// restarts the same container keeps the restored files. nil: a new one.
	Accepted *Accepted
	// Tolerate names, for some paths, attributes whose changes are
	// expected and not findings: the sidecar tolerates the inode, link
	// count, size and times of the directories above the container's mount
	// points, which the runtime recreates in every new container (see
	// Tolerated). Other attributes of those paths are still compared.
	Tolerate map[string]attr.Set
	// Origins classifies each finding before it is passed on
	// (compare.Classify); what it says is the runtime's addition to a
	// fresh container is not a finding. nil: findings carry no origin.
	Origins *origin.Classifier
	// Mappings, when set, lists the writable shared mappings of files by
	// the target's processes (bounded by the caller). The monitor asks at
	// every whole-tree check and at every event batch that names a
	// protected file, and reports each protected file mapped (AttrMapped).
	Mappings func() []Mapping

	// readGate, when set (by this package's tests), holds the event reader
	// back until it is closed, so a test can fill the kernel's queue.
	readGate chan struct{}
	// checkHook, when set (by this package's tests), is called by every
	// whole-tree check after its scan, before it compares: a test can hold
	// a check there.
	checkHook func(kind metrics.ScanType)
}

// MaxWarningSample bounds the warnings of one check passed to
// Sink.Incomplete: the count says how many there were, a few name the
// paths, and an app that makes 100,000 files unreadable grows nothing.
const MaxWarningSample = 8

// DefaultMaxFindings is Config.MaxFindings's default: far more violations
// than anyone reads one by one, far fewer than would matter in memory.
const DefaultMaxFindings = 1024

// Tolerated is what Config.Tolerate allows of a directory above a mount
// point: the runtime creates missing mount points in each container's new
// writable layer, which copies the directories above them up (new inode,
// new times) and may add entries (size, link count). An entry added there
// by anyone else is still reported as added.
const Tolerated = origin.Runtime

// Accepted is a set of entries accepted in addition to the baseline's: a
// restored file has the baseline's content, mode, owner and xattrs in a new
// inode with a new ctime, and restoring changes its directories' ctimes. A
// path matches when it matches the baseline or its accepted entry. Safe for
// concurrent use.
type Accepted struct {
	mu sync.Mutex
	m  map[string]attr.Entry
}

// NewAccepted returns an empty set.
func NewAccepted() *Accepted { return &Accepted{m: map[string]attr.Entry{}} }

func (a *Accepted) get(p string) (attr.Entry, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[p]
	return e, ok
}

func (a *Accepted) put(e attr.Entry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.m[e.Path] = e
}

// Monitor checks one root until its context ends.
type Monitor struct {
	cfg  Config
	root *scan.Root
	sink Sink

	mu sync.Mutex
	// reported is the state of each violation this monitor reported, so
	// that the same tampering seen again (by an event, then a scheduled
	// check) is reported once. It is a memory of what was said, not the
	// record of open violations (the sink's): a new monitor starts
	// without it and reports again what it finds.
	reported map[string]string
	// mapped are the protected paths the last look at Config.Mappings
	// found mapped shared and writable; wasMapped those found so since
	// their content was last hashed clean: writes through a mapping leave
	// mtime and ctime as they were (on tmpfs for good), so a quick check,
	// which reuses the hash of an unchanged-looking file, cannot clear them.
	mapped, wasMapped map[string]bool
	// touched are the paths checked alone since the running whole-tree
	// check began (nil: none runs); touchedOver says more than maxTouched
	// were (see touch).
	touched     map[string]bool
	touchedOver bool
	// omitted are the paths event checks left out (Config.MaxFindings
	// reached) since the last whole-tree check counted them, so that more
	// events on one path count it once; at most maxOmitted, beyond which
	// each event counts.
	omitted map[string]bool

	in     *inotify
	slow   *slowLane
	checks *checkQueue
}

// New returns a monitor of root.
func New(root *scan.Root, cfg Config, sink Sink) *Monitor {
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = 2 * time.Millisecond
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 1024
	}
	if cfg.MaxFindings <= 0 {
		cfg.MaxFindings = DefaultMaxFindings
	}
	if cfg.EventHashBytes <= 0 {
		cfg.EventHashBytes = DefaultEventHashBytes
	}
	cfg.Scan.Matcher = cfg.Matcher
	if cfg.Baseline != nil {
		// Growing files may only be appended to: hash what the baseline
		// holds of them, not the rest (scan.Options.Growing).
		cfg.Scan.Growing = cfg.Baseline
	}
	if cfg.Accepted == nil {
		cfg.Accepted = NewAccepted()
	}
	return &Monitor{cfg: cfg, root: root, sink: sink, slow: newSlowLane(), checks: newCheckQueue(), reported: map[string]string{}}
}

// Run verifies the whole root, then watches it until ctx ends. It returns
// ctx's error, or an error when the root can no longer be scanned (the
// target died). Whole-tree checks (the first, the scheduled ones and the
// rescans) run in a goroutine of their own, one at a time: events are
// handled while they run.
func (m *Monitor) Run(ctx context.Context) error {
	// Watch the baseline's directories before the first check: a change
	// after a directory is watched queues an event, one before it is seen
	// by the check, so nothing falls in between. Directories the baseline
	// lacks are watched once the check has found them.
	var events chan []Event
	if m.cfg.Inotify {
		in, err := newInotify()
		if err != nil {
			return err
		}
		m.in = in
		defer in.close()
		m.cfg.Baseline.Each(func(e *attr.Entry) bool {
			return e.Type != attr.TypeDir || m.watchDir(e.Path)
		})
	}
	errc := make(chan error, 2)
	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	m.checks.want(metrics.ScanFull, time.Now())
	first := make(chan struct{}) // closed when the first check has completed
	wg.Go(func() { m.runChecks(bg, errc, first) })
	if m.in != nil {
		events = make(chan []Event, 64)
		go m.readEvents(events)
		wg.Go(func() { m.runSlowLane(bg, errc) })
	}
	// The schedule starts once the first full check is done, however long
	// it takes.
	quick, full := ticker(m.cfg.Quick), ticker(m.cfg.Full)
	defer quick.Stop()
	defer full.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case <-first:
			first = nil
			if m.cfg.Quick > 0 {
				quick.Reset(m.cfg.Quick)
			}
			if m.cfg.Full > 0 {
				full.Reset(m.cfg.Full)
			}
		case <-quick.C:
			m.checks.want(metrics.ScanQuick, time.Now())
		case <-full.C:
			m.sink.Rescan(metrics.RescanSchedule)
			m.checks.want(metrics.ScanFull, time.Now())
		case batch, ok := <-events:
			if !ok {
				return fmt.Errorf("inotify reader stopped")
			}
			if err := m.handle(ctx, m.coalesce(batch, events)); err != nil {
				return err
			}
		}
	}
}

// ticker returns a stopped ticker of d (an hour for d <= 0, which is
// never started).
func ticker(d time.Duration) *time.Ticker {
	if d <= 0 {
		d = time.Hour
	}
	t := time.NewTicker(d)
	t.Stop()
	return t
}

func (m *Monitor) readEvents(out chan<- []Event) {
	defer close(out)
	if m.cfg.readGate != nil {
		<-m.cfg.readGate
	}
	buf := make([]byte, 64<<10)
	for {
		evs, err := m.in.read(buf, nil)
		if err != nil {
			return
		}
		if len(evs) > 0 {
			out <- evs
		}
	}
}

// coalesce gathers the events that arrive within the coalescing window, so
// a burst (an editor's write, rename and chmod) is checked once.
func (m *Monitor) coalesce(batch []Event, more <-chan []Event) []Event {
	t := time.NewTimer(m.cfg.Coalesce)
	defer t.Stop()
	for {
		select {
		case evs, ok := <-more:
			if !ok {
				return batch
			}
			batch = append(batch, evs...)
		case <-t.C:
			return batch
		}
	}
}

// handle checks the paths an event batch names, or rescans when the batch
// cannot be trusted to be complete.
func (m *Monitor) handle(ctx context.Context, batch []Event) error {
	detected := time.Now()
	paths := map[string]bool{}
	written := map[string]bool{} // modified: IN_MODIFY
	opened := map[string]bool{}  // modified or closed after opening for writing
	var reason metrics.RescanReason
	for _, ev := range batch {
		switch {
		case ev.Overflow:
			reason = metrics.RescanOverflow
		case ev.Lost:
			// A watched directory went away: deleted (its parent says so
			// too) or its file system unmounted. Only a rescan is sure.
			if reason == "" {
				reason = metrics.RescanWatchLost
			}
		case ev.Dir:
			// A directory created, removed or moved: its whole subtree
			// changed. A quick rescan re-syncs the watches too.
			if reason == "" {
				reason = metrics.RescanDirChange
			}
		default:
			paths[ev.Path] = true
			paths[parent(ev.Path)] = true
			if ev.Write {
				written[ev.Path] = true
			}
			if ev.Write || ev.CloseWrite {
				opened[ev.Path] = true
			}
		}
	}
	if reason == "" && len(paths) > m.cfg.MaxEvents {
		reason = metrics.RescanOverflow
	}
	if reason != "" {
		m.sink.Rescan(reason)
		m.checks.want(metrics.ScanQuick, detected)
		return nil
	}
	start := time.Now()
	for p := range opened {
		if m.protected(p) {
			// Opening a file to map it writable and closing it is an
			// event: look at the mappings now, not at the next check.
			m.refreshMappings()
			break
		}
	}
	now, full := m.schedule(paths, written, detected)
	if full {
		// More large files wait than the lane holds: the next quick check
		// sees them all.
		m.sink.Rescan(metrics.RescanOverflow)
		m.checks.want(metrics.ScanQuick, detected)
		return nil
	}
	for _, p := range now {
		if err := m.checkPath(ctx, p, written[p], detected); err != nil {
			m.sink.Scanned(metrics.ScanEvent, err, time.Since(start), len(paths))
			return err
		}
	}
	m.sink.Scanned(metrics.ScanEvent, nil, time.Since(start), len(paths))
	return nil
}

func parent(p string) string {
	if p == "/" {
		return "/"
	}
	return path.Dir(p)
}

// checkPath compares one path with the baseline; written says an event
// reported a write to it.
func (m *Monitor) checkPath(ctx context.Context, p string, written bool, detected time.Time) error {
	attrs, skip := m.cfg.Matcher.Match(p)
	if skip {
		return nil
	}
	m.touch(p)
	old, inBase := m.cfg.Baseline.Lookup(p)
	cur, err := m.root.EntryWith(p, attrs, m.cfg.Scan)
	exists, partial := true, false
	if err != nil {
		var w scan.Warning
		switch {
		case errors.Is(err, fs.ErrNotExist):
			exists = false
		case errors.As(err, &w):
			// Collected with a warning (e.g. changed while hashed): compare
			// what was collected; the next event or scan sees the rest.
			partial = w.Incomplete()
		default:
			return fmt.Errorf("failed to check %q: %w", p, err)
		}
	}
	var f *compare.Finding
	switch {
	case !inBase && !exists:
	case !inBase:
		f = &compare.Finding{Path: p, Kind: compare.Added, New: &cur}
	case !exists:
		f = &compare.Finding{Path: p, Kind: compare.Removed, Old: old}
	default:
		if names := m.changed(p, compare.Diff(old, &cur), &cur, written); len(names) > 0 {
			f = &compare.Finding{Path: p, Kind: compare.Changed, Attributes: names, Old: old, New: &cur}
		}
	}
	if f == nil {
		if !partial {
			// Clean as far as it was compared: an open violation of a file
			// that could not be read in full stays open.
			m.resolve(p)
		}
		return nil
	}
	if !m.report(ctx, *f, detected) {
		m.omit(p)
	}
	return nil
}

// rescan checks the whole tree, watching the directories it finds.
func (m *Monitor) rescan(ctx context.Context, kind metrics.ScanType, detected time.Time) error {
	return m.check(ctx, kind, detected)
}

// check scans the whole root and reports every finding; open violations
// that are gone are resolved. It streams: the scan emits its entries in
// path order into a compare.Merger that pulls the baseline's from the
// index, so neither the tree nor the baseline is ever held decoded (only
// the scan's own compact records while it walks, and the findings up to
// Config.MaxFindings).
func (m *Monitor) check(ctx context.Context, kind metrics.ScanType, detected time.Time) error {
	opts := m.cfg.Scan
	if kind == metrics.ScanQuick {
		opts.QuickHashes = m.cfg.Baseline
	}
	start := time.Now()
	m.beginCheck()
	defer m.endCheck()
	merger := compare.NewMerger(m.cfg.Baseline.Cursor(), m.cfg.MaxFindings)
	entries, watching := 0, m.in != nil
	opts.Emit = func(e *attr.Entry) {
		entries++
		merger.Add(e)
		if watching && e.Type == attr.TypeDir {
			// Watch what the baseline lacks, once the scan found it.
			watching = m.watchDir(e.Path)
		}
	}
	res, err := m.root.Tree(ctx, opts)
	if err == nil {
		var r compare.Result
		if r, err = merger.Finish(); err == nil {
			err = m.compared(ctx, kind, detected, res, r)
		}
	}
	if err != nil {
		m.sink.Scanned(kind, err, time.Since(start), 0)
		return fmt.Errorf("%s check failed: %w", kind, err)
	}
	m.sink.Scanned(kind, nil, time.Since(start), entries)
	return nil
}

// compared reports what a whole-tree check found (r) and resolves the
// open violations it did not find again.
func (m *Monitor) compared(ctx context.Context, kind metrics.ScanType, detected time.Time, res *scan.Result, r compare.Result) error {
	if m.cfg.checkHook != nil {
		m.cfg.checkHook(kind)
	}
	m.refreshMappings()
	omitted := r.Omitted
	seen := make(map[string]bool, len(r.Findings))
	for _, f := range r.Findings {
		if m.newer(f.Path) {
			// Checked alone since this check's scan saw it: that view is
			// newer, and reported or resolved already.
			seen[f.Path] = true
			continue
		}
		if f.Kind == compare.Changed {
			if f.Attributes = m.changed(f.Path, f.Attributes, f.New, false); len(f.Attributes) == 0 {
				continue
			}
		}
		if !m.report(ctx, f, detected) {
			omitted++
			continue
		}
		seen[f.Path] = true
	}
	for _, p := range m.mappedPaths() {
		if !seen[p] && m.reportMapped(ctx, p, detected) {
			seen[p] = true
		}
	}
	m.mu.Lock()
	m.omitted = nil // the count below replaces the events' additions
	m.mu.Unlock()
	m.sink.Omitted(omitted, true)
	if err := m.rehashUnmapped(ctx, seen, detected); err != nil {
		return err
	}
	warned := m.incomplete(kind, res.Warnings)
	for _, p := range m.sink.Open() {
		switch {
		case seen[p] || !m.resolvable(p):
			// Found again, or checked alone since the scan saw it (or
			// too many were to tell): not this check's to resolve.
		case warned[p]:
			// Not compared in full: its violation stays open until a check
			// can tell (the rule of docs/sidecar.md).
		case r.Omitted > 0:
			// The list stopped at MaxFindings: p may be among the findings
			// left out, so look at it alone (which resolves it if clean).
			if err := m.checkPath(ctx, p, false, detected); err != nil {
				return err
			}
		default:
			m.resolve(p)
		}
	}
	return nil
}

// incomplete passes on the warnings of a whole-tree check that mean it did
// not compare everything, and returns their paths.
func (m *Monitor) incomplete(kind metrics.ScanType, ws []scan.Warning) map[string]bool {
	var sample []scan.Warning
	warned := map[string]bool{}
	for _, w := range ws {
		if !w.Incomplete() {
			continue
		}
		warned[w.Path] = true
		if len(sample) < MaxWarningSample {
			sample = append(sample, w)
		}
	}
	m.sink.Incomplete(kind, len(warned), sample)
	return warned
}

// changed returns the attributes of p that make a finding: those of diff
// (cur against the baseline) that are not tolerated at p, unless cur is
// the state accepted after a restore; plus AttrMapped when a process holds
// a writable shared mapping of p, and AttrTransient when nothing else
// differs but a write to p was seen (written) and its rule reports that.
func (m *Monitor) changed(p string, diff []string, cur *attr.Entry, written bool) []string {
	names := m.untolerated(p, diff)
	if len(names) > 0 {
		if acc, ok := m.cfg.Accepted.get(p); ok && len(compare.Diff(&acc, cur)) == 0 {
			names = nil
		}
	}
	if len(names) == 0 && written && m.protected(p) && m.cfg.Matcher.Transient(p) {
		names = []string{AttrTransient}
	}
	if m.isMapped(p) {
		names = append(slices.Clip(names), AttrMapped)
	}
	return names
}

// protected reports whether p's rule compares its content and does not
// let it grow: a write to it is never expected.
func (m *Monitor) protected(p string) bool { return Protected(m.cfg.Matcher, p) }

// Protected reports whether the rule of p in m compares p's content and
// does not let it grow (ReadOnly-like, not Growing, not ignored): the files
// AttrMapped and AttrTransient are about.
func Protected(m Matcher, p string) bool {
	attrs, skip := m.Match(p)
	return !skip && attrs.Any(attr.Hashes) && !attrs.Has(attr.Growing)
}

// refreshMappings asks Config.Mappings which protected files are mapped
// shared and writable now.
func (m *Monitor) refreshMappings() {
	if m.cfg.Mappings == nil {
		return
	}
	set := map[string]bool{}
	for _, mp := range m.cfg.Mappings() {
		if m.protected(mp.Path) {
			set[mp.Path] = true
		}
	}
	m.mu.Lock()
	m.mapped = set
	if m.wasMapped == nil {
		m.wasMapped = map[string]bool{}
	}
	for p := range set {
		m.wasMapped[p] = true
	}
	m.mu.Unlock()
}

// rehashUnmapped checks, hashing them, the files that were mapped and are
// no longer and that the whole-tree check did not find (seen): a quick
// check reused their old hash. Those found changed are reported (and
// marked seen, so they are not resolved); those clean are forgotten.
func (m *Monitor) rehashUnmapped(ctx context.Context, seen map[string]bool, detected time.Time) error {
	m.mu.Lock()
	var paths []string
	for p := range m.wasMapped {
		if !m.mapped[p] && !seen[p] {
			paths = append(paths, p)
		}
	}
	m.mu.Unlock()
	slices.Sort(paths)
	for _, p := range paths {
		if err := m.checkPath(ctx, p, false, detected); err != nil {
			return err
		}
		m.mu.Lock()
		_, open := m.reported[p]
		if !open {
			delete(m.wasMapped, p)
		}
		m.mu.Unlock()
		seen[p] = open
	}
	return nil
}

func (m *Monitor) isMapped(p string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mapped[p]
}

func (m *Monitor) mappedPaths() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.mapped))
	for p := range m.mapped {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// reportMapped reports a mapped protected file that matches the baseline
// otherwise, and reports whether it did (false when p is not in the
// baseline or is gone: the comparison reports those).
func (m *Monitor) reportMapped(ctx context.Context, p string, detected time.Time) bool {
	old, ok := m.cfg.Baseline.Lookup(p)
	if !ok {
		return false
	}
	attrs, _ := m.cfg.Matcher.Match(p)
	cur, err := m.root.Entry(p, attrs)
	var w scan.Warning
	if err != nil && !errors.As(err, &w) {
		return false
	}
	return m.report(ctx, compare.Finding{Path: p, Kind: compare.Changed, Attributes: []string{AttrMapped}, Old: old, New: &cur}, detected)
}

// Restored re-verifies a path the responder restored. When the file now
// differs from the baseline in nothing but tolerated attributes (a restored
// file necessarily has a new inode and ctime), its current state becomes the
// expected one and the violation is resolved; otherwise the remaining
// difference is reported. Only inode, ctime and nlink can be tolerated. It
// reports whether the path is clean.
func (m *Monitor) Restored(ctx context.Context, p string, tolerated attr.Set) (bool, error) {
	tolerated &= attr.Inode | attr.Ctime | attr.Nlink
	attrs, skip := m.cfg.Matcher.Match(p)
	if skip {
		return true, nil
	}
	base, ok := m.cfg.Baseline.Lookup(p)
	if !ok {
		return false, fmt.Errorf("restored %q is not in the baseline", p)
	}
	// Looked at alone, as checkPath does: a whole-tree check running now
	// may have seen p before the restore, and must neither report that
	// older state again nor resolve what this finds.
	m.touch(p)
	cur, err := m.root.EntryWith(p, attrs, m.cfg.Scan)
	if err != nil {
		return false, fmt.Errorf("failed to re-verify restored %q: %w", p, err)
	}
	tol := map[string]bool{}
	for _, n := range tolerated.Names() {
		tol[n] = true
	}
	for _, n := range compare.Diff(base, &cur) {
		if !tol[n] {
			if err := m.checkPath(ctx, p, false, time.Now()); err != nil {
				return false, err
			}
			return false, nil
		}
	}
	acc := *base
	acc.Inode, acc.Ctime, acc.Nlink = cur.Inode, cur.Ctime, cur.Nlink
	m.cfg.Accepted.put(acc)
	m.resolve(p)
	return true, nil
}

// untolerated returns the attribute names of names that Config.Tolerate
// does not allow to change at p, in a new slice when any is dropped.
func (m *Monitor) untolerated(p string, names []string) []string {
	tol, ok := m.cfg.Tolerate[p]
	if !ok || len(names) == 0 {
		return names
	}
	drop := map[string]bool{}
	for _, n := range tol.Names() {
		drop[n] = true
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !drop[n] {
			out = append(out, n)
		}
	}
	return out
}

// report passes a finding on unless the same state was reported already,
// and reports whether it is passed on (or was): false when the path is new
// and Config.MaxFindings violations are held already.
func (m *Monitor) report(ctx context.Context, f compare.Finding, detected time.Time) bool {
	if !compare.Classify(m.cfg.Origins, &f) {
		return true
	}
	st := state(f)
	if slices.Contains(f.Attributes, AttrTransient) {
		// Each reverted write is its own tamper, though it leaves no
		// trace in the state of the file.
		st += "|" + strconv.FormatInt(detected.UnixNano(), 10)
	}
	m.mu.Lock()
	old, known := m.reported[f.Path]
	switch {
	case known && old == st:
		m.mu.Unlock()
		return true
	case !known && len(m.reported) >= m.cfg.MaxFindings:
		m.mu.Unlock()
		return false
	}
	if !known {
		// A copy, as in watchDir: the finding's path may pin a check's.
		f.Path = strings.Clone(f.Path)
	}
	m.reported[f.Path] = st
	m.mu.Unlock()
	m.sink.Finding(ctx, f, detected)
	return true
}

// maxOmitted bounds Monitor.omitted.
const maxOmitted = 4 * DefaultMaxFindings

// omit counts p as left out by an event check, once until the next
// whole-tree check.
func (m *Monitor) omit(p string) {
	m.mu.Lock()
	if m.omitted[p] {
		m.mu.Unlock()
		return
	}
	if m.omitted == nil {
		m.omitted = map[string]bool{}
	}
	if len(m.omitted) < maxOmitted {
		m.omitted[strings.Clone(p)] = true
	}
	m.mu.Unlock()
	m.sink.Omitted(1, false)
}

// resolve tells the sink that p is clean. It is called for every clean
// path an event named, not only reported ones: the sink's open violations
// include those of an earlier container.
func (m *Monitor) resolve(p string) {
	m.mu.Lock()
	delete(m.reported, p)
	m.mu.Unlock()
	m.sink.Resolved(p)
}

// state identifies the current state of a violation: the same tampering
// seen again (by an event and then a scheduled check) is reported once, a
// further change (new ctime, new content) again.
func state(f compare.Finding) string {
	s := string(f.Kind)
	for _, a := range f.Attributes {
		s += "," + a
	}
	if f.New != nil {
		s += "|" + strconv.FormatInt(f.New.Ctime, 10) + "|" + string(f.New.Hash) + "|" + strconv.FormatUint(f.New.Inode, 10)
	}
	return s
}

// watchDir places a watch on directory p unless it has one, and reports
// false once no more watches can be added (the scheduled checks cover the
// rest).
func (m *Monitor) watchDir(p string) bool {
	m.in.mu.Lock()
	_, ok := m.in.wds[p]
	m.in.mu.Unlock()
	if ok {
		return true
	}
	f, err := m.root.OpenDir(p)
	if err != nil {
		return true // gone since the scan: the next event or check sees it
	}
	// A copy: p comes from the scan or the index's cursor, allocated among
	// the paths of a whole tree that die with the check; kept, it would pin
	// their memory (one directory's path held a span of its files' paths:
	// megabytes at 100,000 files).
	err = m.in.add(int(f.Fd()), strings.Clone(p))
	f.Close()
	if errors.Is(err, ErrWatchLimit) {
		m.sink.Rescan(metrics.RescanWatchLimit)
		return false
	}
	return true
}
