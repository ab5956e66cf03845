package watch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"sort"

	"github.com/podfim/podfim/internal/attr"
)

// Index is the baseline as the sidecar keeps it resident: every entry
// encoded compactly (varints, about 90 bytes for a hashed file against
// about 240 for a decoded attr.Entry with its path and hash) in one slab,
// in path order, plus a table of 12 bytes an entry that finds one by a
// keyed hash of its path. A whole-tree check streams it (Cursor) into a
// compare.Merger while the scan emits, so neither side is held decoded;
// an event check decodes the one entry it needs (Lookup); a quick check
// asks Unchanged, which decodes nothing it does not compare. Immutable
// once built, so safe for concurrent use.
//
// A lookup always compares the stored path with the one asked for, so
// paths whose keys collide are told apart (the key only narrows the
// search); the seed is random per index all the same, so that nobody can
// make many paths share a key.
type Index struct {
	// chunks hold the records (see IndexBuilder.Add) in attr.ComparePaths
	// order, chunkSize bytes each at most: growing one slab by doubling
	// would copy it and, for a moment, hold it three times.
	chunks [][]byte
	keys   []uint64 // keyed hashes of the paths, sorted
	offs   []uint32 // offs[i]: chunk<<chunkBits | offset of the record of keys[i]
	seed   maphash.Seed
	count  int
	dirs   int
}

// Chunks of records: 2 MiB, more than the largest record (a path and a
// link target of 4 KiB, 256 KiB of xattrs at most in a baseline: see
// maxRecord), and 2,048 of them: 4 GiB, far beyond any policy's maxFiles
// times the size of an entry.
const (
	chunkBits = 21
	chunkSize = 1 << chunkBits
	maxChunks = 1 << (32 - chunkBits)
	maxRecord = chunkSize
)

// ErrIndexFull is returned by IndexBuilder.Add when the index would pass
// 4 GiB or an entry would pass maxRecord.
var ErrIndexFull = errors.New("index full")

// ErrIndexOrder is returned by IndexBuilder.Add for an entry out of path
// order: a baseline stores its entries sorted, and the merge relies on it.
var ErrIndexOrder = errors.New("entries out of path order")

// IndexBuilder builds an Index from entries added in path order.
type IndexBuilder struct {
	x    *Index
	last string
	rec  []byte // the record being encoded
	err  error
}

// NewIndexBuilder returns a builder; n, when known, sizes its tables.
func NewIndexBuilder(n int) *IndexBuilder {
	// n may come from a file: it sizes the table up to a million entries,
	// and appending grows it beyond.
	n = max(0, min(n, 1<<20))
	return &IndexBuilder{x: &Index{seed: maphash.MakeSeed(), keys: make([]uint64, 0, n), offs: make([]uint32, 0, n)}}
}

// Record layout: uvarint len(path), path, then the fields of attr.Entry
// in order (uvarints; zigzag varints for the signed ones, ctime as its
// difference to mtime), the hash and
// target length-prefixed, a flags byte (racy), the layer, and the xattrs
// (count, then name and value length-prefixed). Prefix is never stored
// (a scan's, not a baseline's).

