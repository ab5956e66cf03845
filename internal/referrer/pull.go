package referrer

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/podfim/podfim/internal/baseline"
)

// Pulled is what Pull found.
type Pulled struct {
	// Referrer is the manifest digest of the chosen referrer; "" if none.
	Referrer string
	// Header, KeyID and Signed describe the chosen baseline.
	Header baseline.Header
	KeyID  string
	Signed bool
	// Listed is how many baseline referrers the registry lists for the
	// image; Skipped how many of them were beyond MaxScreened and not
	// looked at, or passed screening beyond MaxCandidates and were not
	// fetched whole.
	Listed, Skipped int
	// Refused are the candidates fetched and refused, and why.
	Refused []Refusal
}

// Refusal is a candidate Pull did not use.
type Refusal struct {
	Referrer string // manifest digest
	Err      error  // wraps ErrArtifact, ErrTooLarge, or a baseline sentinel
}

// Pull fetches the baseline to use for the image ref into the file out:
// among the image's referrers of artifact type ArtifactType, the one whose
// baseline is authentic under verify (signed by verify.VerifyKey when set)
// and records the image (verify.ImageDigest defaults to ref's digest), and
// of those the newest: the largest signed serial, then the latest signed
// creation time, then the smallest referrer digest (so that the choice is
// the same every time). The registry's order and annotations choose
// nothing.
//
// Choosing takes two steps, so that referrers anyone with push access to
// the repository can add cannot crowd out the real one: at most
// MaxScreened referrers (in digest order) are screened, their manifest
// checked and only the header at the start of their blob read and
// authenticated (baseline.Screen: signature by the key, binding); those
// that pass are ranked by their signed serial and creation time, and at
// most MaxCandidates of them, best first, are fetched whole (each blob at
// most MaxBaselineBytes, into a temporary file beside out) and verified in
// full; the first that verifies is used. Referrers beyond either bound are
// counted in Skipped. out is replaced only by a verified baseline. When no
// candidate is usable the error wraps ErrNotFound and Pulled says why each
// was refused.
func Pull(ctx context.Context, ref name.Digest, out string, verify baseline.ReadOptions, o Options) (*Pulled, error) {
	o = o.withDefaults()
	if verify.ImageDigest == "" {
		verify.ImageDigest = ref.DigestStr()
	}
	if verify.MaxSize == 0 {
		verify.MaxSize = o.MaxBaselineBytes
	}
	ropts, err := o.remoteOptions(ctx)
	if err != nil {
		return nil, err
	}
	descs, err := list(ref, ropts)
	if err != nil {
		return nil, err
	}
	res := &Pulled{Listed: len(descs)}
	if len(descs) > o.MaxScreened {
		res.Skipped = len(descs) - o.MaxScreened
		descs = descs[:o.MaxScreened]
	}
	passed, err := res.screen(ctx, ref, descs, verify, ropts, o)
	if err != nil {
		return res, err
	}
	if len(passed) > o.MaxCandidates {
		res.Skipped += len(passed) - o.MaxCandidates
		passed = passed[:o.MaxCandidates]
	}
	best, err := res.choose(ctx, ref, passed, filepath.Dir(out), verify, ropts, o)
	if err != nil {
		return res, err
	}
	if best == "" {
		return res, res.notFound(ref)
	}
	if err := os.Rename(best, out); err != nil {
		os.Remove(best)
		return res, fmt.Errorf("failed to write %q: %w", out, err)
	}
	return res, nil
}

