package baseline

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/podfim/podfim/internal/attr"
)

// Header is what a baseline says about itself: what it is for, when and
// with which policy it was made, and, for a baseline made from a container
// image, which image. It is stored in front of the entries, uncompressed,
// and a signature covers all of it (see doc.go): a verifier can refuse a
// baseline made for something else before it decodes a single entry.
//
// Every field is optional; a zero Header is a valid one. Write and Read
// apply the same checks (Validate), so a Header that reads also writes.
type Header struct {
	// Subject names what the baseline is for: a name chosen at baseline
	// time ("web/www") or, for an image, its digest. At most 1,024 bytes
	// of printable UTF-8 (no control characters).
	Subject string
	// Created is when the baseline was made (stored to the nanosecond,
	// read back in UTC); the zero Time means not recorded. Pass it in: the
	// same input with the same Created gives the same file, byte for byte.
	Created time.Time
	// Serial orders baselines of one subject: a later baseline has a
	// larger serial, so a verifier can refuse a rollback to an older one.
	// 0 means not recorded.
	Serial uint64
	// PolicyDigest is the digest of the policy the entries were collected
	// with, at most 256 bytes, opaque to this package.
	PolicyDigest string
	// Policy is that policy's document (at most MaxPolicyBytes), opaque to
	// this package; nil when not stored. A reader that uses it checks that
	// it has the digest PolicyDigest.
	Policy []byte
	// Compared restricts what a check compares with this baseline to these
	// attributes (compare.Merger.Only); 0 compares every attribute both
	// sides collected. A baseline made from an image sets
	// attr.ImageStable.
	Compared attr.Set
	// Image records the image the baseline was made from; nil for a tree.
	Image *Image
}

// Image identifies the container image a baseline was made from, by the
// digests a runtime and the kubelet report for it.
type Image struct {
	// Manifest is the digest of the image manifest ("sha256:<hex>"),
	// the repo digest of a single-platform image. Required.
	Manifest string
	// Config is the digest of the image configuration: the image ID that
	// the runtime (and the kubelet's status for some runtimes) reports.
	// Required.
	Config string
	// Index is the digest of the index (manifest list) the manifest was
	// chosen from, for a multi-platform image; the kubelet may report it
	// instead of Manifest. "" for a single-platform image.
	Index string
	// Platform is the platform the manifest is for: "os/arch" or
	// "os/arch/variant" ("linux/arm64/v8"); "" when unknown.
	Platform string
	// Layers are the digests of the image's layers as the manifest lists
	// them (base first); attr.Entry.Layer counts into it from 1. At most
	// MaxLayers.
	Layers []string
}

// Matches reports whether digest names this image: its manifest, its index
// or its configuration. digest may be a bare digest ("sha256:...") or a
// reference that ends in one ("repo@sha256:...", as the kubelet's imageID
// reads).
func (im *Image) Matches(digest string) bool {
	if i := strings.LastIndexByte(digest, '@'); i >= 0 {
		digest = digest[i+1:]
	}
	if im == nil || checkDigest(digest) != nil {
		return false
	}
	return digest == im.Manifest || digest == im.Index || digest == im.Config
}

// forPlatform reports whether im, which digest names (Matches), is for
// platform ("os/arch", or "os/arch/variant"): always when digest names its
// manifest or config, which are of one platform; when it names only the
// index, im.Platform must agree on os and architecture (a variant of
// either side is not compared), or be unknown.
func (im *Image) forPlatform(digest, platform string) bool {
	if i := strings.LastIndexByte(digest, '@'); i >= 0 {
		digest = digest[i+1:]
	}
	if digest == im.Manifest || digest == im.Config || im.Platform == "" {
		return true
	}
	osArch := func(p string) string {
		parts := strings.SplitN(p, "/", 3)
		return strings.Join(parts[:min(2, len(parts))], "/")
	}
	return osArch(im.Platform) == osArch(platform)
}

