package sidecar

import (
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/compare"
	"github.com/podfim/podfim/internal/evidence"
	"github.com/podfim/podfim/internal/metrics"
	"github.com/podfim/podfim/internal/scan"
	"github.com/podfim/podfim/internal/target"
)

// evidenceDir is the evidence's directory under the state directory.
const evidenceDir = "evidence"

// openEvidence opens the evidence store in the state directory. A store
// that cannot be opened is logged and left out: the sidecar goes on
// detecting and responding without it.
func (s *sidecar) openEvidence() *evidence.Store {
	if s.cfg.StateDir == "" {
		return nil
	}
	st, err := evidence.Open(filepath.Join(s.cfg.StateDir, evidenceDir), s.cfg.Evidence, nil)
	if err != nil {
		s.log.Error("cannot keep evidence: findings are reported without it", keyError, err.Error())
		return nil
	}
	return st
}

// capture keeps the evidence of a changed or added file before the
// response (nil when there is no store or nothing to keep). original is
// the file's original content when restore keeps it: the diff is made
// against it. A capture that loses the bytes (a full state volume) is
// logged and counted; the response runs all the same.
func (k *sink) capture(f compare.Finding, original []byte) *evidence.Record {
	st := k.s.evidence
	if st == nil || f.Kind == compare.Removed || k.root == nil {
		return nil
	}
	src := evidence.Source{Path: f.Path, Kind: f.Kind, Original: original}
	file, size, err := k.root.OpenRegular(f.Path)
	switch {
	case errors.Is(err, scan.ErrNotRegular):
		// Nothing to keep; the finding holds its type and link target.
	case err != nil:
		src.Err = err
	default:
		defer file.Close()
		src.Content, src.Size = file, size
		// Right after the event: who has this inode open for writing now.
		var st unix.Stat_t
		if unix.Fstat(int(file.Fd()), &st) == nil {
			src.Attribution = k.attribute(st.Dev, st.Ino)
		}
	}
	rec, err := st.Capture(src)
	k.s.metrics.Evidence(rec.Result)
	if err != nil {
		k.s.log.Error("evidence lost: the response runs without it", keyPath, f.Path, keyError, err.Error())
	}
	return rec
}

// Attribution bounds: attributions per second (each reads the /proc of
// every process of the app: a flood of findings must not turn into a
// flood of /proc reads), and processes named in one.
const (
	maxAttributionsPerSecond = 20
	maxNamedProcs            = 16
	maxCmdlineShown          = 256
)

// attribState is a sink's state for attributions: when the last
// whole-tree check ended (processes started since are "recent") and the
// count of attributions in the current second.
type attribState struct {
	lastCheck atomic.Int64 // unix nanoseconds
	mu        sync.Mutex
	second    int64
	count     int
}

func newAttribState(start time.Time) *attribState {
	a := &attribState{}
	a.lastCheck.Store(start.UnixNano())
	return a
}

// checked records the end of a whole-tree check.
func (a *attribState) checked(kind metrics.ScanType, err error) {
	if a != nil && err == nil && kind != metrics.ScanEvent {
		a.lastCheck.Store(time.Now().UnixNano())
	}
}

// allow reports whether one more attribution fits in this second.
func (a *attribState) allow(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := now.Unix(); s != a.second {
		a.second, a.count = s, 0
	}
	a.count++
	return a.count <= maxAttributionsPerSecond
}

// attribute says who may have written the file dev:ino: the app's
// processes that have it open for writing, else those started since the
// last whole-tree check, else unknown. Never a guess without its label.
func (k *sink) attribute(dev, ino uint64) *evidence.Attribution {
	a := &evidence.Attribution{Method: evidence.MethodUnknown}
	k.s.mu.Lock()
	c := k.s.target
	k.s.mu.Unlock()
	if c == nil || k.attrib == nil {
		return a
	}
	if !k.attrib.allow(time.Now()) {
		k.s.metrics.Overflow(metrics.LimitAttributions, 1)
		a.Omitted = 1
		return a
	}
	since := target.TicksAt(time.Unix(0, k.attrib.lastCheck.Load()))
	found, err := k.s.finder.Attribute(c, dev, ino, since)
	if err != nil {
		k.s.log.Warn("cannot attribute the change: /proc of the app unreadable", keyError, err.Error())
		return a
	}
	a.Omitted = found.Omitted
	procs := found.Writers
	switch {
	case len(found.Writers) > 0:
		a.Method = evidence.MethodOpenForWrite
	case len(found.Recent) > 0:
		a.Method, procs = evidence.MethodRecentProcess, found.Recent
	}
	if len(procs) > maxNamedProcs {
		a.Omitted += len(procs) - maxNamedProcs
		procs = procs[:maxNamedProcs]
	}
	if a.Omitted > 0 {
		k.s.metrics.Overflow(metrics.LimitAttributions, a.Omitted)
	}
	for _, p := range procs {
		a.Processes = append(a.Processes, evidence.Process{PID: p.PID, PPID: p.PPID, UID: p.UID,
			Exe: p.Exe, Cmdline: evidence.Escape(p.Cmdline, maxCmdlineShown)})
	}
	return a
}