// list returns the image's baseline referrers, in digest order: the order
// of a listing is the registry's, and the registry chooses nothing.
func list(ref name.Digest, ropts []remote.Option) ([]v1.Descriptor, error) {
	idx, err := remote.Referrers(ref, append(ropts, remote.WithFilter("artifactType", ArtifactType))...)
	if err != nil {
		return nil, fmt.Errorf("failed to list the referrers of %s: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("failed to list the referrers of %s: %w", ref, err)
	}
	var descs []v1.Descriptor
	for _, d := range im.Manifests {
		// The registry's filter is advisory (and absent with the fallback
		// tag): check again.
		if d.ArtifactType == ArtifactType && d.MediaType == types.OCIManifestSchema1 {
			descs = append(descs, d)
		}
	}
	slices.SortFunc(descs, func(a, b v1.Descriptor) int { return cmp.Compare(a.Digest.String(), b.Digest.String()) })
	return slices.CompactFunc(descs, func(a, b v1.Descriptor) bool { return a.Digest == b.Digest }), nil
}

// screened is a referrer whose header passed screening.
type screened struct {
	desc   v1.Descriptor
	header baseline.Header
}

// screen checks each referrer's manifest and the header of its baseline
// (baseline.Screen) and returns those that pass, best first (newer).
func (res *Pulled) screen(ctx context.Context, ref name.Digest, descs []v1.Descriptor, verify baseline.ReadOptions, ropts []remote.Option, o Options) ([]screened, error) {
	var passed []screened
	for _, d := range descs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := screenOne(ref, d, verify, ropts, o)
		if err != nil {
			res.Refused = append(res.Refused, Refusal{Referrer: d.Digest.String(), Err: err})
			continue
		}
		passed = append(passed, screened{desc: d, header: *h})
	}
	slices.SortFunc(passed, func(a, b screened) int {
		switch {
		case newer(&a.header, a.desc.Digest.String(), &b.header, b.desc.Digest.String()):
			return -1
		case newer(&b.header, b.desc.Digest.String(), &a.header, a.desc.Digest.String()):
			return 1
		}
		return 0
	})
	return passed, nil
}

// screenOne reads the referrer's manifest and the header of its baseline
// blob, and stops reading there.
func screenOne(ref name.Digest, d v1.Descriptor, verify baseline.ReadOptions, ropts []remote.Option, o Options) (*baseline.Header, error) {
	layer, err := artifactLayer(ref, d, ropts, o)
	if err != nil {
		return nil, err
	}
	l, err := remote.Layer(ref.Context().Digest(layer.Digest.String()), ropts...)
	if err != nil {
		return nil, fmt.Errorf("failed to fetch the baseline blob: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("failed to fetch the baseline blob: %w", err)
	}
	defer rc.Close()
	return baseline.Screen(io.LimitReader(rc, layer.Size), verify)
}

// choose fetches and verifies the screened candidates whole, best first,
// and returns the temporary file of the first that verifies ("" if none).
func (res *Pulled) choose(ctx context.Context, ref name.Digest, cands []screened, dir string, verify baseline.ReadOptions, ropts []remote.Option, o Options) (string, error) {
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		tmp, rd, err := fetch(ref, c.desc, dir, verify, ropts, o)
		if err != nil {
			var terr *tempError
			if errors.As(err, &terr) {
				return "", err
			}
			res.Refused = append(res.Refused, Refusal{Referrer: c.desc.Digest.String(), Err: err})
			continue
		}
		res.Referrer, res.Header, res.KeyID, res.Signed = c.desc.Digest.String(), rd.Header, rd.KeyID, rd.Signed
		return tmp, nil
	}
	return "", nil
}

// newer reports whether the baseline of header rd (referrer digest) is to
// be preferred over the one of header h (referrer cur).
func newer(rd *baseline.Header, digest string, h *baseline.Header, cur string) bool {
	if rd.Serial != h.Serial {
		return rd.Serial > h.Serial
	}
	if !rd.Created.Equal(h.Created) {
		return rd.Created.After(h.Created)
	}
	return digest < cur
}

// tempError is a failure of the local file system, not of a candidate:
// Pull stops at it.
type tempError struct{ err error }

func (e *tempError) Error() string { return e.err.Error() }
func (e *tempError) Unwrap() error { return e.err }

// fetch downloads the baseline of the referrer d into a temporary file in
// dir and authenticates it.
func fetch(ref name.Digest, d v1.Descriptor, dir string, verify baseline.ReadOptions, ropts []remote.Option, o Options) (string, *baseline.Reader, error) {
	layer, err := artifactLayer(ref, d, ropts, o)
	if err != nil {
		return "", nil, err
	}
	f, err := os.CreateTemp(dir, ".podfim-pull-*")
	if err != nil {
		return "", nil, &tempError{fmt.Errorf("failed to create a temporary file: %w", err)}
	}
	tmp := f.Name()
	err = download(f, ref.Context().Digest(layer.Digest.String()), layer, ropts)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = &tempError{cerr}
	}
	if err != nil {
		os.Remove(tmp)
		return "", nil, err
	}
	rd, err := baseline.OpenFile(tmp, verify)
	if err != nil {
		os.Remove(tmp)
		return "", nil, err
	}
	rd.Close()
	return tmp, rd, nil
}

