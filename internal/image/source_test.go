package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/podfim/podfim/internal/attr"
)

// testImage returns an image of two gzip layers for platform (os/arch).
func testImage(t *testing.T, platform string) v1.Image {
	t.Helper()
	img := empty.Image
	for _, l := range [][]byte{
		layer(t, dir("etc/"), file("etc/os-release", platform), file("etc/gone", "x")),
		layer(t, wh("etc/.wh.gone"), dir("bin/"), file("bin/app", "app")),
	} {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	p, _ := v1.ParsePlatform(platform)
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// multiIndex is an index of an amd64 and an arm64 image.
func multiIndex(t *testing.T) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range []string{"linux/amd64", "linux/arm64/v8"} {
		pl, _ := v1.ParsePlatform(p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: testImage(t, p), Descriptor: v1.Descriptor{Platform: pl}})
	}
	return idx
}

// build applies im and returns its entries.
func build(t *testing.T, im *Image) map[string]attr.Entry {
	t.Helper()
	tr := NewTree(everything{}, Limits{})
	if err := im.Apply(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	return entries(t, tr)
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestTransports(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, "linux/amd64")
	want := digestOf(t, img)
	config, _ := img.ConfigName()

	// oci: one image, tagged.
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	// docker-archive, as docker save and podman save write it.
	tag, _ := name.NewTag("example.com/app:v1")
	if err := tarball.WriteToFile(filepath.Join(dir, "docker.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	// oci-archive: the layout in a tar.
	tarDir(t, filepath.Join(dir, "layout"), filepath.Join(dir, "oci.tar"))
	// docker://, a registry on loopback.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	if err := remote.Write(mustTag(t, host+"/app:v1"), img); err != nil {
		t.Fatal(err)
	}

	for _, ref := range []string{
		"oci:" + filepath.Join(dir, "layout"),
		"oci:" + filepath.Join(dir, "layout") + ":v1",
		"docker-archive:" + filepath.Join(dir, "docker.tar"),
		"docker-archive:" + filepath.Join(dir, "docker.tar") + ":example.com/app:v1",
		"oci-archive:" + filepath.Join(dir, "oci.tar"),
		"oci-archive:" + filepath.Join(dir, "oci.tar") + ":v1",
		"docker://" + host + "/app:v1",
		"docker://" + host + "/app@" + want,
	} {
		t.Run(ref[:strings.IndexByte(ref, ':')], func(t *testing.T) {
			im, err := Open(context.Background(), ref, SourceOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if im.Manifest != want || im.Config != config.String() || im.Index != "" || im.Platform != "linux/amd64" || len(im.Layers) != 2 {
				t.Errorf("identity %+v, want manifest %s config %s", im.Identity, want, config)
			}
			es := build(t, im)
			wantPaths(t, es, "/", "/bin", "/bin/app", "/etc", "/etc/os-release")
			if es["/bin/app"].Layer != 2 || es["/etc/os-release"].Layer != 1 {
				t.Errorf("layers: /bin/app %d /etc/os-release %d", es["/bin/app"].Layer, es["/etc/os-release"].Layer)
			}
		})
	}
}

func TestMultiPlatform(t *testing.T) {
	dir := t.TempDir()
	idx := multiIndex(t)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	if err := remote.WriteIndex(mustTag(t, host+"/multi:v1"), idx); err != nil {
		t.Fatal(err)
	}
	idxDigest := digestOf(t, idx)
	im, _ := idx.IndexManifest()
	for _, ref := range []string{"oci:" + dir, "docker://" + host + "/multi:v1"} {
		for i, p := range []string{"linux/amd64", "linux/arm64/v8"} {
			got, err := Open(context.Background(), ref, SourceOptions{Platform: p})
			if err != nil {
				t.Fatalf("%s %s: %v", ref, p, err)
			}
			if got.Index != idxDigest || got.Manifest != im.Manifests[i].Digest.String() || got.Platform != p {
				t.Errorf("%s %s: %+v", ref, p, got.Identity)
			}
			if es := build(t, got); !bytes.Equal(es["/etc/os-release"].Hash, sum(p)) {
				t.Errorf("%s %s: the content of another platform", ref, p)
			}
			got.Close()
		}
		if _, err := Open(context.Background(), ref, SourceOptions{Platform: "linux/s390x"}); !errors.Is(err, ErrReference) || !strings.Contains(err.Error(), "linux/arm64/v8") {
			t.Errorf("%s: no such platform: %v", ref, err)
		}
	}
}

// TestHostilePlatform: the platforms an image's configuration and an
// index name reach error messages escaped.
func TestHostilePlatform(t *testing.T) {
	const evil = "linux\x1b]2;owned\x07"
	img := testImage(t, "linux/amd64")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS = evil
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: evil, Architecture: "amd64"}}})
	_, ierr := fromIndex(idx, digestOf(t, idx), &v1.Platform{OS: "linux", Architecture: "s390x"})
	_, serr := (&selected{img: img}).image(true, &v1.Platform{OS: "linux", Architecture: "amd64"})
	for what, err := range map[string]error{"index": ierr, "configuration": serr} {
		if !errors.Is(err, ErrReference) || strings.ContainsRune(err.Error(), 0x1b) || !strings.Contains(err.Error(), `\x1b]2;owned\a`) {
			t.Errorf("%s: err = %q, want ErrReference with the platform quoted", what, err)
		}
	}
}

