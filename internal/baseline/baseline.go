package baseline

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

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
	// only lower it (a reader that knows the policy lowers it to the
	// policy's maxFiles: a scan never records more).
	MaxEntries = 50_000_000
)

// Limits of one entry's extended attributes (see attr.MaxXattrs): a
// reader allocates at most MaxXattrBytes for one entry, however much a
// hostile file claims.
const (
	MaxXattrs          = attr.MaxXattrs
	MaxXattrValueBytes = attr.MaxXattrValueBytes
	MaxXattrBytes      = attr.MaxXattrBytes
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
	// ErrBinding: an authentic baseline made for something else than the
	// reader requires (ReadOptions.Subject, ImageDigest), older than
	// ReadOptions.MaxAge or with a smaller serial than MinSerial.
	ErrBinding = errors.New("baseline is not the one required")
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

	// What the baseline must be for (see Binding); checked once the file
	// is authenticated and before any entry is decoded. Without VerifyKey
	// they only guard against mistakes: anyone can write an unsigned
	// baseline with any header.
	Binding
}

// Binding is what a reader requires of an authentic baseline's header, so
// that a signed baseline cannot be replayed for another tree or image, or
// rolled back to an older state: the zero Binding requires nothing.
type Binding struct {
	// Subject, when set, must equal Header.Subject.
	Subject string
	// ImageDigest, when set, must name the header's image (Image.Matches:
	// its manifest, index or config digest).
	ImageDigest string
	// Platform, when set with ImageDigest ("os/arch", the node's), is
	// what a baseline that ImageDigest names only by its index must be
	// for: an index names the image of every platform, and a baseline
	// made for another one is not the image the node runs. A baseline
	// that records no platform is accepted.
	Platform string
	// MaxAge, when positive, is how old the baseline may be: Created must
	// be recorded, no earlier than Now - MaxAge and no later than Now plus
	// MaxClockSkew.
	MaxAge time.Duration
	// MinSerial, when set, is the smallest serial accepted.
	MinSerial uint64
	// Now is the clock MaxAge is measured with; nil means time.Now.
	Now func() time.Time
}

// MaxClockSkew is how far in the future a baseline's creation time may be,
// for clocks that differ between the machine that made it and the one that
// checks it.
const MaxClockSkew = 5 * time.Minute

// Check reports why h does not satisfy b, as an ErrBinding.
func (b Binding) Check(h *Header) error {
	switch {
	case b.Subject != "" && h.Subject == "":
		return errorf(ErrBinding, "baseline records no subject; subject %q is required", b.Subject)
	case b.Subject != "" && h.Subject != b.Subject:
		return errorf(ErrBinding, "baseline is for subject %q, not %q", h.Subject, b.Subject)
	case b.ImageDigest != "" && h.Image == nil:
		return errorf(ErrBinding, "baseline records no image; image %s is required", b.ImageDigest)
	case b.ImageDigest != "" && !h.Image.Matches(b.ImageDigest):
		return errorf(ErrBinding, "baseline is for image %s (config %s), not %s", h.Image.Manifest, h.Image.Config, b.ImageDigest)
	case b.ImageDigest != "" && b.Platform != "" && !h.Image.forPlatform(b.ImageDigest, b.Platform):
		return errorf(ErrBinding, "baseline is for platform %s of index %s, not %s", h.Image.Platform, h.Image.Index, b.Platform)
	case b.MinSerial != 0 && h.Serial < b.MinSerial:
		return errorf(ErrBinding, "baseline serial %d is older than the required %d (rolled back?)", h.Serial, b.MinSerial)
	}
	if b.MaxAge > 0 {
		now := time.Now
		if b.Now != nil {
			now = b.Now
		}
		t := now()
		switch {
		case h.Created.IsZero():
			return errorf(ErrBinding, "baseline records no creation time; one at most %s old is required", b.MaxAge)
		case h.Created.Before(t.Add(-b.MaxAge)):
			return errorf(ErrBinding, "baseline was created %s, %s ago, more than the allowed %s",
				h.Created.Format(time.RFC3339), t.Sub(h.Created).Round(time.Second), b.MaxAge)
		case h.Created.After(t.Add(MaxClockSkew)):
			return errorf(ErrBinding, "baseline was created %s, in the future", h.Created.Format(time.RFC3339))
		}
	}
	return nil
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