// Add appends e, which must come after the previous entry in path order.
func (b *IndexBuilder) Add(e *attr.Entry) error {
	if b.err != nil {
		return b.err
	}
	if b.x.count > 0 && attr.ComparePaths(b.last, e.Path) >= 0 {
		b.err = fmt.Errorf("index: %q after %q: %w", e.Path, b.last, ErrIndexOrder)
		return b.err
	}
	s := appendString(b.rec[:0], e.Path)
	s = binary.AppendUvarint(s, uint64(e.Attrs))
	s = append(s, byte(e.Type))
	s = binary.AppendUvarint(s, uint64(e.Mode))
	s = binary.AppendUvarint(s, uint64(e.UID))
	s = binary.AppendUvarint(s, uint64(e.GID))
	s = binary.AppendVarint(s, e.Size)
	s = binary.AppendUvarint(s, e.Inode)
	s = binary.AppendUvarint(s, e.Nlink)
	s = binary.AppendUvarint(s, e.Rdev)
	s = appendString(s, e.Target)
	s = binary.AppendVarint(s, e.Mtime)
	s = binary.AppendVarint(s, e.Ctime-e.Mtime) // usually close: a few bytes
	s = appendBytes(s, e.Hash)
	racy := byte(0)
	if e.Racy {
		racy = 1
	}
	s = append(s, racy)
	s = binary.AppendUvarint(s, uint64(e.Layer))
	s = binary.AppendUvarint(s, uint64(len(e.Xattrs)))
	for _, x := range e.Xattrs {
		s = appendString(s, x.Name)
		s = appendBytes(s, x.Value)
	}
	b.rec = s
	off, err := b.x.store(s)
	if err != nil {
		b.err = fmt.Errorf("index: %q: %w", e.Path, err)
		return b.err
	}
	b.x.keys = append(b.x.keys, maphash.String(b.x.seed, e.Path))
	b.x.offs = append(b.x.offs, off)
	b.x.count++
	if e.Type == attr.TypeDir {
		b.x.dirs++
	}
	b.last = e.Path
	return nil
}

// store copies a record into the last chunk, or a new one, and returns
// its offset.
func (x *Index) store(rec []byte) (uint32, error) {
	if len(rec) > maxRecord {
		return 0, fmt.Errorf("entry of %d bytes: %w", len(rec), ErrIndexFull)
	}
	n := len(x.chunks)
	if n == 0 || len(x.chunks[n-1])+len(rec) > chunkSize {
		if n == maxChunks {
			return 0, ErrIndexFull
		}
		x.chunks = append(x.chunks, make([]byte, 0, chunkSize))
		n++
	}
	c := x.chunks[n-1]
	off := uint32(n-1)<<chunkBits | uint32(len(c))
	x.chunks[n-1] = append(c, rec...)
	return off, nil
}

// at returns a decoder at offset off.
func (x *Index) at(off uint32) decoder {
	return decoder{b: x.chunks[off>>chunkBits], i: int(off & (chunkSize - 1))}
}

// Finish returns the index, or the first error of Add.
func (b *IndexBuilder) Finish() (*Index, error) {
	if b.err != nil {
		return nil, b.err
	}
	x := b.x
	b.x, b.rec = nil, nil
	if n := len(x.chunks); n > 0 && cap(x.chunks[n-1])-len(x.chunks[n-1]) > chunkSize/4 {
		x.chunks[n-1] = slices.Clone(x.chunks[n-1]) // a small tree need not hold 2 MiB
	}
	sort.Sort(byKey{x})
	return x, nil
}

// byKey sorts keys and offs together.
type byKey struct{ x *Index }

func (k byKey) Len() int           { return len(k.x.keys) }
func (k byKey) Less(i, j int) bool { return k.x.keys[i] < k.x.keys[j] }
func (k byKey) Swap(i, j int) {
	k.x.keys[i], k.x.keys[j] = k.x.keys[j], k.x.keys[i]
	k.x.offs[i], k.x.offs[j] = k.x.offs[j], k.x.offs[i]
}

