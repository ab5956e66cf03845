package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxManifestBytes bounds the manifests, indexes and configurations read
// into memory: registries cap manifests at 4 MiB.
const maxManifestBytes = 4 << 20

// maxArchiveMembers bounds the members of an oci-archive indexed in memory.
const maxArchiveMembers = 1 << 20

// ociArchive is an OCI image layout in a tar file (what `podman save
// --format oci-archive` and `skopeo copy oci-archive:` write). go-
// containerregistry reads layouts from directories only; this indexes the
// archive's members once and reads each blob in place, so nothing is
// unpacked.
type ociArchive struct {
	f       *os.File
	members map[string]member
}

type member struct{ off, size int64 }

func openOCIArchive(ref string, want *v1.Platform) (*selected, error) {
	file, tag := splitTag(ref)
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	a := &ociArchive{f: f, members: map[string]member{}}
	if err := a.index(); err != nil {
		f.Close()
		return nil, fmt.Errorf("failed to read the archive %q: %w", file, err)
	}
	raw, err := a.read("index.json")
	if err != nil {
		f.Close()
		return nil, err
	}
	s, err := fromLayoutIndex(&archiveIndex{a: a, raw: raw, mediaType: types.OCIImageIndex}, tag, want)
	if err != nil {
		f.Close()
		return nil, err
	}
	s.close = f.Close
	return s, nil
}

// index records where each regular member's content starts.
func (a *ociArchive) index() error {
	cr := &countingReader{r: a.f}
	tr := tar.NewReader(cr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if len(a.members) == maxArchiveMembers {
			return fmt.Errorf("more than %d members", maxArchiveMembers)
		}
		// tar.Reader has read exactly the header blocks: the content
		// starts here.
		a.members[path.Clean(hdr.Name)] = member{off: cr.n, size: hdr.Size}
	}
}

// open returns the content of a member.
func (a *ociArchive) open(name string) (*io.SectionReader, error) {
	m, ok := a.members[name]
	if !ok {
		return nil, fmt.Errorf("the archive holds no %q", name)
	}
	return io.NewSectionReader(a.f, m.off, m.size), nil
}

// read returns the content of a small member.
func (a *ociArchive) read(name string) ([]byte, error) {
	r, err := a.open(name)
	if err != nil {
		return nil, err
	}
	if r.Size() > maxManifestBytes {
		return nil, fmt.Errorf("%q is %d bytes, more than %d", name, r.Size(), maxManifestBytes)
	}
	return io.ReadAll(r)
}

func blobName(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// archiveIndex is an index in an ociArchive (its index.json, or a nested
// index blob).
type archiveIndex struct {
	a         *ociArchive
	raw       []byte
	mediaType types.MediaType
}

var _ v1.ImageIndex = (*archiveIndex)(nil)

func (x *archiveIndex) MediaType() (types.MediaType, error) { return x.mediaType, nil }
func (x *archiveIndex) Digest() (v1.Hash, error)            { return partial.Digest(x) }
func (x *archiveIndex) Size() (int64, error)                { return partial.Size(x) }
func (x *archiveIndex) RawManifest() ([]byte, error)        { return x.raw, nil }

func (x *archiveIndex) IndexManifest() (*v1.IndexManifest, error) {
	return v1.ParseIndexManifest(bytes.NewReader(x.raw))
}

func (x *archiveIndex) find(h v1.Hash) (*v1.Descriptor, error) {
	im, err := x.IndexManifest()
	if err != nil {
		return nil, err
	}
	for i := range im.Manifests {
		if im.Manifests[i].Digest == h {
			return &im.Manifests[i], nil
		}
	}
	return nil, fmt.Errorf("the index lists no %s", h)
}

func (x *archiveIndex) Image(h v1.Hash) (v1.Image, error) {
	d, err := x.find(h)
	if err != nil {
		return nil, err
	}
	raw, err := x.a.read(blobName(h))
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&archiveImage{a: x.a, raw: raw, mediaType: d.MediaType})
}

func (x *archiveIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	d, err := x.find(h)
	if err != nil {
		return nil, err
	}
	raw, err := x.a.read(blobName(h))
	if err != nil {
		return nil, err
	}
	return &archiveIndex{a: x.a, raw: raw, mediaType: d.MediaType}, nil
}

// archiveImage is an image manifest in an ociArchive.
type archiveImage struct {
	a         *ociArchive
	raw       []byte
	mediaType types.MediaType
}

func (i *archiveImage) MediaType() (types.MediaType, error) { return i.mediaType, nil }
func (i *archiveImage) RawManifest() ([]byte, error)        { return i.raw, nil }

func (i *archiveImage) RawConfigFile() ([]byte, error) {
	m, err := v1.ParseManifest(bytes.NewReader(i.raw))
	if err != nil {
		return nil, err
	}
	return i.a.read(blobName(m.Config.Digest))
}

func (i *archiveImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	m, err := v1.ParseManifest(bytes.NewReader(i.raw))
	if err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		if l.Digest == h {
			return &archiveLayer{a: i.a, desc: l}, nil
		}
	}
	if m.Config.Digest == h {
		return &archiveLayer{a: i.a, desc: m.Config}, nil
	}
	return nil, errors.New("the manifest lists no " + h.String())
}

// archiveLayer is a layer blob in an ociArchive.
type archiveLayer struct {
	a    *ociArchive
	desc v1.Descriptor
}

func (l *archiveLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *archiveLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *archiveLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

func (l *archiveLayer) Compressed() (io.ReadCloser, error) {
	r, err := l.a.open(blobName(l.desc.Digest))
	if err != nil {
		return nil, err
	}
	return io.NopCloser(r), nil
}