// Limits of the header; doc.go describes the encoding.
const (
	// MaxSubjectBytes bounds Header.Subject.
	MaxSubjectBytes = 1024
	// MaxPolicyBytes bounds Header.Policy: the largest policy file podfim
	// parses.
	MaxPolicyBytes = 1 << 20
	// MaxLayers bounds Image.Layers, and so attr.Entry.Layer.
	MaxLayers = 1024

	maxDigestLen   = 7 + 1 + 128 // "sha512:" and its hex
	maxPlatformLen = 128
	// maxRecordLen bounds the stored header record: every field at its
	// limit fits.
	maxRecordLen = 2 << 20
)

// Validate reports why h cannot be stored: Write, Writer.Begin and Read
// apply it, and a command can call it before it does any work.
func (h *Header) Validate() error {
	switch {
	case len(h.Subject) > MaxSubjectBytes:
		return fmt.Errorf("subject is %d bytes, more than %d", len(h.Subject), MaxSubjectBytes)
	case !printable(h.Subject):
		return fmt.Errorf("subject %q is not printable UTF-8", h.Subject)
	case !h.Created.IsZero() && (h.Created.UnixNano() <= 0 || h.Created.Year() > 2262):
		// UnixNano is defined from 1678 to 2262; 0 stands for "none".
		return fmt.Errorf("creation time %s is outside 1970..2262", h.Created)
	case len(h.PolicyDigest) > maxPolicyDigestLen:
		return fmt.Errorf("policy digest is %d bytes, more than %d", len(h.PolicyDigest), maxPolicyDigestLen)
	case !printable(h.PolicyDigest):
		// check and show print it: a hostile file must not write an
		// escape sequence or a line of its own there.
		return fmt.Errorf("policy digest %q is not printable UTF-8", h.PolicyDigest)
	case len(h.Policy) > MaxPolicyBytes:
		return fmt.Errorf("policy is %d bytes, more than %d", len(h.Policy), MaxPolicyBytes)
	case !h.Compared.Valid():
		return fmt.Errorf("compared attributes have unknown bits %#x", uint32(h.Compared))
	}
	if h.Image != nil {
		if err := checkImage(h.Image); err != nil {
			return fmt.Errorf("image: %w", err)
		}
	}
	return nil
}

func checkImage(im *Image) error {
	if err := checkDigest(im.Manifest); err != nil {
		return fmt.Errorf("manifest digest: %w", err)
	}
	if err := checkDigest(im.Config); err != nil {
		return fmt.Errorf("config digest: %w", err)
	}
	if im.Index != "" {
		if err := checkDigest(im.Index); err != nil {
			return fmt.Errorf("index digest: %w", err)
		}
	}
	if err := checkPlatform(im.Platform); err != nil {
		return err
	}
	if len(im.Layers) > MaxLayers {
		return fmt.Errorf("%d layers, more than %d", len(im.Layers), MaxLayers)
	}
	for i, l := range im.Layers {
		if err := checkDigest(l); err != nil {
			return fmt.Errorf("layer %d digest: %w", i+1, err)
		}
	}
	return nil
}

// checkDigest accepts the OCI digests podfim can meet: sha256 or sha512 in
// lowercase hex. A stricter rule than OCI's grammar keeps a hostile header
// from carrying anything but a digest in these fields.
func checkDigest(d string) error {
	alg, hex, ok := strings.Cut(d, ":")
	want := map[string]int{"sha256": 64, "sha512": 128}[alg]
	if !ok || want == 0 || len(hex) != want {
		return fmt.Errorf("%q is not a sha256:<64 hex> or sha512:<128 hex> digest", d)
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%q is not a digest in lowercase hex", d)
		}
	}
	return nil
}