// IndexOf builds an index of entries (sorted by path).
func IndexOf(entries []attr.Entry) (*Index, error) {
	b := NewIndexBuilder(len(entries))
	for i := range entries {
		if err := b.Add(&entries[i]); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// Len returns the number of entries; Dirs the number of directories.
func (x *Index) Len() int  { return x.count }
func (x *Index) Dirs() int { return x.dirs }

// Bytes returns what the index holds in memory, about.
func (x *Index) Bytes() int {
	n := 8*cap(x.keys) + 4*cap(x.offs)
	for _, c := range x.chunks {
		n += cap(c)
	}
	return n
}

// find returns a decoder at the record of path, after its path.
func (x *Index) find(path string) (decoder, bool) {
	key := maphash.String(x.seed, path)
	i, _ := slices.BinarySearch(x.keys, key)
	for ; i < len(x.keys) && x.keys[i] == key; i++ {
		d := x.at(x.offs[i])
		if p := d.bytes(); string(p) == path {
			return d, true
		}
	}
	return decoder{}, false
}

// Lookup returns a copy of the entry of path (scan.Prior).
func (x *Index) Lookup(path string) (*attr.Entry, bool) {
	d, ok := x.find(path)
	if !ok {
		return nil, false
	}
	e := &attr.Entry{Path: path}
	d.entry(e, nil)
	e.Hash = bytes.Clone(e.Hash)
	for i := range e.Xattrs {
		e.Xattrs[i].Value = bytes.Clone(e.Xattrs[i].Value)
	}
	return e, true
}

// Unchanged answers scan.QuickHashes: the hash recorded for path when it
// was recorded as a regular file, not racy, hashed with alg, with this
// inode, size, mtime and ctime; nil otherwise. The bytes are the index's:
// only read them.
func (x *Index) Unchanged(path string, alg attr.Set, ino uint64, size, mtime, ctime int64) []byte {
	d, ok := x.find(path)
	if !ok {
		return nil
	}
	var e attr.Entry
	d.entry(&e, nil)
	if e.Type != attr.TypeRegular || e.Racy || len(e.Hash) == 0 || e.HashAlg() != alg || !e.Attrs.Has(quickNeed) ||
		e.Inode != ino || e.Size != size || e.Mtime != mtime || e.Ctime != ctime {
		return nil
	}
	return slices.Clip(e.Hash)
}

// quickNeed is what a baseline entry must have recorded for quick mode to
// reuse its hash (as baseline.QuickIndex).
const quickNeed = attr.Size | attr.Mtime | attr.Ctime | attr.Inode

// Cursor returns a function that yields the entries in path order, then
// io.EOF (compare.NewMerger's source). The entry is reused by the next
// call; its hash and xattr values are the index's (read only).
func (x *Index) Cursor() func() (*attr.Entry, error) {
	var d decoder
	chunk := 0
	var e attr.Entry
	var xs []attr.Xattr
	return func() (*attr.Entry, error) {
		for d.i >= len(d.b) {
			if chunk == len(x.chunks) {
				return nil, io.EOF
			}
			d = decoder{b: x.chunks[chunk]}
			chunk++
		}
		e = attr.Entry{Path: string(d.bytes())}
		xs = d.entry(&e, xs[:0])
		return &e, nil
	}
}

// Each calls f with every entry in path order until f returns false; the
// entry is reused as Cursor's.
func (x *Index) Each(f func(*attr.Entry) bool) {
	next := x.Cursor()
	for {
		e, err := next()
		if err != nil || !f(e) {
			return
		}
	}
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads records the builder wrote: the chunks are the index's own,
// so they are well formed by construction.
type decoder struct {
	b []byte
	i int
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b[d.i:])
	d.i += n
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b[d.i:])
	d.i += n
	return v
}

func (d *decoder) bytes() []byte {
	n := int(d.uvarint())
	b := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return b
}

// entry decodes the fields after the path into e; the xattrs are appended
// to xs, which it returns (e.Xattrs is nil when there are none).
func (d *decoder) entry(e *attr.Entry, xs []attr.Xattr) []attr.Xattr {
	e.Attrs = attr.Set(d.uvarint())
	e.Type = attr.FileType(d.b[d.i])
	d.i++
	e.Mode = uint32(d.uvarint())
	e.UID = uint32(d.uvarint())
	e.GID = uint32(d.uvarint())
	e.Size = d.varint()
	e.Inode = d.uvarint()
	e.Nlink = d.uvarint()
	e.Rdev = d.uvarint()
	e.Target = string(d.bytes())
	e.Mtime = d.varint()
	e.Ctime = e.Mtime + d.varint()
	if h := d.bytes(); len(h) > 0 {
		e.Hash = h
	}
	e.Racy = d.b[d.i] == 1
	d.i++
	e.Layer = uint16(d.uvarint())
	n := int(d.uvarint())
	for range n {
		name := string(d.bytes())
		xs = append(xs, attr.Xattr{Name: name, Value: d.bytes()})
	}
	if n > 0 {
		e.Xattrs = xs[len(xs)-n:]
	}
	return xs
}
