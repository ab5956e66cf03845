package scan

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/podfim/podfim/internal/attr"
)

// ErrLimit is wrapped by the error of a scan that found more entries than
// Options.MaxFiles, and by the Warnings about the other limits.
var ErrLimit = errors.New("scan limit exceeded")

// MaxPathBytes is the longest path a scan records: PATH_MAX, which is also
// what a baseline holds. Deeper names exist (each component is at most 255
// bytes, a path has no limit), and a tree can hold them to make a baseline
// fail; they are left out with a Warning instead.
const MaxPathBytes = 4096

// errSwapped and errChanged explain Warnings about objects that changed under
// the scanner.
var (
	errSwapped = errors.New("replaced by another object during the scan")
	errChanged = errors.New("changed while it was being hashed")
)

// Matcher says what to collect for a path. It is called concurrently from
// several goroutines.
type Matcher interface {
	// Match returns the attributes to collect for path (relative to the
	// root, starting with "/", raw bytes), and skip=true when the path (and
	// for a directory everything beneath it) is excluded and must not be
	// walked or recorded.
	Match(path string) (attrs attr.Set, skip bool)
}

// Descender is implemented by a Matcher that can say a skipped directory
// must still be walked, because a rule applies beneath it (a policy that
// watches only /srv/www skips "/" and "/srv" but must walk them). Such a
// directory is walked but not recorded.
type Descender interface {
	Descend(dir string) bool
}

// Namer is implemented by a Matcher whose rules can name a pseudo file
// system (procfs, sysfs, cgroupfs...: see pseudo.go): the scan enters one
// mounted at dir, or hashes a file of one, only when Names(dir) says a rule
// is for dir or for a path beneath it. Without a Namer none is entered.
type Namer interface {
	Names(dir string) bool
}

// Prior gives the baseline entry for a path; Options.Growing uses it. It is
// called concurrently from several goroutines and its entries are only read.
type Prior interface {
	Lookup(path string) (*attr.Entry, bool)
}

// QuickHashes is what quick mode needs from a baseline, and all it needs:
// baseline.QuickIndex answers it from a fraction of the memory of a
// decoded baseline. It is called concurrently from several goroutines.
//
// A scan asks it in path order, from the goroutine that walks, but for the
// rare file swapped under the scan, asked again from elsewhere: so a
// QuickHashes may read the baseline as it is asked (baseline.QuickCursor,
// which says so with a method Ordered() bool), and an answer of nil only
// means that the file is hashed. An index that answers any path
// (watch.Index) works too.
type QuickHashes interface {
	// Unchanged returns the hash recorded for path when the baseline
	// recorded it as a regular file, not racy, hashed with alg, with this
	// inode, size, mtime and ctime; nil otherwise. The bytes are only
	// read, and the scan's entries keep them.
	Unchanged(path string, alg attr.Set, ino uint64, size, mtime, ctime int64) []byte
}

