//go:build release

// Package release tests `make release` (make release-check; .ci/run): two
// builds of the same commit give the same bytes, and what dist/ holds is
// what docs/install.md says it is.
package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"sigs.k8s.io/yaml"
)

// rel is the release the test builds: scripts/version.sh's.
type rel struct {
	root, version, commit, chartVersion string
	epoch                               time.Time
}

func run(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func current(t *testing.T) rel {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	get := func(arg string) string {
		out, err := run(t, root, nil, "scripts/version.sh", arg)
		if err != nil {
			t.Fatalf("scripts/version.sh %s: %v\n%s", arg, err, out)
		}
		return strings.TrimSpace(out)
	}
	r := rel{root: root, version: get("version"), commit: get("commit"), chartVersion: get("chart")}
	if strings.HasSuffix(r.version, "-dirty") {
		t.Fatalf("the work tree has uncommitted changes (%s): make release refuses it; commit first", r.version)
	}
	var sec int64
	if err := json.Unmarshal([]byte(get("epoch")), &sec); err != nil {
		t.Fatal(err)
	}
	r.epoch = time.Unix(sec, 0).UTC()
	return r
}

// TestRelease builds the release twice and compares every file, then
// checks the first build's contents.
func TestRelease(t *testing.T) {
	r := current(t)
	tmp := t.TempDir()
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	for _, dist := range []string{a, b} {
		start := time.Now()
		out, err := run(t, r.root, nil, "make", "release", "DIST="+dist)
		if err != nil {
			t.Fatalf("make release DIST=%s: %v\n%s", dist, err, out)
		}
		t.Logf("make release DIST=%s: %s", dist, time.Since(start).Round(time.Second))
	}
	n := compareTrees(t, a, b)
	t.Logf("%d files of two builds of %s are byte-identical", n, r.version)

	t.Run("Checksums", func(t *testing.T) { checkSums(t, a, r) })
	t.Run("Binaries", func(t *testing.T) { checkBinaries(t, a, r) })
	t.Run("Images", func(t *testing.T) { checkImages(t, a, r) })
	t.Run("SBOM", func(t *testing.T) { checkSBOMs(t, a, r) })
	t.Run("Chart", func(t *testing.T) { checkChart(t, a, r) })
	t.Run("Baselines", func(t *testing.T) { checkBaselines(t, a, r) })
	t.Run("SkopeoCopy", func(t *testing.T) { checkSkopeoCopy(t, a, r) })
}

// checkSkopeoCopy is docs/install.md's air-gapped copy: skopeo copies
// each multi-platform image out of the layout with its digest kept
// (skopeo re-encodes an index and refuses --preserve-digests when that
// changes its bytes). To an oci: directory: no registry needed.
func checkSkopeoCopy(t *testing.T, dist string, r rel) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("skopeo is not installed (.ci/run installs it: apt-get install skopeo)")
		}
		t.Skip("skopeo is not installed (apt-get install skopeo)")
	}
	for _, name := range []string{"podfim", "hello"} {
		dst := filepath.Join(t.TempDir(), name)
		out, err := run(t, dist, nil, "skopeo", "copy", "--quiet", "--all", "--preserve-digests",
			"oci:oci/"+name+":"+r.version, "oci:"+dst+":"+r.version)
		if err != nil {
			t.Fatalf("skopeo copy --all --preserve-digests %s: %v\n%s", name, err, out)
		}
		want, err := layoutIndex(t, filepath.Join(dist, "oci", name), r.version).Digest()
		if err != nil {
			t.Fatal(err)
		}
		got, err := layoutIndex(t, dst, r.version).Digest()
		if err != nil || got != want {
			t.Errorf("%s copied by skopeo: index %s (%v), want %s", name, got, err, want)
		}
	}
}

// TestReleaseRefusesDirty: a version with uncommitted changes is no release.
func TestReleaseRefusesDirty(t *testing.T) {
	r := current(t)
	dist := filepath.Join(t.TempDir(), "dist")
	out, err := run(t, r.root, []string{"VERSION=" + r.version + "-dirty", "DIST=" + dist}, "scripts/release.sh")
	if err == nil || !strings.Contains(out, "uncommitted changes") {
		t.Fatalf("scripts/release.sh with a -dirty version: %v\n%s", err, out)
	}
	if _, err := os.Stat(dist); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused release wrote %s", dist)
	}
}

