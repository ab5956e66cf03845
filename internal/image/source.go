package image

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/podfim/podfim/internal/baseline"
	"github.com/podfim/podfim/internal/safetext"
)

// ErrReference is wrapped by the error for an image reference podfim
// cannot read: an unknown transport, a malformed name, a tag the source
// does not hold, or a platform it has no image for.
var ErrReference = errors.New("invalid image reference")

// ErrDigest is wrapped by the error for image content that does not match
// the digest that names it: a manifest, a configuration or a layer.
var ErrDigest = errors.New("image content does not match its digest")

// The transports, named as skopeo and podman name them.
const (
	transportDocker        = "docker"
	transportOCI           = "oci"
	transportOCIArchive    = "oci-archive"
	transportDockerArchive = "docker-archive"
)

// SourceOptions say how to reach an image.
type SourceOptions struct {
	// Platform selects the image of a multi-platform index
	// ("linux/amd64", "linux/arm64/v8"); "" means linux and the
	// architecture podfim runs on, as a runtime chooses. For a
	// single-platform image, a Platform it does not match is an error.
	Platform string
	// Authfile is a docker config.json or a podman auth.json to take
	// registry credentials from; "" means the usual places
	// (~/.docker/config.json, $DOCKER_CONFIG, $REGISTRY_AUTH_FILE,
	// containers/auth.json).
	Authfile string
	// Insecure allows plain HTTP to the registry (loopback registries
	// get it anyway).
	Insecure bool
}

// Identity is what identifies the image a baseline is made from: the
// digests a runtime and the kubelet report for it.
type Identity struct {
	Manifest string   // manifest digest, "sha256:..."
	Config   string   // configuration digest: the image ID
	Index    string   // index digest, for an image chosen from an index; else ""
	Platform string   // os/arch[/variant] of the configuration
	Layers   []string // layer digests, base first, as the manifest lists them
	// Created is when the image was built, from its configuration; zero
	// when it does not say (or says something before 1970).
	Created time.Time
}

// Image is an image opened for reading.
type Image struct {
	Identity
	img     v1.Image
	diffIDs []v1.Hash
	stored  bool // see layerStream
	close   func() error
}

// Close releases what Open holds (an archive file).
func (im *Image) Close() error {
	if im.close == nil {
		return nil
	}
	return im.close()
}

// Open resolves ref (transport:reference, see docs/image-baselines.md) to
// one image and checks that its manifest and configuration match their
// digests. The layers are read, and checked, by Build.
func Open(ctx context.Context, ref string, opts SourceOptions) (*Image, error) {
	transport, rest, ok := strings.Cut(ref, ":")
	if !ok || rest == "" {
		return nil, fmt.Errorf("%w %q: want docker://NAME, oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE[:TAG]", ErrReference, ref)
	}
	want, err := wantPlatform(opts.Platform)
	if err != nil {
		return nil, err
	}
	var s *selected
	switch transport {
	case transportDocker:
		s, err = openRemote(ctx, strings.TrimPrefix(rest, "//"), want, opts)
	case transportOCI:
		s, err = openLayout(rest, want)
	case transportOCIArchive:
		s, err = openOCIArchive(rest, want)
	case transportDockerArchive:
		s, err = openDockerArchive(rest)
	default:
		return nil, fmt.Errorf("%w %q: unknown transport %q", ErrReference, ref, transport)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to open image %q: %w", ref, err)
	}
	// A docker-archive holds its layers uncompressed, mostly; the other
	// sources hold blobs as the manifest names them.
	s.stored = transport != transportDockerArchive
	im, err := s.image(opts.Platform != "", want)
	if err != nil {
		if s.close != nil {
			s.close()
		}
		return nil, fmt.Errorf("failed to open image %q: %w", ref, err)
	}
	return im, nil
}

// selected is an image found in its source, not yet checked.
type selected struct {
	img    v1.Image
	want   v1.Hash // the manifest digest the source names it by; zero if none
	index  string
	stored bool // Layer.Compressed gives the blobs as stored (see layerStream)
	close  func() error
}

