package baseline

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/podfim/podfim/internal/attr"
)

// Version is the format version this package writes, and the newest it
// reads; it reads every older one too (1: no header record, no layers).
const Version = 2

// Default limits applied by Read when ReadOptions leaves them zero.
const (
	// DefaultMaxSize bounds the stored file and, separately, its
	// decompressed body.
	DefaultMaxSize = 1 << 30
	// MaxEntries is the most entries a baseline may hold; ReadOptions can
	// only lower it.
	MaxEntries = 50_000_000
)

// Sentinel errors. Read wraps them with the detail of what was wrong; check
// them with errors.Is.
var (
	// ErrFormat: not a podfim baseline, corrupt, truncated, followed by
	// trailing bytes, an invalid field, unsorted or duplicate paths, or a
	// limit exceeded.
	ErrFormat = errors.New("invalid podfim baseline")
	// ErrVersion: written by a newer (or unknown) format version.
	ErrVersion = errors.New("unsupported baseline format version")
	// ErrDigest: the payload does not match the digest in the header.
	ErrDigest = errors.New("baseline digest mismatch")
	// ErrSignature: a bad signature, a signature by another key than the
	// required one, or a required signature that is missing.
	ErrSignature = errors.New("baseline signature verification failed")
)

// readError carries a sentinel kind and a message of its own, so that a
// message such as the ErrVersion one reads as written while errors.Is still
// finds the kind (and any underlying cause).
type readError struct {
	kind error
	err  error
}

func (e *readError) Error() string   { return e.err.Error() }
func (e *readError) Unwrap() []error { return []error{e.kind, e.err} }

func errorf(kind error, format string, args ...any) error {
	return &readError{kind: kind, err: fmt.Errorf(format, args...)}
}

func formatErrorf(format string, args ...any) error { return errorf(ErrFormat, format, args...) }

// Baseline is a decoded baseline: the entries recorded for a tree, and
// what the header says about them.
type Baseline struct {
	Header               // subject, time, serial, policy, image
	Version int          // format version read or written
	Entries []attr.Entry // sorted strictly by attr.ComparePaths, no duplicates

	// Set by Read, and by Write and WriteFile on success.
	Digest    [32]byte          // sha256 of the compressed payload
	Signed    bool              // the file carries a valid signature
	KeyID     string            // KeyID of PublicKey, when signed
	PublicKey ed25519.PublicKey // the key that signed the file, when signed
}

// ReadOptions says what Read must check beyond the format itself.
type ReadOptions struct {
	// VerifyKey, when non-nil, requires the file to be signed by this key.
	// Without it a signed file is still verified against its embedded key,
	// and Baseline.Signed and KeyID tell the caller who signed it.
	VerifyKey ed25519.PublicKey
	// MaxSize bounds the stored file and, separately, its decompressed
	// body, and so the memory Read uses. 0 means DefaultMaxSize.
	MaxSize int64
	// MaxEntries bounds the number of entries. 0 means MaxEntries; it
	// cannot be raised above MaxEntries.
	MaxEntries int
}

// limits returns the effective limits of o.
func (o ReadOptions) limits() (maxSize int64, maxEntries uint64, err error) {
	maxSize, maxEntries = o.MaxSize, uint64(o.MaxEntries)
	switch {
	case maxSize < 0:
		return 0, 0, fmt.Errorf("invalid read options: negative MaxSize %d", o.MaxSize)
	case maxSize == 0:
		maxSize = DefaultMaxSize
	}
	switch {
	case o.MaxEntries < 0 || o.MaxEntries > MaxEntries:
		return 0, 0, fmt.Errorf("invalid read options: MaxEntries %d is outside [0, %d]", o.MaxEntries, MaxEntries)
	case maxEntries == 0:
		maxEntries = MaxEntries
	}
	if o.VerifyKey != nil && len(o.VerifyKey) != ed25519.PublicKeySize {
		return 0, 0, fmt.Errorf("invalid read options: verify key is %d bytes, want %d", len(o.VerifyKey), ed25519.PublicKeySize)
	}
	return maxSize, maxEntries, nil
}

// Lookup returns the entry for path, if any.
func (b *Baseline) Lookup(path string) (*attr.Entry, bool) {
	i := sort.Search(len(b.Entries), func(i int) bool { return attr.ComparePaths(b.Entries[i].Path, path) >= 0 })
	if i < len(b.Entries) && b.Entries[i].Path == path {
		return &b.Entries[i], true
	}
	return nil, false
}

// Sort puts the entries in path order and every entry's extended attributes
// in name order, the order Write requires. It does not remove duplicates:
// Write rejects them, since two records for one path are a bug upstream.
func (b *Baseline) Sort() {
	slices.SortStableFunc(b.Entries, func(x, y attr.Entry) int { return attr.ComparePaths(x.Path, y.Path) })
	for i := range b.Entries {
		b.Entries[i].SortXattrs()
	}
}

// DigestHex returns Digest in hex, the form reports and logs use.
func (b *Baseline) DigestHex() string { return hex.EncodeToString(b.Digest[:]) }