// Options control a scan. The zero value collects attr.All for every path
// with no limits.
type Options struct {
	// Matcher says what to collect; nil collects attr.All everywhere.
	Matcher Matcher
	// Workers is the number of goroutines; 0 means runtime.GOMAXPROCS(0),
	// at most 64.
	Workers int
	// MaxFiles > 0: a tree with more entries than this fails with an error
	// wrapping ErrLimit (a partial result would look like deletions).
	MaxFiles int
	// MaxDepth > 0: directories deeper than this (the root is depth 0, "/a"
	// depth 1) are recorded but not descended, with a Warning.
	//
	// Whatever the options, a path longer than MaxPathBytes is neither
	// recorded nor descended, with a Warning (op "limit", ErrLimit): no
	// baseline can hold it, and the rest of the tree is still scanned.
	MaxDepth int
	// MaxFileBytes > 0: regular files larger than this are recorded without
	// a hash, with a Warning.
	MaxFileBytes int64
	// QuickHashes, when set, turns on quick mode: a regular file whose
	// prior entry has the same type, size, mtime, ctime and inode, the same
	// hash algorithm, a hash, and was not racy (and that is not racy now)
	// gets the prior hash without being opened. This is sound because any
	// write to the content updates mtime and ctime; mtime can be set back
	// with utimensat, but that sets ctime to the current time, and ctime
	// cannot be set from user space; replacing the file by another changes
	// the inode number. Racy files (changed within a second of the scan
	// that recorded them) are always re-hashed, since a later write within
	// the same timestamp tick would leave all of these equal. Everything
	// else (metadata, xattrs) is still collected.
	QuickHashes QuickHashes
	// Shared, when set, gives and takes the hashes of files that other
	// scans (of other trees) share (SharedHashes): a regular file that is
	// not racy and whose version it knows is not read. Files of Growing
	// rules are left out (what is read of them depends on the prior).
	Shared SharedHashes
	// Growing, when set (the baseline), makes Growing mean append-only: for
	// a regular file whose rule has the Growing modifier and that is larger
	// than its prior entry (a regular file hashed with the same algorithm),
	// the scan records in Entry.Prefix the hash of its first prior-size
	// bytes, and compare.Diff checks it against the prior hash. Unless
	// GrowingFull is set, that prefix is all that is read of such a file
	// (Entry.Hash stays empty): the rest was appended and is not compared,
	// so a log of gigabytes costs what it held at baseline time, and
	// MaxFileBytes bounds those bytes. With GrowingFull the whole file is
	// hashed too, in the same pass (a caller that reports the new hash or
	// stores the entry as a new baseline).
	Growing     Prior
	GrowingFull bool
	// Emit, when set, receives every entry in attr.ComparePaths order
	// (from one goroutine) instead of Result.Entries, which stays nil: a
	// caller that compares as it goes never holds the whole tree. The
	// entries are emitted during the walk, which then holds a bounded
	// window of them (see ordered.go). The entry is valid during the call
	// only: the next call reuses it, so that emitting 100,000 entries makes
	// no garbage (which would drive the heap to its GC goal at the scan's
	// peak of live memory). Its strings, hash and xattrs are never
	// overwritten; a callee that keeps the entry keeps a copy of the struct
	// or an attr.Entry.Clone.
	Emit func(*attr.Entry)
	// Now returns the time the scan starts, for the Racy flag; nil means
	// time.Now.
	Now func() time.Time
	// Progress, when set, is kept up to date during the walk, for a
	// progress display to read from another goroutine.
	Progress *Progress

	// Test hooks, set only by this package's tests: beforeOpen runs after a
	// path was listed and lstat'ed and before it is opened; afterRead after
	// a file was read for hashing and before the fstat that checks it did
	// not change.
	beforeOpen func(path string)
	afterRead  func(path string)
}

// Warning is a non-fatal problem with one path: permission denied, an object
// that vanished or was replaced during the scan, a limit that was hit. The
// path was still recorded with what could be collected, unless it vanished.
type Warning struct {
	Path string
	Op   string // lstat, open, readdir, read, readlink, xattr, limit, swap, changed, duplicate
	Err  error
}

// Error makes a Warning usable as an error (Root.Entry returns them).
func (w Warning) Error() string { return fmt.Sprintf("%s %q: %v", w.Op, w.Path, w.Err) }

// Unwrap returns the underlying error, so errors.Is(w, ErrLimit) works.
func (w Warning) Unwrap() error { return w.Err }

// Incomplete reports whether the Warning means that something the policy
// asks for was not collected: a path not recorded or not descended (limit,
// lstat, readdir), a content not hashed (open, read, swap, changed, limit),
// a link target or xattrs not read. A comparison with such a result did not
// compare the whole tree. Only "duplicate" (a name listed twice, recorded
// once) leaves nothing out.
func (w Warning) Incomplete() bool { return w.Op != "duplicate" }

// Stats counts the work of a scan.
type Stats struct {
	Entries     int64 // entries in the result
	Dirs        int64 // directories among them
	Hashed      int64 // regular files read and hashed
	Reused      int64 // regular files whose hash quick mode took from the prior entry
	Shared      int64 // regular files whose hash Options.Shared gave
	HashedBytes int64 // bytes read for hashing, retries included
	// Pseudo counts the mount points of pseudo file systems (procfs,
	// sysfs...) neither recorded nor entered, and the files of one
	// (bind-mounted alone) not hashed, because no rule names them.
	Pseudo int64
}

// Progress counts a running scan's work: entries recorded and bytes read
// for hashing so far. Each worker adds its counts after every batch of
// files and every directory it lists, not per file, so that the counters
// cost nothing measurable: a reader sees figures that are a batch behind.
type Progress struct {
	Entries atomic.Int64
	Bytes   atomic.Int64
}

// Result is the outcome of a scan.
type Result struct {
	// Entries are sorted with attr.ComparePaths. Xattr values that repeat
	// (SELinux labels, for one) may share their backing arrays: treat them
	// as read-only.
	Entries  []attr.Entry
	Warnings []Warning
	Stats    Stats
}

// Tree scans the tree at root: OpenRoot, Root.Tree, Close.
func Tree(ctx context.Context, root string, opts Options) (*Result, error) {
	r, err := OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Tree(ctx, opts)
}
