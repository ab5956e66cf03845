package baseline

import (
	"hash/maphash"
	"io"
	"math"
	"math/bits"
	"slices"

	"github.com/podfim/podfim/internal/attr"
)

// QuickIndex holds what a quick check asks of a baseline, and nothing
// else: for each regular file that was hashed and not racy, its inode,
// size, mtime, ctime, hash algorithm and hash, found by path. It takes
// about 48 bytes an entry plus the hash, against about 200 for a decoded
// entry, and it answers scan.QuickHashes.
//
// Paths are not stored: an entry is found by a 64-bit keyed hash of its
// path (hash/maphash, with a seed made at random for each index, so that
// nobody can choose paths that collide). Paths whose keys collide within
// the baseline are left out (their files are hashed). A false match needs
// a path whose key collides with a recorded one (2^-64 for any pair, and
// not something an attacker can aim at without the seed) and, on top of
// that, a file with the recorded inode, size, mtime and ctime to the
// nanosecond, which the kernel sets on every write.
type QuickIndex struct {
	seed   maphash.Seed
	recs   []quickRec // sorted by key
	top    []uint32   // recs[top[b]:top[b+1]] have b as the top bits of their key
	shift  uint       // 64 minus the number of top bits
	hashes []byte     // the recorded hashes, in one slab
}

type quickRec struct {
	key                uint64
	ino                uint64
	size, mtime, ctime int64
	hash               uint32 // offset in hashes
	alg                attr.Set
}

// quickNeed is what a baseline entry must have recorded for quick mode to
// reuse its hash (see scan.Options.QuickHashes).
const quickNeed = attr.Size | attr.Mtime | attr.Ctime | attr.Inode

// NewQuickIndex reads the rest of r's entries into an index. It fails as
// Next does, and then returns no index: one built from part of a baseline
// would only make files hashed that need not be, but a quick check must
// not run on a baseline that does not read.
func NewQuickIndex(r *Reader) (*QuickIndex, error) {
	q := &QuickIndex{seed: maphash.MakeSeed()}
	// The count sizes the tables only as far as the payload could hold
	// that many entries (as in readAll): an authentic file may still lie.
	n := min(uint64(max(r.Count-r.Decoded(), 0)), r.payloadLen/32+64)
	q.recs = make([]quickRec, 0, n)
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		alg := e.HashAlg()
		if e.Racy || e.Type != attr.TypeRegular || len(e.Hash) == 0 || !e.Attrs.Has(quickNeed) ||
			len(q.hashes)+len(e.Hash) > math.MaxUint32 {
			continue
		}
		if q.hashes == nil {
			// Sized for every entry with a hash of this one's size.
			q.hashes = make([]byte, 0, n*uint64(len(e.Hash)))
		}
		q.recs = append(q.recs, quickRec{
			key: maphash.String(q.seed, e.Path), ino: e.Inode, size: e.Size, mtime: e.Mtime, ctime: e.Ctime,
			hash: uint32(len(q.hashes)), alg: alg,
		})
		q.hashes = append(q.hashes, e.Hash...)
	}
	slices.SortFunc(q.recs, func(a, b quickRec) int {
		switch {
		case a.key < b.key:
			return -1
		case a.key > b.key:
			return 1
		}
		return 0
	})
	q.recs = uniqueKeys(q.recs)
	// About two records per bucket: the bucket table costs 2 bytes an
	// entry, and a lookup reads one or two records.
	b := 0
	if len(q.recs) > 1 {
		b = bits.Len(uint(len(q.recs)-1)) - 1
	}
	q.shift = uint(64 - b)
	q.top = make([]uint32, 1<<b+1)
	k := 0
	for i := range 1 << b {
		q.top[i] = uint32(k)
		for k < len(q.recs) && q.bucket(q.recs[k].key) == uint64(i) {
			k++
		}
	}
	q.top[1<<b] = uint32(len(q.recs))
	return q, nil
}

// uniqueKeys drops from recs, sorted by key, every record whose key is
// not unique: two paths with one key cannot be told apart, so neither is
// looked up (their files are hashed).
func uniqueKeys(recs []quickRec) []quickRec {
	out := recs[:0]
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && recs[j].key == recs[i].key {
			j++
		}
		if j == i+1 {
			out = append(out, recs[i])
		}
		i = j
	}
	return slices.Clip(out)
}

// bucket returns the bucket of a key: its top bits.
func (q *QuickIndex) bucket(key uint64) uint64 {
	if q.shift >= 64 {
		return 0
	}
	return key >> q.shift
}

// Len returns the number of files in the index.
func (q *QuickIndex) Len() int { return len(q.recs) }

// Unchanged returns the hash the baseline recorded for path when it
// recorded a regular file, not racy, hashed with alg, with this inode,
// size, mtime and ctime; nil otherwise. The bytes must only be read. It is
// safe for concurrent use.
func (q *QuickIndex) Unchanged(path string, alg attr.Set, ino uint64, size, mtime, ctime int64) []byte {
	if len(q.recs) == 0 {
		return nil
	}
	key := maphash.String(q.seed, path)
	b := q.bucket(key)
	for i := q.top[b]; i < q.top[b+1]; i++ {
		r := &q.recs[i]
		if r.key < key {
			continue
		}
		if r.key > key || r.alg != alg || r.ino != ino || r.size != size || r.mtime != mtime || r.ctime != ctime {
			return nil
		}
		n := uint32(hashSize(alg))
		return q.hashes[r.hash : r.hash+n : r.hash+n]
	}
	return nil
}
