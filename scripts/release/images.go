package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// platforms of a release, in the order of the index.
var platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// file is one entry of an image's only layer.
type file struct {
	name     string // path in the image, without a leading /
	mode     int64
	uid, gid int
	dir      bool
	src      string // with %s for the architecture: a file of -bin; or:
	content  []byte
}

// imageSpec is one image: build/<name>.Dockerfile, written as data so that
// the images are made without a container engine, for every platform,
// byte for byte the same each time. The Dockerfiles stay the recipe of
// `make images`; TestImageSpecsMatchDockerfiles keeps the two in step.
type imageSpec struct {
	name        string
	description string
	files       []file
	config      v1.Config
}

func imageSpecs() []imageSpec {
	return []imageSpec{
		{
			name:        "podfim",
			description: "file integrity monitoring for Kubernetes pods (sidecar and CLI)",
			files:       []file{{name: "podfim", mode: 0o555, src: "podfim-linux-%s"}},
			config:      v1.Config{User: "0:0", Entrypoint: []string{"/podfim"}, Cmd: []string{"sidecar"}},
		},
		{
			name:        "hello",
			description: "podfim's demo app: serves /www (Hello, world!) as a non-root user",
			files: []file{
				{name: "hello", mode: 0o555, src: "hello-linux-%s"},
				{name: "www", mode: 0o755, uid: 65532, gid: 65532, dir: true},
				{name: "www/index.html", mode: 0o600, uid: 65532, gid: 65532, content: []byte("Hello, world!\n")},
			},
			config: v1.Config{User: "65532:65532", Entrypoint: []string{"/hello"}, Cmd: []string{"--dir=/www", "--addr=:8080"},
				ExposedPorts: map[string]struct{}{"8080/tcp": {}}},
		},
	}
}

// meta is what every image of a release is labelled with.
type meta struct {
	version, revision string
	created           time.Time
}

func (m meta) labels(s imageSpec) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       s.name,
		"org.opencontainers.image.description": s.description,
		"org.opencontainers.image.source":      "https://github.com/podfim/podfim",
		"org.opencontainers.image.version":     m.version,
		"org.opencontainers.image.revision":    m.revision,
		"org.opencontainers.image.created":     m.created.Format(time.RFC3339),
	}
}

func runImages(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	bin := fs.String("bin", "", "directory of the binaries, NAME-linux-ARCH")
	dst := fs.String("out", "", "directory to write the layouts into (DIR/podfim, DIR/hello; must not exist)")
	var m meta
	fs.StringVar(&m.version, "version", "", "the release version (the layouts' ref name, the images' label)")
	fs.StringVar(&m.revision, "revision", "", "the commit")
	epoch := fs.Int64("epoch", -1, "SOURCE_DATE_EPOCH: every time in the images")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" || *dst == "" || m.version == "" || m.revision == "" || *epoch < 0 {
		return fmt.Errorf("%w: images needs -bin, -out, -version, -revision and -epoch", errUsage)
	}
	m.created = time.Unix(*epoch, 0).UTC()
	if _, err := os.Lstat(*dst); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s exists: a release writes into a new directory", *dst)
	}
	for _, s := range imageSpecs() {
		idx, err := buildIndex(s, *bin, m)
		if err != nil {
			return fmt.Errorf("image %s: %w", s.name, err)
		}
		p, err := layout.Write(filepath.Join(*dst, s.name), empty.Index)
		if err != nil {
			return err
		}
		ann := map[string]string{"org.opencontainers.image.ref.name": m.version}
		if err := p.AppendIndex(idx, layout.WithAnnotations(ann)); err != nil {
			return fmt.Errorf("image %s: %w", s.name, err)
		}
		d, err := idx.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s %s %s\n", s.name, m.version, d)
	}
	return nil
}

// buildIndex makes the image of s for each platform and their index.
func buildIndex(s imageSpec, bin string, m meta) (v1.ImageIndex, error) {
	x := &index{images: map[v1.Hash]v1.Image{}}
	doc := ociIndex{SchemaVersion: 2, MediaType: types.OCIImageIndex, Annotations: m.labels(s)}
	for _, p := range platforms {
		img, err := buildImage(s, bin, p, m)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", p.OS, p.Architecture, err)
		}
		d, err := partial.Descriptor(img)
		if err != nil {
			return nil, err
		}
		pl := p
		doc.Manifests = append(doc.Manifests, ociDescriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, Platform: &pl})
		x.images[d.Digest] = img
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	x.raw = raw
	return x, nil
}

// ociIndex and ociDescriptor are an image index as the OCI image-spec's
// Go types write it (field order, no artifactType on image entries), not
// as go-containerregistry does: tools that re-encode an index with those
// types, such as skopeo copy --preserve-digests, then get the same bytes
// and keep its digest instead of refusing to copy it.
type ociIndex struct {
	SchemaVersion int64             `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	Manifests     []ociDescriptor   `json:"manifests"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type ociDescriptor struct {
	MediaType types.MediaType `json:"mediaType"`
	Digest    v1.Hash         `json:"digest"`
	Size      int64           `json:"size"`
	Platform  *v1.Platform    `json:"platform,omitempty"`
}

// index is a v1.ImageIndex of exactly the bytes raw and the images it lists.
type index struct {
	raw    []byte
	images map[v1.Hash]v1.Image
}

func (x *index) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }
func (x *index) Size() (int64, error)                { return int64(len(x.raw)), nil }
func (x *index) RawManifest() ([]byte, error)        { return x.raw, nil }

func (x *index) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(x.raw))
	return h, err
}

func (x *index) IndexManifest() (*v1.IndexManifest, error) {
	return v1.ParseIndexManifest(bytes.NewReader(x.raw))
}

func (x *index) Image(h v1.Hash) (v1.Image, error) {
	if img, ok := x.images[h]; ok {
		return img, nil
	}
	return nil, fmt.Errorf("no image %s in the index", h)
}

func (x *index) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	return nil, fmt.Errorf("no index %s in the index: it lists images only", h)
}

func buildImage(s imageSpec, bin string, p v1.Platform, m meta) (v1.Image, error) {
	gz, err := layerBytes(s.files, bin, p.Architecture, m.created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: m.created}, CreatedBy: "scripts/release images " + s.name}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Architecture
	cf.Created = v1.Time{Time: m.created}
	cf.Config = s.config
	cf.Config.Labels = m.labels(s)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// layerBytes is the gzip of a tar of files, every time set to created and
// no names of users or groups: the same bytes on every machine.
func layerBytes(files []file, bin, arch string, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := writeEntry(tw, f, bin, arch, created); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeEntry(tw *tar.Writer, f file, bin, arch string, created time.Time) error {
	h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: created, Format: tar.FormatUSTAR}
	if f.dir {
		h.Typeflag, h.Name = tar.TypeDir, f.name+"/"
		return tw.WriteHeader(h)
	}
	data := f.content
	if f.src != "" {
		b, err := os.ReadFile(filepath.Join(bin, fmt.Sprintf(f.src, arch)))
		if err != nil {
			return err
		}
		data = b
	}
	h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}