// checkPlatform accepts "" or os/arch[/variant] of lowercase letters,
// digits, ".", "_" and "-".
func checkPlatform(p string) error {
	if p == "" {
		return nil
	}
	parts := strings.Split(p, "/")
	if len(p) > maxPlatformLen || len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("platform %q is not os/arch[/variant]", p)
	}
	for _, s := range parts {
		if s == "" || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789._-") != "" {
			return fmt.Errorf("platform %q is not os/arch[/variant] in lowercase", p)
		}
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters,
// so that a subject can be shown anywhere as it is.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// appendRecord appends the stored form of h (see doc.go) to buf.
func appendRecord(buf []byte, h *Header) []byte {
	buf = appendString(buf, h.Subject)
	var created uint64
	if !h.Created.IsZero() {
		created = uint64(h.Created.UnixNano())
	}
	buf = binary.AppendUvarint(buf, created)
	buf = binary.AppendUvarint(buf, h.Serial)
	buf = appendString(buf, h.PolicyDigest)
	buf = binary.AppendUvarint(buf, uint64(len(h.Policy)))
	buf = append(buf, h.Policy...)
	buf = binary.AppendUvarint(buf, uint64(h.Compared))
	if h.Image == nil {
		return append(buf, 0)
	}
	im := h.Image
	buf = append(buf, 1)
	for _, s := range []string{im.Manifest, im.Config, im.Index, im.Platform} {
		buf = appendString(buf, s)
	}
	buf = binary.AppendUvarint(buf, uint64(len(im.Layers)))
	for _, l := range im.Layers {
		buf = appendString(buf, l)
	}
	return buf
}

// parseRecord decodes a stored header record strictly: canonical varints,
// every field within its limit, nothing left over.
func parseRecord(rec []byte) (*Header, error) {
	r := &recordReader{b: rec}
	h := &Header{}
	h.Subject = r.string(MaxSubjectBytes, "subject")
	if ns := r.uvarint("creation time"); ns != 0 {
		if ns > 1<<63-1 {
			r.fail("creation time %d is out of range", ns)
		}
		h.Created = time.Unix(0, int64(ns)).UTC()
	}
	h.Serial = r.uvarint("serial")
	h.PolicyDigest = r.string(maxPolicyDigestLen, "policy digest")
	if p := r.bytes(MaxPolicyBytes, "policy"); len(p) > 0 {
		h.Policy = p
	}
	h.Compared = attr.Set(r.uvarint("compared attributes"))
	switch r.byte("image flag") {
	case 0:
	case 1:
		h.Image = r.image()
	default:
		r.fail("image flag is neither 0 nor 1")
	}
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d bytes after the last field", len(r.b))
	}
	if r.err != nil {
		return nil, formatErrorf("baseline header: %w", r.err)
	}
	if err := h.Validate(); err != nil {
		return nil, formatErrorf("baseline header: %w", err)
	}
	return h, nil
}

func (r *recordReader) image() *Image {
	im := &Image{}
	im.Manifest = r.string(maxDigestLen, "manifest digest")
	im.Config = r.string(maxDigestLen, "config digest")
	im.Index = r.string(maxDigestLen, "index digest")
	im.Platform = r.string(maxPlatformLen, "platform")
	n := r.uvarint("layer count")
	if n > MaxLayers {
		r.fail("layer count %d is more than %d", n, MaxLayers)
		return im
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		im.Layers = append(im.Layers, r.string(maxDigestLen, "layer digest"))
	}
	return im
}

// recordReader reads the fields of a header record, which is in memory and
// small; the first error sticks and makes every later read return zero.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *recordReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	switch {
	case n <= 0:
		r.fail("%s: truncated or overlong varint", what)
		return 0
	case n > 1 && r.b[n-1] == 0:
		r.fail("%s: non-canonical varint", what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) byte(what string) byte {
	if r.err == nil && len(r.b) == 0 {
		r.fail("%s: truncated", what)
	}
	if r.err != nil {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// bytes returns the next length-prefixed field of at most max bytes, a
// copy: the caller keeps it.
func (r *recordReader) bytes(max uint64, what string) []byte {
	n := r.uvarint(what + " length")
	switch {
	case r.err != nil:
		return nil
	case n > max:
		r.fail("%s is %d bytes, more than %d", what, n, max)
		return nil
	case n > uint64(len(r.b)):
		r.fail("%s: truncated", what)
		return nil
	}
	out := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return out
}

func (r *recordReader) string(max uint64, what string) string { return string(r.bytes(max, what)) }
