package image

import (
	"maps"
	"slices"

	"github.com/podfim/podfim/internal/attr"
)

// imageAttrs are the attributes an image fixes and an unpacked container
// keeps (attr.ImageStable). Inode numbers, link counts and ctimes come from
// the file system a runtime unpacks onto; so does the size of a directory
// (fill). Growing is a modifier of the policy's, kept as the policy says.
const imageAttrs = attr.ImageStable | attr.Growing

// Entries calls count with the number of entries the tree records, then
// emit with each of them in attr.ComparePaths order: what a baseline
// Writer takes. The entry passed to emit is reused by the next call.
func (t *Tree) Entries(count func(int), emit func(*attr.Entry)) {
	n := 0
	t.walk(func(string, attr.Set, *node) { n++ })
	if count != nil {
		count(n)
	}
	var e attr.Entry
	t.walk(func(path string, attrs attr.Set, nd *node) {
		t.fill(&e, path, attrs, nd)
		emit(&e)
	})
}

// walk visits every recorded object in path order, with the attributes
// the policy asks for it.
func (t *Tree) walk(visit func(path string, attrs attr.Set, n *node)) {
	if attrs, skip := t.m.Match("/"); !skip {
		visit("/", attrs, t.root)
	}
	t.walkDir("", t.root, visit)
}

func (t *Tree) walkDir(prefix string, dir *node, visit func(string, attr.Set, *node)) {
	// Byte order of names within a directory, each followed by its own
	// content, is attr.ComparePaths order.
	for _, name := range slices.Sorted(maps.Keys(dir.children)) {
		c := dir.children[name]
		path := prefix + "/" + name
		if attrs, skip := t.m.Match(path); !skip {
			visit(path, attrs, c)
		}
		if c.typ == attr.TypeDir && !c.prune {
			t.walkDir(path, c, visit)
		}
	}
}

// fill sets e to the entry of n at path for the policy's attributes:
// those an image fixes, less the ones runtimes disagree on for n, and the
// content hash only when n was hashed with the policy's algorithm.
func (t *Tree) fill(e *attr.Entry, path string, attrs attr.Set, n *node) {
	a := normalize(attrs) & imageAttrs &^ n.unsure
	if n.typ == attr.TypeDir {
		a &^= attr.Size
	}
	if alg := a & attr.Hashes; alg != 0 && n.typ == attr.TypeRegular && (n.hashAlg != alg || n.hash == nil) {
		a &^= attr.Hashes
	}
	*e = attr.Entry{Path: path, Attrs: a, Type: n.typ, Layer: n.layer}
	if a.Has(attr.Mode) {
		e.Mode = n.mode
	}
	if a.Has(attr.UID) {
		e.UID = n.uid
	}
	if a.Has(attr.GID) {
		e.GID = n.gid
	}
	if a.Has(attr.Size) {
		e.Size = n.size
	}
	if n.typ == attr.TypeChar || n.typ == attr.TypeBlock {
		e.Rdev = n.rdev
	}
	if a.Has(attr.Target) {
		e.Target = n.target
	}
	if a.Has(attr.Mtime) {
		e.Mtime = n.mtime
	}
	if a.Has(attr.Xattrs) {
		e.Xattrs = n.xattrs
	}
	if a.Any(attr.Hashes) {
		e.Hash = n.hash
	}
}