// image checks s and returns it as an Image.
func (s *selected) image(platformGiven bool, want *v1.Platform) (*Image, error) {
	digest, err := s.img.Digest()
	if err != nil {
		return nil, err
	}
	if s.want != (v1.Hash{}) && digest != s.want {
		return nil, fmt.Errorf("%w: manifest %s has the digest %s", ErrDigest, s.want, digest)
	}
	m, err := s.img.Manifest()
	if err != nil {
		return nil, err
	}
	// The manifest's size is checked before the configuration is read:
	// a registry serves, and go-containerregistry reads, that many bytes.
	if m.Config.Size > maxManifestBytes {
		return nil, fmt.Errorf("the configuration is %d bytes, more than %d", m.Config.Size, maxManifestBytes)
	}
	rawConfig, err := s.img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	if len(rawConfig) > maxManifestBytes {
		return nil, fmt.Errorf("the configuration is %d bytes, more than %d", len(rawConfig), maxManifestBytes)
	}
	if err := checkBlob(m.Config.Digest, rawConfig); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	cf, err := v1.ParseConfigFile(strings.NewReader(string(rawConfig)))
	if err != nil {
		return nil, fmt.Errorf("failed to parse the image configuration: %w", err)
	}
	if len(m.Layers) > baseline.MaxLayers {
		return nil, fmt.Errorf("%d layers, more than %d", len(m.Layers), baseline.MaxLayers)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("the manifest lists %d layers, the configuration %d", len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	have := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if platformGiven && !have.Satisfies(*want) {
		return nil, fmt.Errorf("%w: the image is for %s, not %s", ErrReference, quotePlatform(&have), quotePlatform(want))
	}
	im := &Image{img: s.img, diffIDs: cf.RootFS.DiffIDs, stored: s.stored, close: s.close}
	im.Manifest, im.Config, im.Index = digest.String(), m.Config.Digest.String(), s.index
	im.Platform = platformString(&have)
	if c := cf.Created.Time; c.Unix() > 0 && c.Year() <= 2262 {
		im.Created = c.UTC()
	}
	for _, l := range m.Layers {
		im.Layers = append(im.Layers, l.Digest.String())
	}
	return im, nil
}

// checkBlob checks that b has the digest want, of any algorithm go-
// containerregistry accepts in a manifest (sha256, sha512): a digest
// that is not checked would let a source serve any configuration, and so
// any diff IDs, under the manifest digest that is recorded.
func checkBlob(want v1.Hash, b []byte) error {
	h, err := v1.Hasher(want.Algorithm)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDigest, want, err)
	}
	h.Write(b)
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("%w: %s has the digest %s:%s", ErrDigest, want, want.Algorithm, got)
	}
	return nil
}

func platformString(p *v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// quotePlatform shows a platform in a message: as it is when it holds only
// what platforms are made of, Go-quoted otherwise, since an image's
// configuration and an index choose theirs (DESIGN.md: no terminal escape
// from an image).
func quotePlatform(p *v1.Platform) string {
	s := platformString(p)
	if strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") != "" {
		return strconv.Quote(s)
	}
	return s
}

// wantPlatform parses a --platform value; "" is linux and the
// architecture podfim runs on.
func wantPlatform(s string) (*v1.Platform, error) {
	if s == "" {
		return &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, nil
	}
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("%w: platform %q is not os/arch[/variant]", ErrReference, s)
	}
	return p, nil
}

// openRemote reads an image from a registry.
func openRemote(ctx context.Context, ref string, want *v1.Platform, opts SourceOptions) (*selected, error) {
	var nameOpts []name.Option
	if opts.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReference, err)
	}
	keychain, err := Keychain(opts.Authfile)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain))
	if err != nil {
		return nil, err
	}
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		return &selected{img: img, want: desc.Digest}, err
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
	return fromIndex(idx, desc.Digest.String(), want)
}

// openLayout reads an image from an OCI image layout directory.
func openLayout(ref string, want *v1.Platform) (*selected, error) {
	dir, tag := splitTag(ref)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	return fromLayoutIndex(idx, tag, want)
}

// openDockerArchive reads an image from a `docker save` / `podman save`
// archive; a REPO:TAG after the file name picks one of several images.
// As in skopeo, the file name ends at the first ":".
func openDockerArchive(ref string) (*selected, error) {
	file, tag, _ := strings.Cut(ref, ":")
	var t *name.Tag
	if tag != "" {
		parsed, err := name.NewTag(tag)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrReference, err)
		}
		t = &parsed
	}
	img, err := tarball.ImageFromPath(file, t)
	if err != nil {
		return nil, err
	}
	return &selected{img: img}, nil
}

