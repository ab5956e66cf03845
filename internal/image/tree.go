package image

import (
	"archive/tar"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/unix"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/scan"
)

// Whiteout names of the OCI image layer format: a ".wh.NAME" entry deletes
// NAME from the layers below, ".wh..wh..opq" in a directory hides all of
// its content from the layers below. Other ".wh..wh." names are AUFS
// bookkeeping that runtimes skip.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// ErrUnsupported is wrapped by the error for a layer entry podfim does not
// apply: a type no runtime applies (a tar "contiguous file", an unknown
// type flag), or a sparse file (see object).
var ErrUnsupported = errors.New("unsupported image layer entry")

// maxWarnings bounds Tree's warnings: the rest are counted in one last
// warning, as an image can hold any number of files over a limit.
const maxWarnings = 1000

// Matcher says what to record for a path (policy.Matcher). Descend says
// whether the content of a directory the policy does not record must still
// be kept because a rule applies beneath it.
type Matcher interface {
	scan.Matcher
	scan.Descender
}

// Limits bound what a Tree holds, as they bound a scan of a tree.
type Limits struct {
	// MaxFiles > 0: more live entries than this at any point fail the
	// build with an error wrapping scan.ErrLimit. Entries, not bytes,
	// are what a Tree's memory grows with.
	MaxFiles int
	// MaxDepth > 0: the content of directories deeper than this (the root
	// is depth 0, "/a" depth 1) is not kept, with a Warning.
	MaxDepth int
	// MaxFileBytes > 0: larger regular files are recorded without a hash,
	// with a Warning.
	MaxFileBytes int64
}

// node is one object of the image's file system as the layers applied so
// far built it. Hard links share one node, as they share an inode.
type node struct {
	typ     attr.FileType
	mode    uint32
	uid     uint32
	gid     uint32
	size    int64
	mtime   int64
	rdev    uint64
	target  string
	xattrs  []attr.Xattr
	hash    []byte
	hashAlg attr.Set // the algorithm of hash, or 0: not hashed
	// layer is the last layer (from 1) that wrote the object.
	layer uint16
	// opaque is the last layer that emptied this directory of the
	// layers below (see dropLower).
	opaque uint16
	// unsure holds the attributes that runtimes do not agree on for this
	// object (see touch): they are not recorded.
	unsure attr.Set
	// prune: a directory whose content is not kept (excluded by the
	// policy, or beyond MaxDepth).
	prune    bool
	children map[string]*node // directories only
}

// Tree applies image layers one after another, as a container runtime
// unpacks them, and keeps the attributes of every object without its
// content: regular files are hashed as their bytes stream past.
type Tree struct {
	m      Matcher
	limits Limits
	root   *node
	live   int    // nodes held, the root aside
	layer  uint16 // the layer being applied
	stats  scan.Stats

	warnings []scan.Warning
	dropped  int // warnings beyond maxWarnings

	buf     []byte
	hashers map[attr.Set]hash.Hash
}

// NewTree returns an empty tree (a root directory) for m and limits.
func NewTree(m Matcher, limits Limits) *Tree {
	return &Tree{
		m:       m,
		limits:  limits,
		root:    &node{typ: attr.TypeDir, mode: 0o755, unsure: ^attr.Type, children: map[string]*node{}},
		hashers: map[attr.Set]hash.Hash{},
	}
}

// Apply applies one layer, an uncompressed tar stream, as layer number
// layer (counted from 1, the base layer; at most 65535). It reads r to the
// end. An error leaves the tree in an undefined state: the image is refused.
func (t *Tree) Apply(layer int, r io.Reader) error {
	if layer < 1 || layer > 0xffff {
		return fmt.Errorf("layer number %d is outside [1, 65535]", layer)
	}
	t.layer = uint16(layer)
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			// Any padding and a second end block stay unread: a
			// runtime stops at the first end-of-archive marker too.
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer %d: failed to read tar: %w", layer, err)
		}
		if err := t.entry(hdr, tr); err != nil {
			return fmt.Errorf("layer %d: %w", layer, err)
		}
	}
}

// entry applies one tar entry.
func (t *Tree) entry(hdr *tar.Header, content io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // global PAX records: tar.Reader already applied them
	}
	parts, err := splitName(hdr.Name)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		// The root: its attributes come from the runtime's own directory
		// for the container, not from the image (see NewTree).
		return nil
	}
	parent, err := t.parentOf(hdr.Name, parts)
	if err != nil || parent == nil {
		return err // nil parent: inside a directory whose content is not kept
	}
	base := parts[len(parts)-1]
	if strings.HasPrefix(base, whiteoutPrefix) {
		return t.whiteout(hdr.Name, parent, base)
	}
	n, err := t.object(hdr, parts, content)
	if err != nil || n == nil {
		return err
	}
	return t.place(parent, base, n, parts)
}

