// Package referrer ships baselines next to their image: it attaches a
// baseline file to an image in its registry as an OCI 1.1 referrer (a
// manifest of artifact type ArtifactType whose subject is the image), and
// finds and fetches the one to use for an image digest.
//
// A registry is hostile input. Every response is bounded (Options), every
// blob is checked against its digest, and a fetched baseline is used only
// once the baseline package has authenticated it: signed by the required
// key and recording the image digest (Pull). What a registry says about a
// referrer (its annotations, its order) chooses nothing.
package referrer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/podfim/podfim/internal/image"
)

// Media types of a baseline referrer.
const (
	// ArtifactType is the artifactType of a baseline referrer's manifest,
	// and what the referrers API is filtered by.
	ArtifactType = "application/vnd.podfim.baseline.v1"
	// LayerMediaType is the media type of its one layer: the baseline file,
	// as 'podfim baseline' wrote it.
	LayerMediaType = "application/vnd.podfim.baseline.layer.v1"
	// configJSON is the config blob: empty, as for any OCI 1.1
	// artifact. Its media type is ArtifactType rather than
	// application/vnd.oci.empty.v1+json: registries that derive a
	// referrer's artifactType from the config (go-containerregistry's
	// pkg/registry, pre-1.1 ones) then agree with those that read the
	// manifest's artifactType field, which is set too.
	configJSON = "{}"
)

// Annotations a pushed referrer carries, for people and registry UIs. They
// are not signed and Pull does not trust them: the signed baseline header
// is what counts.
const (
	annotationCreated = "org.opencontainers.image.created"
	annotationTitle   = "org.opencontainers.image.title"
	annotationSerial  = "io.podfim.baseline.serial"
	annotationKeyID   = "io.podfim.baseline.key-id"
)

// Default limits (Options).
const (
	// DefaultMaxManifestBytes bounds a manifest or referrers index read
	// from a registry: 4 MiB, the size most registries accept for a
	// manifest.
	DefaultMaxManifestBytes = 4 << 20
	// DefaultMaxBaselineBytes bounds a baseline blob: 256 MiB, a baseline
	// of about 2 million files.
	DefaultMaxBaselineBytes = 256 << 20
	// DefaultMaxCandidates bounds how many baseline referrers of one
	// image Pull fetches whole and verifies, of those whose header passed
	// screening, best first.
	DefaultMaxCandidates = 16
	// DefaultMaxScreened bounds how many baseline referrers of one image
	// Pull screens: their manifest and the header at the start of their
	// blob, signature and binding checked (baseline.Screen), so that
	// referrers anyone with push access can add (junk, unsigned, signed by
	// another key, for another image) cannot crowd out the real one below
	// DefaultMaxCandidates. Screening one costs a manifest (bounded by
	// MaxManifestBytes) and the header (a few KiB for a real baseline,
	// at most 2 MiB of header record).
	DefaultMaxScreened = 256
	// maxOtherBytes bounds any other response (token, error, upload).
	maxOtherBytes = 1 << 20
	// responseHeaderTimeout bounds the wait for a registry to start
	// answering one request; the caller's context bounds the whole.
	responseHeaderTimeout = 30 * time.Second
)

// Sentinel errors, wrapped with the detail.
var (
	// ErrReference: the image is not named as docker://REPO@DIGEST.
	ErrReference = errors.New("invalid image reference")
	// ErrTooLarge: a registry response exceeds its limit.
	ErrTooLarge = errors.New("registry response too large")
	// ErrNotFound: the image has no usable baseline referrer.
	ErrNotFound = errors.New("no usable baseline referrer")
	// ErrArtifact: a referrer is not a podfim baseline artifact as Push
	// writes it (wrong config, layer count, media type, subject, size).
	ErrArtifact = errors.New("invalid baseline referrer")
	// ErrBaseline: the baseline file to push is unusable: unsigned, or not
	// made for the image.
	ErrBaseline = errors.New("baseline does not fit the image")
)

// Options say how to reach the registry and what to accept from it.
type Options struct {
	// Authfile is a docker config.json, a podman auth.json or a mounted
	// .dockerconfigjson pull secret; "" means the usual places.
	Authfile string
	// Insecure allows plain HTTP (a loopback, .local or RFC 1918 registry
	// gets it anyway, as go-containerregistry decides).
	Insecure bool
	// MaxManifestBytes bounds a manifest or referrers index; 0 means
	// DefaultMaxManifestBytes.
	MaxManifestBytes int64
	// MaxBaselineBytes bounds a baseline blob; 0 means
	// DefaultMaxBaselineBytes.
	MaxBaselineBytes int64
	// MaxCandidates bounds the referrers Pull fetches; 0 means
	// DefaultMaxCandidates.
	MaxCandidates int
	// MaxScreened bounds the referrers Pull screens; 0 means
	// DefaultMaxScreened.
	MaxScreened int
	// Transport is the HTTP transport to wrap; nil means a clone of
	// remote.DefaultTransport.
	Transport http.RoundTripper
}

func (o Options) withDefaults() Options {
	if o.MaxManifestBytes <= 0 {
		o.MaxManifestBytes = DefaultMaxManifestBytes
	}
	if o.MaxBaselineBytes <= 0 {
		o.MaxBaselineBytes = DefaultMaxBaselineBytes
	}
	if o.MaxCandidates <= 0 {
		o.MaxCandidates = DefaultMaxCandidates
	}
	if o.MaxScreened <= 0 {
		o.MaxScreened = DefaultMaxScreened
	}
	return o
}

// ParseDigest parses an image named by digest: "docker://REPO@DIGEST" or
// "REPO@DIGEST" (as the kubelet reports an imageID). A tag is refused: a
// baseline is for exactly one image, and a tag can move.
func ParseDigest(ref string, insecure bool) (name.Digest, error) {
	s, ok := strings.CutPrefix(ref, "docker://")
	if tr, _, found := strings.Cut(ref, ":"); !ok && found && !strings.ContainsAny(tr, "./") && !strings.Contains(ref, "@"+tr) {
		// "oci:DIR", "docker-archive:FILE": a transport, not a registry
		// host (which holds a "." or a port, and comes before any "/").
		return name.Digest{}, fmt.Errorf("%w %q: only a registry (docker://) holds referrers", ErrReference, ref)
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	d, err := name.NewDigest(s, opts...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("%w %q: want docker://REPO@DIGEST (a tag can move): %w", ErrReference, ref, err)
	}
	return d, nil
}

// remoteOptions are the go-containerregistry options for o.
func (o Options) remoteOptions(ctx context.Context) ([]remote.Option, error) {
	kc, err := image.Keychain(o.Authfile)
	if err != nil {
		return nil, err
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(kc),
		remote.WithTransport(newBoundedTransport(o.Transport, o.MaxManifestBytes, o.MaxBaselineBytes)),
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 3}),
	}, nil
}
