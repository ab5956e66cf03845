package scan

import (
	"sync"

	"github.com/podfim/podfim/internal/attr"
)

// SharedHashes gives scans of different trees the content hashes of files
// they share: the node agent's scans of containers of one image, whose
// image files are one inode of the node each (overlayfs shows a lower
// layer's file with its own inode number in every container). A hash is
// keyed by what identifies one version of one file: its inode number,
// size, mtime and ctime (any write changes ctime, which user space cannot
// set; a container's copy-up is a new inode), and the algorithm. A scan
// takes a hash from it instead of reading a file that is not racy, and
// gives it every hash it computes of a file that is not racy. What one
// container writes is a new inode of its own: it never answers for
// another's file.
type SharedHashes interface {
	Get(alg attr.Set, ino uint64, size, mtime, ctime int64) []byte
	Put(alg attr.Set, ino uint64, size, mtime, ctime int64, sum []byte)
}

// hashKey is one version of one file, hashed with one algorithm.
type hashKey struct {
	ino                uint64
	size, mtime, ctime int64
	alg                attr.Set
}

// HashCache is the SharedHashes of one node: at most max hashes, dropped
// all at once by Reset (the agent's full-check interval, so that every
// file is read at least once per interval on the node). Safe for
// concurrent use.
type HashCache struct {
	mu     sync.Mutex
	m      map[hashKey]string
	max    int
	hits   int64 // since the last Reset
	misses int64
	// total hits and misses, for the metrics
	allHits, allMisses int64
}

// NewHashCache returns an empty cache of at most max hashes.
func NewHashCache(max int) *HashCache {
	return &HashCache{m: map[hashKey]string{}, max: max}
}

// Get returns the hash of that file version, or nil.
func (c *HashCache) Get(alg attr.Set, ino uint64, size, mtime, ctime int64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[hashKey{ino, size, mtime, ctime, alg}]
	if !ok {
		c.misses++
		c.allMisses++
		return nil
	}
	c.hits++
	c.allHits++
	return []byte(h)
}

// Put keeps the hash of that file version, unless the cache is full.
func (c *HashCache) Put(alg attr.Set, ino uint64, size, mtime, ctime int64, sum []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) < c.max {
		c.m[hashKey{ino, size, mtime, ctime, alg}] = string(sum)
	}
}

// Reset drops every hash and returns the counts of hits and misses since
// the last Reset, and how many hashes it held.
func (c *HashCache) Reset() (hits, misses int64, held int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hits, misses, held = c.hits, c.misses, len(c.m)
	c.m, c.hits, c.misses = map[hashKey]string{}, 0, 0
	return hits, misses, held
}

// Stats returns the hits and misses since the cache was made, and how
// many hashes it holds.
func (c *HashCache) Stats() (hits, misses int64, held int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.allHits, c.allMisses, len(c.m)
}
