package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestImageSpecsMatchDockerfiles keeps the release's images what `make
// images` builds: the same user, entrypoint, command, ports and files.
// The one difference is hello's /bin/busybox, left out of the release
// (docs/install.md says why).
func TestImageSpecsMatchDockerfiles(t *testing.T) {
	for _, s := range imageSpecs() {
		b, err := os.ReadFile(filepath.Join("..", "..", "build", s.name+".Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		df := string(b)
		want := func(re string) []string {
			m := regexp.MustCompile(`(?m)^` + re + `\s*$`).FindStringSubmatch(df)
			if m == nil {
				t.Fatalf("%s.Dockerfile: no line %s", s.name, re)
			}
			return m[1:]
		}
		if u := want(`USER (\S+)`)[0]; u != s.config.User {
			t.Errorf("%s: user %q, Dockerfile %q", s.name, s.config.User, u)
		}
		for _, c := range []struct {
			re  string
			got []string
		}{{`ENTRYPOINT (\[.*\])`, s.config.Entrypoint}, {`CMD (\[.*\])`, s.config.Cmd}} {
			var v []string
			if err := json.Unmarshal([]byte(want(c.re)[0]), &v); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v, c.got) {
				t.Errorf("%s: %v, Dockerfile %s", s.name, c.got, v)
			}
		}
		var ports []string
		for _, m := range regexp.MustCompile(`(?m)^EXPOSE (\d+)`).FindAllStringSubmatch(df, -1) {
			ports = append(ports, m[1]+"/tcp")
		}
		var specPorts []string
		for p := range s.config.ExposedPorts {
			specPorts = append(specPorts, p)
		}
		if slices.Sort(specPorts); !slices.Equal(ports, specPorts) {
			t.Errorf("%s: ports %v, Dockerfile %v", s.name, specPorts, ports)
		}
		var copied []string
		for _, m := range regexp.MustCompile(`(?m)^COPY (?:--chown=\S+ )?\S+ /(\S+)`).FindAllStringSubmatch(df, -1) {
			if m[1] != "bin/busybox" {
				copied = append(copied, m[1])
			}
		}
		var top []string
		for _, f := range s.files {
			if !strings.Contains(f.name, "/") {
				top = append(top, f.name)
			}
		}
		if !slices.Equal(copied, top) {
			t.Errorf("%s: files %v, Dockerfile copies %v", s.name, top, copied)
		}
	}
}

// TestLayerDeterministic: a layer's bytes depend on nothing but its files
// and the time given; that time is on every entry.
func TestLayerDeterministic(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "hello-linux-arm64"), []byte("\x7fELF hello"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := imageSpecs()[1].files
	at := time.Unix(1796304384, 0).UTC()
	a, err := layerBytes(files, bin, "arm64", at)
	if err != nil {
		t.Fatal(err)
	}
	b, err := layerBytes(files, bin, "arm64", at)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("two layers of the same files differ (%v)", err)
	}
	hs := readTar(t, a)
	var names []string
	for _, h := range hs {
		names = append(names, h.Name)
		if !h.ModTime.Equal(at) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: time %s owner names %q %q", h.Name, h.ModTime, h.Uname, h.Gname)
		}
	}
	if strings.Join(names, " ") != "hello www/ www/index.html" || hs[2].Mode != 0o600 || hs[2].Uid != 65532 || hs[0].Size != 10 {
		t.Errorf("layer entries %+v", hs)
	}
	if _, err := layerBytes(files, bin, "amd64", at); err == nil {
		t.Error("a missing binary gave a layer")
	}
}

// TestBuildIndexPlatforms: the index lists both platforms, each image's
// configuration says which it is.
func TestBuildIndexPlatforms(t *testing.T) {
	bin := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		if err := os.WriteFile(filepath.Join(bin, "podfim-linux-"+arch), []byte(arch), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := meta{version: "v1.2.3", revision: "0123456789abcdef0123456789abcdef01234567", created: time.Unix(1796304384, 0).UTC()}
	idx, err := buildIndex(imageSpecs()[0], bin, m)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Annotations["org.opencontainers.image.version"] != "v1.2.3" {
		t.Fatalf("index %+v", im)
	}
	for i, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		want := platforms[i]
		if !d.Platform.Equals(want) || cf.Architecture != want.Architecture || cf.OS != "linux" ||
			cf.Config.Labels["org.opencontainers.image.revision"] != m.revision || !cf.Created.Time.Equal(m.created) {
			t.Errorf("manifest %d: platform %v config %s/%s labels %v", i, d.Platform, cf.OS, cf.Architecture, cf.Config.Labels)
		}
	}
}

// TestNormalizeChart: every time becomes the epoch; names, modes and
// content stay.
func TestNormalizeChart(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range []struct{ name, body string }{{"podfim/Chart.yaml", "version: 1.0.0\n"}, {"podfim/values.yaml", "a: 1\n"}} {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Now(), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	tw.Close()
	zw.Close()
	at := time.Unix(1796304384, 0).UTC()
	out, err := normalizeChart(buf.Bytes(), at)
	if err != nil {
		t.Fatal(err)
	}
	hs := readTar(t, out)
	if len(hs) != 2 || hs[0].Name != "podfim/Chart.yaml" || hs[1].Size != 5 {
		t.Fatalf("entries %+v", hs)
	}
	for _, h := range hs {
		if !h.ModTime.Equal(at) || h.Mode != 0o644 {
			t.Errorf("%s: time %s mode %o", h.Name, h.ModTime, h.Mode)
		}
	}
	if _, err := normalizeChart([]byte("not gzip"), at); err == nil {
		t.Error("a non-gzip chart was accepted")
	}
}

func readTar(t *testing.T, gz []byte) []*tar.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var hs []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hs
		}
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
}