// splitTag splits "PATH:TAG"; a last ":" part holding a "/" is part of
// the path.
func splitTag(ref string) (path, tag string) {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.ContainsRune(ref[i+1:], '/') {
		return ref, ""
	}
	return ref[:i], ref[i+1:]
}

// fromLayoutIndex picks the image a layout's index.json names by tag (the
// only one when tag is empty), and from an index among them, the platform.
func fromLayoutIndex(idx v1.ImageIndex, tag string, want *v1.Platform) (*selected, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if tag == "" || refName(d) == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("%w: no image tagged %q", ErrReference, tag)
	case len(found) > 1 && tag == "":
		return nil, fmt.Errorf("%w: %d images, name one with :TAG", ErrReference, len(found))
	case len(found) > 1:
		return nil, fmt.Errorf("%w: %d images tagged %q", ErrReference, len(found), tag)
	}
	d := found[0]
	if d.MediaType.IsIndex() {
		sub, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, err
		}
		return fromIndex(sub, d.Digest.String(), want)
	}
	img, err := idx.Image(d.Digest)
	return &selected{img: img, want: d.Digest}, err
}

// refName is the tag an OCI layout records for a descriptor.
func refName(d v1.Descriptor) string {
	if n := d.Annotations["org.opencontainers.image.ref.name"]; n != "" {
		return n
	}
	// containerd and podman also record the whole name.
	if n := d.Annotations["io.containerd.image.name"]; n != "" {
		if i := strings.LastIndexByte(n, ':'); i >= 0 && !strings.ContainsRune(n[i:], '/') {
			return n[i+1:]
		}
	}
	return ""
}

// fromIndex picks the image for want from a multi-platform index.
func fromIndex(idx v1.ImageIndex, digest string, want *v1.Platform) (*selected, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var have []string
	rest := 0
	for _, d := range im.Manifests {
		if d.Platform == nil || !d.MediaType.IsImage() {
			continue
		}
		if d.Platform.Satisfies(*want) {
			img, err := idx.Image(d.Digest)
			return &selected{img: img, want: d.Digest, index: digest}, err
		}
		if len(have) < maxListedPlatforms {
			have = append(have, safetext.Cut(quotePlatform(d.Platform), maxPlatformText))
		} else {
			rest++
		}
	}
	if rest > 0 {
		have = append(have, fmt.Sprintf("and %d more", rest))
	}
	return nil, fmt.Errorf("%w: the index %s has no image for %s (it has: %s)", ErrReference, digest,
		safetext.Cut(quotePlatform(want), maxPlatformText), strings.Join(have, ", "))
}

// An error names at most maxListedPlatforms of an index's platforms, each
// cut to maxPlatformText bytes, and counts the rest: the index is the
// registry's (hostile input), and an index of thousands of platforms with
// long names must not make an error of megabytes.
const (
	maxListedPlatforms = 8
	maxPlatformText    = 128
)

// Keychain returns the registry credentials of authfile, a docker
// config.json or podman auth.json (the same format; a Kubernetes
// .dockerconfigjson Secret too); "" means the usual places, as
// authn.DefaultKeychain finds them.
func Keychain(authfile string) (authn.Keychain, error) {
	if authfile == "" {
		return authn.DefaultKeychain, nil
	}
	return fileKeychain(authfile)
}

// fileKeychain returns the credentials of a docker config.json or podman
// auth.json (the same format).
func fileKeychain(path string) (authn.Keychain, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read the auth file: %w", err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("failed to read the auth file %q: %w", path, err)
	}
	return fileKeys{cf: cf}, nil
}

// fileKeys resolves credentials from one config file, as
// authn.DefaultKeychain does from the default ones: by repository first,
// then by registry.
type fileKeys struct{ cf *configfile.ConfigFile }

func (k fileKeys) Resolve(r authn.Resource) (authn.Authenticator, error) {
	for _, key := range []string{r.String(), r.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		c, err := k.cf.GetAuthConfig(key)
		if err != nil {
			return nil, err
		}
		c.ServerAddress = "" // set by GetAuthConfig, not a credential
		if c != (types.AuthConfig{}) {
			return authn.FromConfig(authn.AuthConfig{
				Username: c.Username, Password: c.Password, Auth: c.Auth,
				IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

// Record returns the image record of a baseline made from im.
func (im *Image) Record() *baseline.Image {
	return &baseline.Image{
		Manifest: im.Manifest, Config: im.Config, Index: im.Index,
		Platform: im.Platform, Layers: slices.Clone(im.Layers),
	}
}
