package cli

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
)

// ociLayout writes an OCI layout of an image whose layers hold the given
// files (name -> content; a name ending in "/" is a directory).
func ociLayout(t *testing.T, layers ...[][2]string) string {
	t.Helper()
	img := empty.Image
	for _, files := range layers {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, f := range files {
			h := &tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), ModTime: time.Unix(1_700_000_000, 5), Format: tar.FormatPAX}
			if strings.HasSuffix(f[0], "/") {
				h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(f[1]))
		}
		tw.Close()
		data := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: imageCreated}
	img, _ = mutate.ConfigFile(img, cf)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

var imageCreated = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func TestBaselineImage(t *testing.T) {
	dir := ociLayout(t,
		[][2]string{{"etc/", ""}, {"etc/app.conf", "listen 8080\n"}, {"www/", ""}, {"www/index.html", "Hello\n"}},
		[][2]string{{"www/", ""}, {"www/index.html", "Hello, world!\n"}})
	work := t.TempDir()
	key, a, b := filepath.Join(work, "k"), filepath.Join(work, "a.pfb"), filepath.Join(work, "b.pfb")
	if code, _, e := run(t, "keygen", "--out", key); code != 0 {
		t.Fatalf("keygen: %s", e)
	}
	for _, out := range []string{a, b} {
		code, stdout, e := run(t, "baseline", "--image", "oci:"+dir, "--out", out, "--sign-key", key)
		if code != 0 || !strings.Contains(stdout, "5 entries") {
			t.Fatalf("baseline --image: %d %q %s", code, stdout, e)
		}
	}
	if x, y := readAll(t, a), readAll(t, b); !bytes.Equal(x, y) {
		t.Fatal("two baselines of one image differ")
	}
	bl, err := baseline.ReadFile(a, baseline.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	im := bl.Image
	if im == nil || !strings.HasPrefix(im.Manifest, "sha256:") || !strings.HasPrefix(im.Config, "sha256:") ||
		im.Platform != "linux/amd64" || len(im.Layers) != 2 || bl.Subject != im.Manifest || bl.Compared != attr.ImageStable || !bl.Signed {
		t.Fatalf("header %+v image %+v", bl.Header, im)
	}
	// The image's own time: a baseline made later is the same file.
	if !bl.Created.Equal(imageCreated) || bl.Serial != uint64(imageCreated.Unix()) {
		t.Errorf("created %s serial %d, want the image's %s", bl.Created, bl.Serial, imageCreated)
	}
	layers := map[string]uint16{}
	for _, e := range bl.Entries {
		layers[e.Path] = e.Layer
		if e.Attrs.Any(attr.Inode | attr.Nlink | attr.Ctime) {
			t.Errorf("%s records %s", e.Path, e.Attrs)
		}
	}
	if layers["/etc/app.conf"] != 1 || layers["/www/index.html"] != 2 || layers["/www"] != 2 {
		t.Errorf("layers %v", layers)
	}
}

func TestBaselineImageErrors(t *testing.T) {
	dir, out := ociLayout(t, [][2]string{{"../escape", "x"}}), filepath.Join(t.TempDir(), "b.pfb")
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"baseline", "--root", dir, "--image", "oci:" + dir, "--out", out}, ExitUsage, "exactly one of"},
		{[]string{"baseline", "--root", dir, "--platform", "linux/amd64", "--out", out}, ExitUsage, "--image only"},
		{[]string{"baseline", "--image", "nginx:latest", "--out", out}, ExitUsage, "transport"},
		{[]string{"baseline", "--image", "oci:" + dir, "--platform", "linux/arm64", "--out", out}, ExitUsage, "not linux/arm64"},
		{[]string{"baseline", "--image", "oci:" + dir, "--out", out}, ExitScan, `unsafe image layer entry "../escape"`},
		{[]string{"baseline", "--image", "oci:" + filepath.Join(dir, "missing"), "--out", out}, ExitScan, "missing"},
	}
	for _, tc := range tests {
		code, _, e := run(t, tc.args...)
		if code != tc.code || !strings.Contains(e, tc.msg) {
			t.Errorf("%q: %d %q, want %d with %q", tc.args, code, e, tc.code, tc.msg)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed baseline left %s: %v", out, err)
	}
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