// compareTrees fails for every file that differs or exists in one tree
// only, and returns the number of files compared.
func compareTrees(t *testing.T, a, b string) int {
	t.Helper()
	files := func(root string) map[string][]byte {
		m := map[string][]byte{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			m[rel], err = os.ReadFile(p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	fa, fb := files(a), files(b)
	for name, x := range fa {
		if y, ok := fb[name]; !ok {
			t.Errorf("%s: only in the first build", name)
		} else if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds of one commit", name)
		}
	}
	for name := range fb {
		if _, ok := fa[name]; !ok {
			t.Errorf("%s: only in the second build", name)
		}
	}
	return len(fa)
}

func checkSums(t *testing.T, dist string, r rel) {
	out, err := run(t, dist, nil, "sha256sum", "--check", "--strict", "SHA256SUMS")
	if err != nil {
		t.Fatalf("sha256sum --check: %v\n%s", err, out)
	}
	want := []string{"images.txt", "podfim-" + r.chartVersion + ".tgz", "podfim-release.pub"}
	for _, arch := range []string{"amd64", "arm64"} {
		base := "podfim-" + r.version + "-linux-" + arch
		want = append(want, base, base+".cdx.json", base+".pfb")
	}
	for _, f := range want {
		if !strings.Contains(out, f+": OK") {
			t.Errorf("SHA256SUMS does not cover %s:\n%s", f, out)
		}
	}
}

func checkBinaries(t *testing.T, dist string, r rel) {
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for arch, m := range machines {
		p := filepath.Join(dist, "podfim-"+r.version+"-linux-"+arch)
		f, err := elf.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != m {
			t.Errorf("%s: machine %s, want %s", p, f.Machine, m)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s has an interpreter: not a static binary", p)
			}
		}
		f.Close()
	}
	p := filepath.Join(dist, "podfim-"+r.version+"-linux-"+runtime.GOARCH)
	out, err := run(t, dist, nil, p, "version", "--format", "json")
	if err != nil {
		t.Fatalf("%s version: %v\n%s", p, err, out)
	}
	var v struct{ Version, Commit, Date string }
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.Version != r.version || v.Commit != r.commit || v.Date != r.epoch.Format(time.RFC3339) {
		t.Errorf("podfim version = %+v, want %s %s %s", v, r.version, r.commit, r.epoch.Format(time.RFC3339))
	}
}

// checkImages: each layout names one index, of linux/amd64 and linux/arm64,
// labelled with the release; the podfim image's binary is the release's.
func checkImages(t *testing.T, dist string, r rel) {
	listed, err := os.ReadFile(filepath.Join(dist, "images.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"podfim", "hello"} {
		idx := layoutIndex(t, filepath.Join(dist, "oci", name), r.version)
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if line := name + " " + r.version + " " + d.String() + "\n"; !strings.Contains(string(listed), line) {
			t.Errorf("images.txt has no line %q:\n%s", line, listed)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var plats []string
		for _, m := range im.Manifests {
			plats = append(plats, m.Platform.String())
			img, err := idx.Image(m.Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkImage(t, name, img, m.Platform, dist, r)
		}
		if strings.Join(plats, " ") != "linux/amd64 linux/arm64" {
			t.Errorf("%s: platforms %v, want linux/amd64 linux/arm64", name, plats)
		}
	}
}

func layoutIndex(t *testing.T, dir, tag string) v1.ImageIndex {
	t.Helper()
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != tag {
		t.Fatalf("%s/index.json: %+v, want one index named %s", dir, im.Manifests, tag)
	}
	idx, err := root.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func checkImage(t *testing.T, name string, img v1.Image, p *v1.Platform, dist string, r rel) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != p.OS || cf.Architecture != p.Architecture || !cf.Created.Time.Equal(r.epoch) {
		t.Errorf("%s %s: config os/arch %s/%s created %s", name, p, cf.OS, cf.Architecture, cf.Created.Time)
	}
	for k, want := range map[string]string{"version": r.version, "revision": r.commit,
		"created": r.epoch.Format(time.RFC3339), "source": "https://github.com/podfim/podfim"} {
		if got := cf.Config.Labels["org.opencontainers.image."+k]; got != want {
			t.Errorf("%s %s: label %s = %q, want %q", name, p, k, got, want)
		}
	}
	if name != "podfim" {
		return
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%s %s: %d layers (%v), want 1", name, p, len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil || h.Name != "podfim" || h.Mode != 0o555 || !h.ModTime.Equal(r.epoch) {
		t.Fatalf("%s %s: first entry %+v (%v)", name, p, h, err)
	}
	got, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(dist, "podfim-"+r.version+"-"+p.OS+"-"+p.Architecture))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s %s: /podfim is not the release's binary", name, p)
	}
	if cf.Config.Entrypoint[0] != "/podfim" || cf.Config.User != "0:0" {
		t.Errorf("%s %s: entrypoint %v user %q", name, p, cf.Config.Entrypoint, cf.Config.User)
	}
}

func checkSBOMs(t *testing.T, dist string, r rel) {
	for _, arch := range []string{"amd64", "arm64"} {
		p := filepath.Join(dist, "podfim-"+r.version+"-linux-"+arch+".cdx.json")
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var bom struct {
			BOMFormat, SpecVersion, SerialNumber string
			Metadata                             struct {
				Timestamp string
				Component struct{ Name, Version, Purl string }
			}
			Components []struct{ Name, Version, Purl string }
		}
		if err := json.Unmarshal(b, &bom); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		c := bom.Metadata.Component
		if bom.BOMFormat != "CycloneDX" || c.Name != "github.com/podfim/podfim" || c.Version != r.version ||
			!strings.Contains(c.Purl, "@"+r.version+"?goarch="+arch+"&goos=linux") || bom.Metadata.Timestamp != "" ||
			!strings.HasPrefix(bom.SerialNumber, "urn:uuid:") {
			t.Errorf("%s: %s %s serial %q timestamp %q component %+v", p, bom.BOMFormat, bom.SpecVersion, bom.SerialNumber, bom.Metadata.Timestamp, c)
		}
		found := map[string]bool{}
		for _, m := range bom.Components {
			found[m.Name] = m.Version != ""
		}
		for _, mod := range []string{"github.com/google/go-containerregistry", "k8s.io/client-go", "golang.org/x/sys"} {
			if !found[mod] {
				t.Errorf("%s: no component %s with a version (%d components)", p, mod, len(bom.Components))
			}
		}
	}
}

func checkChart(t *testing.T, dist string, r rel) {
	f, err := os.Open(filepath.Join(dist, "podfim-"+r.chartVersion+".tgz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var chart struct{ Version, AppVersion string }
	entries := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries++
		if !h.ModTime.Equal(r.epoch) {
			t.Errorf("chart entry %s: time %s, want SOURCE_DATE_EPOCH %s", h.Name, h.ModTime, r.epoch)
		}
		if h.Name == "podfim/Chart.yaml" {
			b, _ := io.ReadAll(tr)
			if err := yaml.Unmarshal(b, &chart); err != nil {
				t.Fatal(err)
			}
		}
	}
	if chart.Version != r.chartVersion || chart.AppVersion != r.version || entries < 10 {
		t.Errorf("chart: version %q appVersion %q (%d entries), want %s %s", chart.Version, chart.AppVersion, entries, r.chartVersion, r.version)
	}
}

// checkBaselines: each platform's baseline of the podfim image is signed
// by the key dist/ ships, and bound to that platform's manifest.
func checkBaselines(t *testing.T, dist string, r rel) {
	idx := layoutIndex(t, filepath.Join(dist, "oci", "podfim"), r.version)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	podfim := filepath.Join(dist, "podfim-"+r.version+"-linux-"+runtime.GOARCH)
	for _, m := range im.Manifests {
		p := filepath.Join(dist, "podfim-"+r.version+"-linux-"+m.Platform.Architecture+".pfb")
		out, err := run(t, dist, nil, podfim, "baseline", "show", "--format", "json", "--verify-key", "podfim-release.pub", p)
		if err != nil {
			t.Fatalf("baseline show %s: %v\n%s", p, err, out)
		}
		var h struct {
			SignatureVerified bool   `json:"signature_verified"`
			Subject           string `json:"subject"`
			Created           time.Time
			EntryCount        int `json:"entry_count"`
			Image             struct{ Manifest, Platform string }
		}
		if err := json.Unmarshal([]byte(out), &h); err != nil {
			t.Fatal(err)
		}
		if !h.SignatureVerified || h.Subject != m.Digest.String() || h.Image.Manifest != m.Digest.String() ||
			h.Image.Platform != m.Platform.String() || !h.Created.Equal(r.epoch) || h.EntryCount != 2 {
			t.Errorf("%s: %+v, want signed, bound to %s (%s), created %s, 2 entries (/ and /podfim)", p, h, m.Digest, m.Platform, r.epoch)
		}
	}
}