// parentOf returns the directory that holds the entry named by parts,
// creating missing directories as a runtime does, or nil when the entry is
// inside a directory whose content is not kept.
func (t *Tree) parentOf(name string, parts []string) (*node, error) {
	dir := t.root
	for i, p := range parts[:len(parts)-1] {
		child := dir.children[p]
		switch {
		case child == nil:
			c, err := t.implied(parts[:i+1])
			if err != nil {
				return nil, err
			}
			dir.children[p], child = c, c
		case child.typ == attr.TypeSymlink:
			// A runtime would follow it, perhaps out of the root.
			return nil, unsafeError(name, fmt.Sprintf("goes through the symbolic link %q", joinPath(parts[:i+1])))
		case child.typ != attr.TypeDir:
			return nil, unsafeError(name, fmt.Sprintf("%q is a %s, not a directory", joinPath(parts[:i+1]), child.typ))
		default:
			t.touch(child)
		}
		if child.prune {
			return nil, nil
		}
		dir = child
	}
	return dir, nil
}

// implied returns the directory a runtime creates for an entry whose parent
// is missing: mode 0755, owned by root, at the time of unpacking (which is
// not the image's, so mtime is not recorded).
func (t *Tree) implied(parts []string) (*node, error) {
	n := &node{typ: attr.TypeDir, mode: 0o755, layer: t.layer, unsure: attr.Mtime}
	t.dir(n, parts)
	return n, t.grow()
}

// touch marks a directory that the current layer reaches into without an
// entry of its own. Runtimes disagree about it: containerd unpacks the
// layer onto the layers below and keeps the directory (with the mtime of
// the change), podman's overlay driver unpacks each layer into its own
// directory, where the runtime creates it (0755, root, now) and overlayfs
// then shows that one. Only what both give is recorded.
func (t *Tree) touch(d *node) {
	if d.layer == t.layer {
		return // written (or already touched) by this layer
	}
	d.layer = t.layer
	d.unsure |= attr.Mtime
	if d.mode != 0o755 {
		d.unsure |= attr.Mode
	}
	if d.uid != 0 {
		d.unsure |= attr.UID
	}
	if d.gid != 0 {
		d.unsure |= attr.GID
	}
	if len(d.xattrs) != 0 {
		d.unsure |= attr.Xattrs
	}
}

// dir sets up a new directory node at parts: its children, and whether its
// content is kept at all.
func (t *Tree) dir(n *node, parts []string) {
	n.children = map[string]*node{}
	p := joinPath(parts)
	if t.limits.MaxDepth > 0 && len(parts) > t.limits.MaxDepth {
		n.prune = true
		t.warn(p, "limit", fmt.Errorf("depth %d is over the limit of %d, content not kept: %w", len(parts), t.limits.MaxDepth, scan.ErrLimit))
		return
	}
	n.prune = !t.m.Descend(p)
}

// grow counts a new node against MaxFiles.
func (t *Tree) grow() error {
	t.live++
	if t.limits.MaxFiles > 0 && t.live > t.limits.MaxFiles {
		return fmt.Errorf("more than %d entries: %w", t.limits.MaxFiles, scan.ErrLimit)
	}
	return nil
}

// whiteout applies a ".wh." entry in dir.
func (t *Tree) whiteout(name string, dir *node, base string) error {
	switch {
	case base == whiteoutOpaque:
		t.dropLower(dir)
		return nil
	case strings.HasPrefix(base, whiteoutMeta):
		return nil
	}
	victim := base[len(whiteoutPrefix):]
	if victim == "" || victim == "." || victim == ".." {
		return unsafeError(name, "whiteout of no name")
	}
	t.remove(dir, victim)
	return nil
}

// dropLower removes from dir everything the current layer did not write,
// at any depth: an opaque directory hides the content of the layers below
// it, whatever order the layer lists its entries in. Once done for a
// directory, nothing of a lower layer can come back into it during the
// layer, so it is done once per layer: a layer repeating the marker
// (entries cost 512 bytes each) must not walk a large directory for each.
func (t *Tree) dropLower(dir *node) {
	if dir.opaque == t.layer {
		return
	}
	dir.opaque = t.layer
	for name, c := range dir.children {
		switch {
		case c.layer != t.layer:
			t.remove(dir, name)
		case c.typ == attr.TypeDir:
			t.dropLower(c)
		}
	}
}

// remove deletes name and everything beneath it from dir.
func (t *Tree) remove(dir *node, name string) {
	c := dir.children[name]
	if c == nil {
		return
	}
	delete(dir.children, name)
	t.live -= count(c)
}