// TestManyPlatforms: an index of many platforms with long names makes an
// error that names a few, each cut, and counts the rest. Before the fix it
// listed all 200 (over 100 KiB).
func TestManyPlatforms(t *testing.T) {
	img := testImage(t, "linux/amd64")
	var adds []mutate.IndexAddendum
	for i := range 200 {
		arch := fmt.Sprintf("arch%03d%s", i, strings.Repeat("x", 600))
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	_, err := fromIndex(idx, digestOf(t, idx), &v1.Platform{OS: "linux", Architecture: "s390x"})
	if !errors.Is(err, ErrReference) {
		t.Fatalf("err = %v, want ErrReference", err)
	}
	msg := err.Error()
	if len(msg) > 2048 || !strings.Contains(msg, "linux/arch000") || !strings.Contains(msg, "and 192 more") || strings.Contains(msg, "arch008") {
		t.Errorf("error of %d bytes: %.300q", len(msg), msg)
	}
}

func TestReferenceErrors(t *testing.T) {
	for _, ref := range []string{"", "nginx", "ftp://x/y", "oci:", "docker://UPPER/Case:tag"} {
		if _, err := Open(context.Background(), ref, SourceOptions{}); !errors.Is(err, ErrReference) {
			t.Errorf("%q: err = %v, want ErrReference", ref, err)
		}
	}
	if _, err := Open(context.Background(), "oci:/nonexistent", SourceOptions{Platform: "linux"}); !errors.Is(err, ErrReference) {
		t.Errorf("bad platform: %v", err)
	}
}

func TestTamperedBlobs(t *testing.T) {
	img := testImage(t, "linux/amd64")
	m, _ := img.Manifest()
	for name, blob := range map[string]v1.Hash{"config": m.Config.Digest, "layer": m.Layers[1].Digest} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			lp, err := layout.Write(dir, empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			if err := lp.AppendImage(img); err != nil {
				t.Fatal(err)
			}
			// Swap the blob for a valid one of the same kind: another
			// image's, so only the digest check can tell.
			other := testImage(t, "linux/arm64")
			var b []byte
			if name == "layer" {
				// A gzip layer with other content under the old name.
				om, err := other.Manifest()
				if err != nil {
					t.Fatal(err)
				}
				l, err := other.LayerByDigest(om.Layers[0].Digest)
				if err != nil {
					t.Fatal(err)
				}
				rc, err := l.Compressed()
				if err != nil {
					t.Fatal(err)
				}
				b, err = io.ReadAll(rc)
				if err != nil {
					t.Fatal(err)
				}
			} else if b, err = other.RawConfigFile(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "blobs", blob.Algorithm, blob.Hex), b, 0o644); err != nil {
				t.Fatal(err)
			}
			im, err := Open(context.Background(), "oci:"+dir, SourceOptions{})
			if err == nil {
				err = im.Apply(context.Background(), NewTree(everything{}, Limits{}))
			}
			if !errors.Is(err, ErrDigest) {
				t.Fatalf("err = %v, want ErrDigest", err)
			}
		})
	}
}

// configSwap is an image whose manifest names its configuration by cfg
// and whose source serves raw as that configuration.
type configSwap struct {
	v1.Image
	cfg v1.Descriptor
	raw []byte
}

func (c *configSwap) Manifest() (*v1.Manifest, error) {
	m, err := c.Image.Manifest()
	if err != nil {
		return nil, err
	}
	m = m.DeepCopy()
	m.Config = c.cfg
	return m, nil
}

func (c *configSwap) RawConfigFile() ([]byte, error) { return c.raw, nil }

// TestConfigDigest: the configuration is checked against the digest the
// manifest names, whatever its algorithm, and its size is bounded before
// it is read.
func TestConfigDigest(t *testing.T) {
	img := testImage(t, "linux/amd64")
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	other, err := testImage(t, "linux/arm64").RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	sha512Of := func(b []byte) v1.Hash {
		sum := sha512.Sum512(b)
		return v1.Hash{Algorithm: "sha512", Hex: hex.EncodeToString(sum[:])}
	}
	own, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		cfg  v1.Descriptor
		raw  []byte
		want string // what the error says; "" for none
	}{
		"sha512 matches":  {cfg: v1.Descriptor{Digest: sha512Of(own), Size: int64(len(own))}, raw: own},
		"sha512 swapped":  {cfg: v1.Descriptor{Digest: sha512Of(own), Size: int64(len(own))}, raw: other, want: ErrDigest.Error()},
		"sha256 swapped":  {cfg: m.Config, raw: other, want: ErrDigest.Error()},
		"size over bound": {cfg: v1.Descriptor{Digest: m.Config.Digest, Size: maxManifestBytes + 1}, raw: own, want: "more than"},
		"served too many": {cfg: m.Config, raw: make([]byte, maxManifestBytes+1), want: "more than"},
	} {
		t.Run(name, func(t *testing.T) {
			s := &selected{img: &configSwap{Image: img, cfg: tc.cfg, raw: tc.raw}}
			_, err := s.image(false, nil)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestAuthfile(t *testing.T) {
	const user, pass = "ci", "s3cret"
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://")
	if err := remote.Write(mustTag(t, host+"/app:v1"), testImage(t, "linux/amd64"), remote.WithAuth(basic{user, pass})); err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(t.TempDir(), "auth.json")
	creds := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err := os.WriteFile(auth, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, host, creds), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), "docker://"+host+"/app:v1", SourceOptions{Authfile: filepath.Join(t.TempDir(), "empty.json")}); err == nil {
		t.Fatal("opened without credentials")
	}
	im, err := Open(context.Background(), "docker://"+host+"/app:v1", SourceOptions{Authfile: auth, Insecure: true})
	if err != nil {
		t.Fatalf("with the auth file: %v", err)
	}
	im.Close()
}

type basic struct{ user, pass string }

func (b basic) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: b.user, Password: b.pass}, nil
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

// tarDir writes the files under dir to a tar file, as oci-archive holds
// a layout.
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
