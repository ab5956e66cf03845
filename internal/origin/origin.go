// Package origin owns where the path of a finding comes from (the image and
// which of its layers, the container's writable layer, a volume, or a
// baseline that cannot tell) and which differences are the container
// runtime's own additions to a fresh container rather than findings.
//
// Both answers come from two inputs only: the baseline (an image
// baseline's entries record their layer, its header the layer digests)
// and the container's mount table, read from the mountinfo of its main
// process (ParseMountinfo). Nothing here is a hard-coded list of paths: a
// runtime that bind-mounts /etc/hosts lists it as a mount point, and one
// that does not leaves it to be compared like any other file.
package origin

import (
	"path"
	"slices"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/metrics"
)

// Kind is the vocabulary of origins (metrics.Origin, the "origin" label of
// podfim_findings_total).
type Kind = metrics.Origin

// Origins; see their documentation in package metrics.
const (
	Image     = metrics.OriginImage
	Baseline  = metrics.OriginBaseline
	Container = metrics.OriginContainer
	Volume    = metrics.OriginVolume
)

// Origin says where the path of one finding comes from. The zero Origin
// means not classified (podfim diff, which compares two baselines).
type Origin struct {
	Kind Kind
	// Layer is the image layer the path came from, counted from 1 = the
	// base layer, and LayerDigest its digest, for Kind Image; 0 and ""
	// when the image did not say (a directory no layer lists, which the
	// applier creates as a parent).
	Layer       int
	LayerDigest string
	// Mount is the mount point the path is at or under, for Kind Volume.
	Mount string
}

// Runtime is what the runtime changes of the directories above a
// container's mount points, and of a mount point itself in a baseline taken
// from a running container: it creates missing mount points in each new
// container's writable layer, which copies the directories above them up
// (new inode, new times) and adds entries (size, link count), and a new
// container may get a new mount at the same place. An entry added there
// by anyone else is still reported.
const Runtime = attr.Inode | attr.Nlink | attr.Size | attr.Mtime | attr.Ctime

// Classifier classifies findings against one baseline and one container's
// mount table. A nil *Classifier classifies nothing and drops nothing.
type Classifier struct {
	image     bool
	layers    []string
	mounts    *Mounts
	ancestors map[string]bool
	runtime   map[string]bool // Runtime's attribute names
}

// New returns a classifier for findings against a baseline (image: made
// from an image, whose layer digests are layers, base first) in a
// container whose mount table is mounts (nil: none known, as for a plain
// tree; then nothing is the runtime's).
func New(image bool, layers []string, mounts *Mounts) *Classifier {
	c := &Classifier{image: image, layers: layers, mounts: mounts, ancestors: map[string]bool{}, runtime: map[string]bool{}}
	for _, d := range mounts.Ancestors() {
		c.ancestors[d] = true
	}
	for _, n := range Runtime.Names() {
		c.runtime[n] = true
	}
	return c
}

// Classify returns the origin of a finding of kind k about path p (old is
// its baseline entry, nil when it was added; attrs the attributes that
// changed) and the attributes that remain findings once the runtime's
// changes are taken out. keep is false when the whole difference is the
// runtime's addition to a fresh container:
//
//   - a mount point, against an image baseline: whatever the runtime
//     mounts there (a bind-mounted /etc/hosts, an emptyDir's directory)
//     is not the image's, so it is neither added nor changed;
//   - a directory above a mount point that the runtime created (added)
//     or copied up (changed only in Runtime's attributes);
//   - a mount point against a baseline of a running container, changed
//     only in Runtime's attributes (a new mount in a new container).
//
// Everything else is kept, under a mount point too (a file written to a
// volume is reported, with origin Volume).
func (c *Classifier) Classify(p string, k attr.Change, old *attr.Entry, attrs []string) (o Origin, keep []string, ok bool) {
	if c == nil {
		return Origin{}, attrs, true
	}
	o = c.of(p, old)
	point := c.mounts.IsPoint(p)
	switch {
	case point && c.image:
		return o, nil, false
	case c.ancestors[p] && k == attr.Added:
		return o, nil, false
	case point || c.ancestors[p]:
		if k != attr.Changed {
			return o, attrs, true
		}
		keep = slices.DeleteFunc(slices.Clone(attrs), func(n string) bool { return c.runtime[n] })
		return o, keep, len(keep) > 0
	}
	return o, attrs, true
}

// of returns where p comes from.
func (c *Classifier) of(p string, old *attr.Entry) Origin {
	if m, ok := c.mounts.Under(p); ok {
		return Origin{Kind: Volume, Mount: m}
	}
	switch {
	case old == nil:
		return Origin{Kind: Container}
	case !c.image:
		return Origin{Kind: Baseline}
	}
	o := Origin{Kind: Image, Layer: int(old.Layer)}
	if o.Layer > 0 && o.Layer <= len(c.layers) {
		o.LayerDigest = c.layers[o.Layer-1]
	}
	return o
}

// ancestors returns the directories strictly above the given mount
// points, "/" included when any mount point other than "/" is given.
func ancestors(points []string) []string {
	seen := map[string]bool{}
	for _, mp := range points {
		for d := path.Dir(mp); mp != "/"; d = path.Dir(d) {
			seen[d] = true
			if d == "/" {
				break
			}
		}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}
