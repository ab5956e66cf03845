package compare

import (
	"io"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/origin"
)

// Merger compares a baseline pulled one entry at a time with current
// entries pushed one at a time, both in attr.ComparePaths order: neither
// side is ever held whole in memory. It keeps copies of the entries of the
// findings it lists only.
type Merger struct {
	next        func() (*attr.Entry, error)
	maxFindings int
	r           Result
	o           *attr.Entry // the baseline entry not yet matched; nil at the end
	err         error
	// cloneOld and cloneNew copy the baseline and current entries of listed
	// findings, for sources that reuse them.
	cloneOld, cloneNew bool
	only               attr.Set // see Only
	origins            *origin.Classifier
	held               int // bytes the listed findings hold (findingBytes)
}

// MaxFindingBytes bounds the memory of the findings a Merger lists,
// whatever limits.maxFindings allows: a finding holds copies of both
// entries, and an entry may carry up to 256 KiB of extended attributes
// (baseline.MaxXattrBytes), so 100,000 findings could hold 50 GB. Past
// it, findings are counted in Result.Omitted like those past
// maxFindings.
const MaxFindingBytes = 64 << 20

// findingBytes estimates what keeping f costs: its copies of the entries
// and its attribute names.
func findingBytes(f *Finding) int {
	n := 64 + len(f.Path) + 16*len(f.Attributes)
	for _, e := range []*attr.Entry{f.Old, f.New} {
		if e == nil {
			continue
		}
		n += 160 + len(e.Path) + len(e.Target) + len(e.Hash)
		for _, x := range e.Xattrs {
			n += 40 + len(x.Name) + len(x.Value)
		}
	}
	return n
}

// NewMerger returns a merger over the baseline entries next yields (io.EOF
// after the last; the entry may be reused by the following call).
func NewMerger(next func() (*attr.Entry, error), maxFindings int) *Merger {
	return newMerger(next, maxFindings, true, true)
}

// newMerger lets findings point at the entries given on the sides that are
// not cloned, for callers whose entries stay put (Entries).
func newMerger(next func() (*attr.Entry, error), maxFindings int, cloneOld, cloneNew bool) *Merger {
	m := &Merger{next: next, maxFindings: maxFindings, cloneOld: cloneOld, cloneNew: cloneNew}
	m.pull()
	return m
}

// Only restricts the comparison to the attributes in s (see DiffOnly); 0,
// the default, compares everything both sides collected. Call it before
// the first Add.
func (m *Merger) Only(s attr.Set) { m.only = s }

// Origins classifies every finding with c (Classify) before it is counted:
// what c says is the runtime's is neither counted nor listed. Call it
// before the first Add.
func (m *Merger) Origins(c *origin.Classifier) { m.origins = c }

func (m *Merger) pull() {
	o, err := m.next()
	switch {
	case err == io.EOF:
		m.o = nil
	case err != nil:
		m.o, m.err = nil, err
	default:
		m.o = o
	}
}

func (m *Merger) add(f Finding) {
	if !Classify(m.origins, &f) {
		return
	}
	switch f.Kind {
	case Added:
		m.r.Counts.Added++
	case Removed:
		m.r.Counts.Removed++
	case Changed:
		m.r.Counts.Changed++
	}
	cost := findingBytes(&f)
	if m.maxFindings > 0 && len(m.r.Findings) >= m.maxFindings || m.held+cost > MaxFindingBytes {
		m.r.Omitted++
		return
	}
	m.held += cost
	if m.cloneOld && f.Old != nil {
		c := f.Old.Clone()
		f.Old = &c
	}
	if m.cloneNew && f.New != nil {
		c := f.New.Clone()
		f.New = &c
	}
	m.r.Findings = append(m.r.Findings, f)
}

// Add compares the next current entry; entries must come in path order.
// The entry is copied if kept, so the caller may reuse it.
func (m *Merger) Add(cur *attr.Entry) {
	for m.err == nil && m.o != nil {
		c := attr.ComparePaths(m.o.Path, cur.Path)
		if c > 0 {
			break
		}
		if c < 0 {
			m.add(Finding{Path: m.o.Path, Kind: Removed, Old: m.o})
			m.pull()
			continue
		}
		if names := DiffOnly(m.o, cur, m.only); len(names) > 0 {
			m.add(Finding{Path: cur.Path, Kind: Changed, Attributes: names, Old: m.o, New: cur})
		}
		m.pull()
		return
	}
	if m.err != nil {
		return
	}
	m.add(Finding{Path: cur.Path, Kind: Added, New: cur})
}

// Finish reports what is left of the baseline as removed and returns the
// result, or the first error the baseline gave (never a partial result).
func (m *Merger) Finish() (Result, error) {
	for m.err == nil && m.o != nil {
		m.add(Finding{Path: m.o.Path, Kind: Removed, Old: m.o})
		m.pull()
	}
	if m.err != nil {
		return Result{}, m.err
	}
	return m.r, nil
}