// count returns the nodes held in the subtree of n, n included.
func count(n *node) int {
	k := 1
	for _, c := range n.children {
		k += count(c)
	}
	return k
}

// place puts n at dir/base. A directory over a directory keeps the content
// of the one below (layers merge); anything else replaces what was there,
// with everything beneath it.
func (t *Tree) place(dir *node, base string, n *node, parts []string) error {
	old := dir.children[base]
	switch {
	case old == n:
		return nil // a hard link to itself
	case n.typ == attr.TypeDir && old != nil && old.typ == attr.TypeDir:
		n.children, n.prune = old.children, old.prune
		dir.children[base] = n
		return nil
	case n.typ == attr.TypeDir:
		t.dir(n, parts)
	}
	if old != nil {
		t.live -= count(old)
	}
	dir.children[base] = n
	return t.grow()
}

// object returns the node for a tar entry that is not a whiteout, with its
// content hashed; nil (and no error) for a hard link already applied.
func (t *Tree) object(hdr *tar.Header, parts []string, content io.Reader) (*node, error) {
	n := &node{
		mode:  uint32(hdr.Mode) & 0o7777,
		uid:   uint32(hdr.Uid),
		gid:   uint32(hdr.Gid),
		mtime: hdr.ModTime.UnixNano(),
		layer: t.layer,
	}
	if sparse(hdr) {
		// Go's tar reader (and so containerd) expands the holes: a few
		// bytes of layer could make a file of any size to hash. No image
		// builder writes sparse entries.
		return nil, fmt.Errorf("%w %q: a sparse file", ErrUnsupported, hdr.Name)
	}
	xattrs, cut, err := headerXattrs(hdr)
	if err != nil {
		return nil, unsafeError(hdr.Name, err.Error())
	}
	if cut {
		t.warn(joinPath(parts), "xattr", scan.ErrXattrLimit)
	}
	n.xattrs = xattrs
	switch hdr.Typeflag {
	case tar.TypeReg: // tar.Reader turns the old TypeRegA into TypeReg or TypeDir
		n.typ, n.size = attr.TypeRegular, hdr.Size
		if err := t.hash(n, joinPath(parts), content); err != nil {
			return nil, err
		}
	case tar.TypeDir:
		n.typ = attr.TypeDir
	case tar.TypeSymlink:
		if len(hdr.Linkname) > maxPathLen || strings.IndexByte(hdr.Linkname, 0) >= 0 || hdr.Linkname == "" {
			return nil, unsafeError(hdr.Name, "symbolic link target is empty, longer than 4096 bytes or holds a NUL byte")
		}
		// Linux has no lchmod: a symlink is 0777 whatever the entry says.
		n.typ, n.target, n.size, n.mode = attr.TypeSymlink, hdr.Linkname, int64(len(hdr.Linkname)), 0o777
	case tar.TypeLink:
		return t.link(hdr, n, joinPath(parts))
	case tar.TypeChar, tar.TypeBlock:
		n.typ = map[byte]attr.FileType{tar.TypeChar: attr.TypeChar, tar.TypeBlock: attr.TypeBlock}[hdr.Typeflag]
		n.rdev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	case tar.TypeFifo:
		n.typ = attr.TypeFIFO
	default:
		return nil, fmt.Errorf("%w %q: tar type %q", ErrUnsupported, hdr.Name, hdr.Typeflag)
	}
	t.setMode(n)
	return n, nil
}

// setMode records what the runtimes make of n's mode and xattrs together
// (see applyMode).
func (t *Tree) setMode(n *node) {
	xs, agree := applyMode(n.xattrs, n.mode)
	n.xattrs = xs
	if !agree {
		n.unsure |= attr.Mode | attr.Xattrs
	}
}

// sparse reports whether hdr is a GNU sparse file, old or PAX format.
func sparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// hash hashes the content of a regular file as the layer streams it, with
// the algorithm the policy asks for path; a file the policy does not
// record, or one over MaxFileBytes, is not hashed (its bytes are skipped
// by the tar reader).
func (t *Tree) hash(n *node, path string, content io.Reader) error {
	attrs, skip := t.m.Match(path)
	alg := normalize(attrs) & attr.Hashes
	if skip || alg == 0 {
		return nil
	}
	if lim := t.limits.MaxFileBytes; lim > 0 && n.size > lim {
		t.warn(path, "limit", fmt.Errorf("size %d is over the limit of %d bytes, not hashed: %w", n.size, lim, scan.ErrLimit))
		return nil
	}
	h := t.hasher(alg)
	if t.buf == nil {
		t.buf = make([]byte, 256<<10)
	}
	read, err := io.CopyBuffer(h, content, t.buf)
	if err != nil {
		return fmt.Errorf("failed to read %q: %w", path, err)
	}
	if read != n.size {
		return fmt.Errorf("failed to read %q: %d bytes of %d", path, read, n.size)
	}
	n.hash, n.hashAlg = h.Sum(nil), alg
	t.stats.Hashed++
	t.stats.HashedBytes += read
	return nil
}

