// Package compare turns a baseline and a scan into findings: what was added,
// what was removed and what changed, with the attributes that changed.
//
// It works on plain values (sorted attr.Entry values: two slices, or a
// baseline read entry by entry and a slice) so that it is tested without a
// file system, and it is the only place that decides what counts as a
// change.
package compare

import (
	"bytes"
	"io"
	"slices"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/origin"
)

// Kind is the kind of a finding. Its vocabulary is attr.Change's, which
// the metrics count without importing this package.
type Kind = attr.Change

// Finding kinds.
const (
	Added   = attr.Added
	Removed = attr.Removed
	Changed = attr.Changed
)

// Finding is one difference between the baseline and the current state.
type Finding struct {
	Path string
	Kind Kind
	// Attributes names what changed, in canonical order ("type", "mode", ...,
	// "sha256"); extended attributes are named "acl", "caps", "selinux" or
	// "xattrs" (attr.XattrLabel). Empty for added and removed files.
	Attributes []string
	Old, New   *attr.Entry // nil for added (Old) and removed (New)
	// Origin says where the path comes from (image and layer, container,
	// volume, baseline); zero when no classifier was given (Classify).
	Origin origin.Origin
}

// Classify sets f's origin with c and takes out of it what is the
// container runtime's own addition (origin.Classifier.Classify). It
// reports false when nothing of f is left: then f is not a finding. A nil
// c keeps f as it is.
func Classify(c *origin.Classifier, f *Finding) bool {
	if c == nil {
		return true
	}
	o, attrs, ok := c.Classify(f.Path, f.Kind, f.Old, f.Attributes)
	f.Origin, f.Attributes = o, attrs
	return ok
}

// Counts counts findings by kind.
type Counts struct {
	Added, Removed, Changed int
}

// Total is the number of findings.
func (c Counts) Total() int { return c.Added + c.Removed + c.Changed }

// Result is the outcome of a comparison.
type Result struct {
	Findings []Finding // at most the limit given to Entries or NewMerger, in path order
	Counts   Counts    // every finding, listed or not
	// Omitted is how many findings were counted but not listed because of
	// the limit or of MaxFindingBytes.
	Omitted int
}

// Entries compares the baseline entries old with the current entries cur.
// Both must be sorted by attr.ComparePaths (as scans and baselines are).
// At most maxFindings findings are listed (0 means no limit); the rest are
// counted. Findings point into old and cur.
func Entries(old, cur []attr.Entry, maxFindings int) Result {
	i := 0
	next := func() (*attr.Entry, error) {
		if i == len(old) {
			return nil, io.EOF
		}
		i++
		return &old[i-1], nil
	}
	// next never fails, and findings may point into old and cur: both stay.
	r, _ := mergeSlice(newMerger(next, maxFindings, false, false), cur)
	return r
}

// mergeSlice feeds cur to m and finishes it.
func mergeSlice(m *Merger, cur []attr.Entry) (Result, error) {
	for j := range cur {
		m.Add(&cur[j])
	}
	return m.Finish()
}

// Diff returns the names of the attributes that differ between the baseline
// entry o and the current entry n, or nil when they match.
//
// Only attributes collected on both sides are compared, so a policy that
// collects less than the baseline holds does not invent changes. The type is
// always compared. Under the Growing modifier (on either side) the size may
// grow but not shrink, and when it grew mtime and ctime are expected to
// change and are not compared, and the content may only have been appended
// to: the hash of the current file's first o.Size bytes (n.Prefix, which a
// scan given the baseline as Options.Growing records) must be o's hash,
// else the hash is reported changed. Without n.Prefix the content of a file
// that grew is not compared.
func Diff(o, n *attr.Entry) []string { return DiffOnly(o, n, 0) }

// DiffOnly is Diff restricted to the attributes in only (0: no
// restriction; the type is always compared): a baseline made from an image
// says which attributes an unpacked container can match at all
// (attr.ImageStable), and the others must not become findings.
func DiffOnly(o, n *attr.Entry, only attr.Set) []string {
	both := o.Attrs & n.Attrs
	if only != 0 {
		both &= only
	}
	growing := (o.Attrs | n.Attrs).Has(attr.Growing)
	grew := growing && n.Size > o.Size
	var changed attr.Set
	if o.Type != n.Type || o.Rdev != n.Rdev {
		changed |= attr.Type
	}
	cmp := func(bit attr.Set, differ bool) {
		if both.Has(bit) && differ {
			changed |= bit
		}
	}
	cmp(attr.Mode, o.Mode != n.Mode)
	cmp(attr.UID, o.UID != n.UID)
	cmp(attr.GID, o.GID != n.GID)
	if growing {
		cmp(attr.Size, n.Size < o.Size)
	} else {
		cmp(attr.Size, o.Size != n.Size)
	}
	cmp(attr.Inode, o.Inode != n.Inode)
	cmp(attr.Nlink, o.Nlink != n.Nlink)
	cmp(attr.Target, o.Target != n.Target)
	// A hash is comparable only when both sides used the same algorithm.
	alg := o.HashAlg()
	sameAlg := alg != 0 && alg == n.HashAlg()
	if !grew {
		cmp(attr.Mtime, o.Mtime != n.Mtime)
		cmp(attr.Ctime, o.Ctime != n.Ctime)
		if sameAlg && (o.Type == attr.TypeRegular || n.Type == attr.TypeRegular) {
			cmp(alg, !bytes.Equal(o.Hash, n.Hash))
		}
	} else if p := n.Prefix; sameAlg && len(o.Hash) > 0 && p != nil && p.Size == o.Size {
		// Growing means append-only: the bytes the baseline hashed must
		// still be the file's first o.Size bytes.
		cmp(alg, !bytes.Equal(p.Hash, o.Hash))
	}
	names := (changed &^ attr.Xattrs).Names()
	if both.Has(attr.Xattrs) {
		names = append(names, xattrLabels(o.Xattrs, n.Xattrs)...)
	}
	if len(names) == 0 {
		return nil
	}
	return names
}

// xattrLabels returns the report labels of the extended attributes that were
// added, removed or changed, each label once, in a fixed order.
func xattrLabels(o, n []attr.Xattr) []string {
	seen := map[string]bool{}
	om := make(map[string][]byte, len(o))
	for _, x := range o {
		om[x.Name] = x.Value
	}
	for _, x := range n {
		if v, ok := om[x.Name]; !ok || !bytes.Equal(v, x.Value) {
			seen[attr.XattrLabel(x.Name)] = true
		}
		delete(om, x.Name)
	}
	for name := range om {
		seen[attr.XattrLabel(name)] = true
	}
	var out []string
	for _, l := range []string{"acl", "caps", "selinux", "xattrs"} {
		if seen[l] {
			out = append(out, l)
		}
	}
	return out
}

// ExitCode is the bitmask a check exits with: 1 when files were added, 2
// when removed, 4 when changed (like AIDE's).
func (c Counts) ExitCode() int {
	code := 0
	if c.Added > 0 {
		code |= 1
	}
	if c.Removed > 0 {
		code |= 2
	}
	if c.Changed > 0 {
		code |= 4
	}
	return code
}

// Paths returns the paths of the listed findings (for tests and logs).
func (r Result) Paths() []string {
	out := make([]string, 0, len(r.Findings))
	for _, f := range r.Findings {
		out = append(out, f.Path)
	}
	return slices.Clip(out)
}