// artifactLayer fetches the referrer's manifest and returns its baseline
// layer, once the manifest is one Push writes.
func artifactLayer(ref name.Digest, d v1.Descriptor, ropts []remote.Option, o Options) (*v1.Descriptor, error) {
	if d.Size > o.MaxManifestBytes {
		return nil, fmt.Errorf("%w: the manifest is %d bytes, more than %d", ErrTooLarge, d.Size, o.MaxManifestBytes)
	}
	// Fetched by digest: go-containerregistry checks the content against it.
	desc, err := remote.Get(ref.Context().Digest(d.Digest.String()), ropts...)
	if err != nil {
		return nil, fmt.Errorf("failed to fetch the referrer: %w", err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrArtifact, err)
	}
	switch {
	case m.ArtifactType != ArtifactType:
		return nil, fmt.Errorf("%w: artifactType %q, not %q", ErrArtifact, m.ArtifactType, ArtifactType)
	case m.Subject == nil || m.Subject.Digest.String() != ref.DigestStr():
		return nil, fmt.Errorf("%w: its subject is not %s", ErrArtifact, ref.DigestStr())
	case len(m.Layers) != 1 || m.Layers[0].MediaType != LayerMediaType:
		return nil, fmt.Errorf("%w: want one layer of media type %s", ErrArtifact, LayerMediaType)
	case m.Layers[0].Size < 0 || m.Layers[0].Size > o.MaxBaselineBytes:
		return nil, fmt.Errorf("%w: the baseline is %d bytes, more than %d", ErrTooLarge, m.Layers[0].Size, o.MaxBaselineBytes)
	}
	return &m.Layers[0], nil
}

// download copies the blob into f, checking its size and digest.
func download(f *os.File, blob name.Digest, want *v1.Descriptor, ropts []remote.Option) error {
	l, err := remote.Layer(blob, ropts...)
	if err != nil {
		return fmt.Errorf("failed to fetch the baseline blob: %w", err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("failed to fetch the baseline blob: %w", err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, want.Size+1))
	switch {
	case err != nil:
		var pe *os.PathError
		if errors.As(err, &pe) {
			return &tempError{fmt.Errorf("failed to write a temporary file: %w", err)}
		}
		return fmt.Errorf("failed to fetch the baseline blob: %w", err)
	case n != want.Size:
		return fmt.Errorf("%w: the baseline blob is not the %d bytes its manifest says", ErrArtifact, want.Size)
	case want.Digest.Algorithm != "sha256" || hex.EncodeToString(h.Sum(nil)) != want.Digest.Hex:
		return fmt.Errorf("%w: the baseline blob does not match its digest %s", ErrArtifact, want.Digest)
	}
	return nil
}

// notFound is the error of a Pull that found nothing usable: it wraps
// ErrNotFound and every refusal's error, so that errors.Is finds, say,
// baseline.ErrSignature.
func (res *Pulled) notFound(ref name.Digest) error {
	var why string
	switch {
	case res.Listed == 0:
		why = "the registry lists no referrer of type " + ArtifactType
	case len(res.Refused) == 0:
		why = fmt.Sprintf("%d referrers not fetched (limit)", res.Skipped)
	default:
		why = fmt.Sprintf("%d of %d refused", len(res.Refused), res.Listed)
		if res.Skipped > 0 {
			why += fmt.Sprintf(", %d not fetched (limit)", res.Skipped)
		}
	}
	return &notFoundError{msg: fmt.Sprintf("%s for %s: %s", ErrNotFound, ref, why), refused: res.Refused}
}

// maxRefusalsListed bounds the refusals a notFoundError's message names
// (MaxScreened may be hundreds); Unwrap still has them all.
const maxRefusalsListed = 16

type notFoundError struct {
	msg     string
	refused []Refusal
}

func (e *notFoundError) Error() string {
	var b strings.Builder
	b.WriteString(e.msg)
	for i, r := range e.refused {
		if i == maxRefusalsListed {
			fmt.Fprintf(&b, "; and %d more refused", len(e.refused)-i)
			break
		}
		fmt.Fprintf(&b, "; %s: %v", r.Referrer, r.Err)
	}
	return b.String()
}

func (e *notFoundError) Unwrap() []error {
	errs := []error{ErrNotFound}
	for _, r := range e.refused {
		errs = append(errs, r.Err)
	}
	return errs
}