// hasher returns a reset hash state for alg, reused across files.
func (t *Tree) hasher(alg attr.Set) hash.Hash {
	h := t.hashers[alg]
	if h == nil {
		switch alg {
		case attr.SHA512:
			h = sha512.New()
		case attr.BLAKE3:
			h = blake3.New()
		default:
			h = sha256.New()
		}
		t.hashers[alg] = h
	}
	h.Reset()
	return h
}

// link applies a hard link entry: the name becomes another name of the
// target's object, as link(2) makes it; like a runtime, the entry's owner,
// mode, time and extended attributes are then set on that object (tar
// writers give a link the attributes of its target).
func (t *Tree) link(hdr *tar.Header, n *node, path string) (*node, error) {
	parts, err := splitName(hdr.Linkname)
	if err != nil {
		return nil, fmt.Errorf("hard link %q: target: %w", hdr.Name, err)
	}
	if len(parts) == 0 {
		return nil, unsafeError(hdr.Name, "hard link to the root directory")
	}
	dir, err := t.lookupDir(hdr.Linkname, parts[:len(parts)-1])
	if err != nil {
		return nil, fmt.Errorf("hard link %q: %w", hdr.Name, err)
	}
	var target *node
	if dir != nil {
		target = dir.children[parts[len(parts)-1]]
	}
	switch {
	case dir == nil || (target == nil && dir.prune):
		// The target is in content the policy does not keep: the link is
		// recorded without content.
		n.typ, n.unsure = attr.TypeRegular, attr.Size|attr.Hashes
		t.warn(path, "link", fmt.Errorf("hard link target %q is not kept (policy or limits): not hashed", hdr.Linkname))
		t.setMode(n)
		return n, nil
	case target == nil:
		return nil, fmt.Errorf("hard link %q: target %q does not exist", hdr.Name, hdr.Linkname)
	case target.typ == attr.TypeDir:
		return nil, unsafeError(hdr.Name, fmt.Sprintf("hard link to the directory %q", hdr.Linkname))
	}
	if target.typ != attr.TypeSymlink {
		target.mode = n.mode // there is no lchmod: a symlink keeps 0777
	}
	target.uid, target.gid, target.mtime, target.layer = n.uid, n.gid, n.mtime, n.layer
	target.xattrs = mergeXattrs(target.xattrs, n.xattrs)
	t.setMode(target)
	return target, nil
}

// lookupDir returns the directory at parts without creating or following
// anything, or nil when it is inside content that is not kept.
func (t *Tree) lookupDir(name string, parts []string) (*node, error) {
	dir := t.root
	for i, p := range parts {
		if dir.prune {
			return nil, nil
		}
		c := dir.children[p]
		switch {
		case c == nil:
			return nil, fmt.Errorf("target %q does not exist", name)
		case c.typ == attr.TypeSymlink:
			return nil, unsafeError(name, fmt.Sprintf("goes through the symbolic link %q", joinPath(parts[:i+1])))
		case c.typ != attr.TypeDir:
			return nil, fmt.Errorf("target %q: %q is not a directory", name, joinPath(parts[:i+1]))
		}
		dir = c
	}
	if dir.prune {
		return nil, nil
	}
	return dir, nil
}

// warn records a Warning, up to maxWarnings.
func (t *Tree) warn(path, op string, err error) {
	if len(t.warnings) < maxWarnings {
		t.warnings = append(t.warnings, scan.Warning{Path: path, Op: op, Err: err})
		return
	}
	t.dropped++
}

// Stats returns the work done so far: files hashed and their bytes.
func (t *Tree) Stats() scan.Stats { return t.stats }

// Warnings returns the warnings so far; beyond maxWarnings, the last one
// counts the rest.
func (t *Tree) Warnings() []scan.Warning {
	if t.dropped == 0 {
		return t.warnings
	}
	return append(t.warnings[:len(t.warnings):len(t.warnings)], scan.Warning{
		Path: "/", Op: "limit",
		Err: fmt.Errorf("%d more warnings not listed: %w", t.dropped, scan.ErrLimit),
	})
}

// normalize returns the attributes an entry records for what the policy
// asks: the type always, at most one hash (the lowest bit), as a scan does.
func normalize(attrs attr.Set) attr.Set {
	attrs |= attr.Type
	if h := attrs & attr.Hashes; h&(h-1) != 0 {
		attrs = attrs&^attr.Hashes | h&-h
	}
	return attrs
}
