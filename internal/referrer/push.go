package referrer

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/podfim/podfim/internal/baseline"
)

// Pushed is what Push attached.
type Pushed struct {
	Subject  v1.Descriptor // the image
	Referrer name.Digest   // the referrer manifest, in the image's repository
	KeyID    string        // who signed the baseline
	Serial   uint64        // its serial
}

// Push attaches the baseline file at path to the image ref as an OCI 1.1
// referrer: the baseline blob, the empty config, and a manifest of
// artifactType ArtifactType whose subject is the image. A registry without
// the referrers API gets the fallback tag (sha256-<hex>) updated instead,
// as the distribution spec says.
//
// The file must be signed (by verifyKey when it is non-nil) and record the
// image: a baseline that no sidecar would accept for this image is refused
// here, before anything is uploaded. The file is read once, into memory
// (at most MaxBaselineBytes): what was verified is what is uploaded.
func Push(ctx context.Context, ref name.Digest, path string, verifyKey ed25519.PublicKey, o Options) (*Pushed, error) {
	o = o.withDefaults()
	data, err := readBounded(path, o.MaxBaselineBytes)
	if err != nil {
		return nil, err
	}
	rd, err := verifyCopy(data, baseline.ReadOptions{
		VerifyKey: verifyKey,
		MaxSize:   o.MaxBaselineBytes,
		Binding:   baseline.Binding{ImageDigest: ref.DigestStr()},
	})
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrBaseline, path, err)
	}
	if !rd.Signed {
		return nil, fmt.Errorf("%w %q: %w: it is not signed; sign it with 'podfim baseline --sign-key' (a sidecar accepts only signed baselines)", ErrBaseline, path, baseline.ErrSignature)
	}
	ropts, err := o.remoteOptions(ctx)
	if err != nil {
		return nil, err
	}
	subject, err := remote.Head(ref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("failed to find image %s: %w", ref, err)
	}
	if subject.Digest.String() != ref.DigestStr() || !(subject.MediaType.IsImage() || subject.MediaType.IsIndex()) {
		return nil, fmt.Errorf("%w: the registry describes %s as %s %s", ErrArtifact, ref, subject.MediaType, subject.Digest)
	}
	config, blob := staticLayers(data)
	for _, l := range []v1.Layer{config, blob} {
		if err := remote.WriteLayer(ref.Context(), l, ropts...); err != nil {
			return nil, fmt.Errorf("failed to upload to %s: %w", ref.Context(), err)
		}
	}
	raw, err := artifactManifest(config, blob, subject, filepath.Base(path), rd)
	if err != nil {
		return nil, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	dst := ref.Context().Digest(h.String())
	if err := remote.Put(dst, rawManifest(raw), ropts...); err != nil {
		return nil, fmt.Errorf("failed to push the referrer %s: %w", dst, err)
	}
	return &Pushed{Subject: *subject, Referrer: dst, KeyID: rd.KeyID, Serial: rd.Serial}, nil
}

// artifactManifest is the referrer's manifest: an OCI 1.1 artifact, as
// oras and cosign attach theirs.
func artifactManifest(config, blob v1.Layer, subject *v1.Descriptor, title string, rd *baseline.Reader) ([]byte, error) {
	var descs [2]v1.Descriptor
	for i, l := range []v1.Layer{config, blob} {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return nil, err
		}
		descs[i] = v1.Descriptor{MediaType: mt, Digest: d, Size: size}
	}
	descs[1].Annotations = map[string]string{annotationTitle: title}
	ann := map[string]string{
		annotationSerial: strconv.FormatUint(rd.Serial, 10),
		annotationKeyID:  rd.KeyID,
	}
	if !rd.Created.IsZero() {
		ann[annotationCreated] = rd.Created.UTC().Format(time.RFC3339)
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        descs[0],
		Layers:        descs[1:],
		Subject:       &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations:   ann,
	}
	return json.Marshal(&m)
}

// staticLayers are the blobs of a referrer: the empty config and the
// baseline file.
func staticLayers(data []byte) (config, blob v1.Layer) {
	return static.NewLayer([]byte(configJSON), ArtifactType), static.NewLayer(data, LayerMediaType)
}

// rawManifest is a manifest pushed as it is.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// verifyCopy authenticates data as a baseline file. It goes through a
// private copy (package baseline reads files): what is verified is data,
// which is what is uploaded, whatever happens to the original meanwhile.
func verifyCopy(data []byte, opts baseline.ReadOptions) (*baseline.Reader, error) {
	dir, err := os.MkdirTemp("", "podfim-push-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "baseline.pfb")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return nil, err
	}
	rd, err := baseline.OpenFile(tmp, opts)
	if err != nil {
		return nil, err
	}
	rd.Close()
	return rd, nil
}

// readBounded reads a regular file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK: a FIFO would otherwise block the open before the
	// check below refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("failed to read baseline: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to read baseline %q: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("failed to read baseline %q: not a regular file (%s)", path, st.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read baseline %q: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w %q: more than %d bytes", ErrBaseline, path, limit)
	}
	return data, nil
}
