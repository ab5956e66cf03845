package referrer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/podfim/podfim/internal/attr"
	"github.com/podfim/podfim/internal/baseline"
)

// testRegistry serves ggcr's in-memory registry, with or without the
// referrers API, and counts the requests for the fallback tag.
type testRegistry struct {
	host      string
	fallbacks int
}

func newRegistry(t *testing.T, referrers bool) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	reg := registry.New(registry.WithReferrersSupport(referrers), registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/sha256-") {
			tr.fallbacks++
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	return tr
}

// pushImage pushes a random image and returns its digest reference.
func (tr *testRegistry) pushImage(t *testing.T, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(tr.host + "/" + repo + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(d.String())
}

// writeBaseline writes a baseline recording the image digest, signed
// with key (unsigned when nil), and returns its path.
func writeBaseline(t *testing.T, dir, file, digest string, serial uint64, key ed25519.PrivateKey) string {
	t.Helper()
	cfg := "sha256:" + strings.Repeat("c", 64)
	b := &baseline.Baseline{
		Header: baseline.Header{
			Subject: digest, Serial: serial, Created: time.Unix(1_700_000_000+int64(serial), 0).UTC(),
			Compared: attr.ImageStable,
			Image:    &baseline.Image{Manifest: digest, Config: cfg, Platform: "linux/amd64"},
		},
		Entries: []attr.Entry{{Path: "/", Attrs: attr.Type | attr.Mode, Type: attr.TypeDir, Mode: 0o755}},
	}
	path := filepath.Join(dir, file)
	if err := baseline.WriteFile(path, b, key); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestPushPull(t *testing.T) {
	for _, referrers := range []bool{true, false} {
		name := map[bool]string{true: "referrers API", false: "fallback tag"}[referrers]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			tr := newRegistry(t, referrers)
			ref := tr.pushImage(t, "podfim/hello")
			pub, priv := newKey(t)
			dir := t.TempDir()
			path := writeBaseline(t, dir, "b.pfb", ref.DigestStr(), 7, priv)

			p, err := Push(ctx, ref, path, pub, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if p.Serial != 7 || p.KeyID != baseline.KeyID(pub) || p.Subject.Digest.String() != ref.DigestStr() {
				t.Errorf("Push = %+v", p)
			}
			if referrers != (tr.fallbacks == 0) {
				t.Errorf("fallback tag requests: %d with referrers API %v", tr.fallbacks, referrers)
			}
			out := filepath.Join(dir, "pulled.pfb")
			got, err := Pull(ctx, ref, out, baseline.ReadOptions{VerifyKey: pub}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Referrer != p.Referrer.DigestStr() || got.Header.Serial != 7 || !got.Signed || got.Listed != 1 {
				t.Errorf("Pull = %+v, pushed %s", got, p.Referrer)
			}
			sameFile(t, path, out)
		})
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	da, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(da) != string(db) {
		t.Errorf("%s and %s differ", a, b)
	}
}

// The newest baseline that verifies wins; one signed by another key, or
// recording another image, is refused whatever its serial.
func TestPullChoosesNewestVerified(t *testing.T) {
	for _, referrers := range []bool{true, false} {
		t.Run(map[bool]string{true: "referrers API", false: "fallback tag"}[referrers], func(t *testing.T) {
			ctx := context.Background()
			tr := newRegistry(t, referrers)
			ref := tr.pushImage(t, "app")
			other := tr.pushImage(t, "app")
			pub, priv := newKey(t)
			otherPub, otherPriv := newKey(t)
			dir := t.TempDir()
			for _, b := range []struct {
				file   string
				digest string
				serial uint64
				key    ed25519.PrivateKey
			}{
				{"old.pfb", ref.DigestStr(), 1, priv},
				{"new.pfb", ref.DigestStr(), 5, priv},
				{"otherkey.pfb", ref.DigestStr(), 9, otherPriv},
			} {
				path := writeBaseline(t, dir, b.file, b.digest, b.serial, b.key)
				if _, err := Push(ctx, ref, path, nil, Options{}); err != nil {
					t.Fatal(err)
				}
			}
			// A baseline of the other image, attached to this one: Push
			// refuses it, so forge the attachment with a manifest of our own.
			forged := writeBaseline(t, dir, "forged.pfb", other.DigestStr(), 10, priv)
			forgeReferrer(t, ref, forged)

			out := filepath.Join(dir, "out.pfb")
			got, err := Pull(ctx, ref, out, baseline.ReadOptions{VerifyKey: pub}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Header.Serial != 5 || got.Listed != 4 || len(got.Refused) != 2 {
				t.Fatalf("Pull = %+v", got)
			}
			var sig, bind int
			for _, r := range got.Refused {
				switch {
				case errors.Is(r.Err, baseline.ErrSignature):
					sig++
				case errors.Is(r.Err, baseline.ErrBinding):
					bind++
				}
			}
			if sig != 1 || bind != 1 {
				t.Errorf("refusals %v: want one signature and one binding", got.Refused)
			}
			sameFile(t, filepath.Join(dir, "new.pfb"), out)

			// Pinned to the other key: only its baseline is usable.
			if got, err = Pull(ctx, ref, out, baseline.ReadOptions{VerifyKey: otherPub}, Options{}); err != nil || got.Header.Serial != 9 {
				t.Errorf("Pull with the other key = %+v, %v", got, err)
			}
			// MaxScreened bounds what is looked at, and says so.
			if got, err = Pull(ctx, ref, out, baseline.ReadOptions{VerifyKey: pub}, Options{MaxScreened: 1}); got == nil || got.Skipped != 3 {
				t.Errorf("Pull with MaxScreened 1 = %+v, %v", got, err)
			}
			// MaxCandidates bounds what passed screening and is fetched
			// whole: the best first, so the newest still wins.
			if got, err = Pull(ctx, ref, out, baseline.ReadOptions{VerifyKey: pub}, Options{MaxCandidates: 1}); err != nil || got.Header.Serial != 5 || got.Skipped != 1 {
				t.Errorf("Pull with MaxCandidates 1 = %+v, %v", got, err)
			}
			leftovers, _ := filepath.Glob(filepath.Join(dir, ".podfim-pull-*"))
			if len(leftovers) != 0 {
				t.Errorf("temporary files left: %v", leftovers)
			}
		})
	}
}

// forgeReferrer attaches path to ref without Push's checks.
func forgeReferrer(t *testing.T, ref name.Digest, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := baseline.OpenFile(path, baseline.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rd.Close()
	config, blob := staticLayers(data)
	for _, l := range []v1.Layer{config, blob} {
		if err := remote.WriteLayer(ref.Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := artifactManifest(config, blob, subject, "forged", rd)
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := v1.SHA256(strings.NewReader(string(raw)))
	if err := remote.Put(ref.Context().Digest(h.String()), rawManifest(raw)); err != nil {
		t.Fatal(err)
	}
}

func TestPullNothing(t *testing.T) {
	ctx := context.Background()
	tr := newRegistry(t, true)
	ref := tr.pushImage(t, "app")
	pub, priv := newKey(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.pfb")
	got, err := Pull(ctx, ref, out, baseline.ReadOptions{VerifyKey: pub}, Options{})
	if !errors.Is(err, ErrNotFound) || got == nil || got.Listed != 0 {
		t.Fatalf("Pull of an image without referrers = %+v, %v", got, err)
	}
	// Only signed by another key: not found, and the error says why.
	_, otherPriv := newKey(t)
	if _, err := Push(ctx, ref, writeBaseline(t, dir, "b.pfb", ref.DigestStr(), 1, otherPriv), nil, Options{}); err != nil {
		t.Fatal(err)
	}
	_, err = Pull(ctx, ref, out, baseline.ReadOptions{VerifyKey: pub}, Options{})
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, baseline.ErrSignature) || !strings.Contains(err.Error(), "signed by key") {
		t.Errorf("Pull = %v, want ErrNotFound and ErrSignature", err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("out written without a usable baseline: %v", err)
	}
	_ = priv
}

func TestPushRefuses(t *testing.T) {
	ctx := context.Background()
	tr := newRegistry(t, true)
	ref := tr.pushImage(t, "app")
	other := tr.pushImage(t, "app")
	pub, priv := newKey(t)
	otherPub, _ := newKey(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		path string
		key  ed25519.PublicKey
		want error
	}{
		{"unsigned", writeBaseline(t, dir, "u.pfb", ref.DigestStr(), 1, nil), nil, ErrBaseline},
		{"other image", writeBaseline(t, dir, "o.pfb", other.DigestStr(), 1, priv), nil, baseline.ErrBinding},
		{"other key", writeBaseline(t, dir, "k.pfb", ref.DigestStr(), 1, priv), otherPub, baseline.ErrSignature},
		{"not a baseline", writeFile(t, dir, "x.pfb", "hello"), nil, baseline.ErrFormat},
	} {
		if _, err := Push(ctx, ref, c.path, c.key, Options{}); !errors.Is(err, c.want) {
			t.Errorf("%s: Push = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := Push(ctx, ref, filepath.Join(dir, "k.pfb"), pub, Options{MaxBaselineBytes: 10}); !errors.Is(err, ErrBaseline) {
		t.Errorf("Push of a file over MaxBaselineBytes = %v", err)
	}
	// Nothing was attached.
	idx, err := remote.Referrers(ref)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := idx.IndexManifest(); len(m.Manifests) != 0 {
		t.Errorf("refused pushes attached %d referrers", len(m.Manifests))
	}
}

func writeFile(t *testing.T, dir, file, content string) string {
	t.Helper()
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParseDigest(t *testing.T) {
	d := "sha256:" + strings.Repeat("a", 64)
	for ref, ok := range map[string]bool{
		"docker://127.0.0.1:5000/podfim/hello@" + d: true,
		"127.0.0.1:5000/podfim/hello@" + d:          true, // a kubelet imageID
		"docker://127.0.0.1:5000/podfim/hello:v1":   false,
		"oci:/tmp/layout@" + d:                      false,
		"docker://127.0.0.1:5000/x@sha256:abc":      false,
	} {
		_, err := ParseDigest(ref, false)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrReference)) {
			t.Errorf("ParseDigest(%q) = %v, want ok %v", ref, err, ok)
		}
	}
}

// hostile serves a registry whose answers a test rewrites.
func hostile(t *testing.T, rewrite func(w http.ResponseWriter, r *http.Request) bool) *testRegistry {
	t.Helper()
	reg := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !rewrite(w, r) {
			reg.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return &testRegistry{host: strings.TrimPrefix(srv.URL, "http://")}
}

// A registry is hostile input: oversized answers end in ErrTooLarge,
// content that is not what its digest says is refused, and nothing
// unverified reaches out.
func TestHostileRegistry(t *testing.T) {
	ctx := context.Background()
	pub, priv := newKey(t)
	var mode string
	tr := hostile(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet {
			return false
		}
		switch {
		case mode == "huge index" && strings.Contains(r.URL.Path, "/referrers/"):
			// Chunked, no Content-Length: the bound must hold while reading.
			w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
			for range 64 {
				w.Write([]byte(strings.Repeat(" ", 1<<10)))
			}
			return true
		case mode == "announced" && strings.Contains(r.URL.Path, "/referrers/"):
			w.Header().Set("Content-Length", "1000000000")
			w.WriteHeader(http.StatusOK)
			return true
		case mode == "bad blob" && strings.Contains(r.URL.Path, "/blobs/") && !strings.Contains(r.URL.Path, configDigest(t)):
			w.Write([]byte("not the baseline"))
			return true
		}
		return false
	})
	ref := tr.pushImage(t, "app")
	dir := t.TempDir()
	if _, err := Push(ctx, ref, writeBaseline(t, dir, "b.pfb", ref.DigestStr(), 1, priv), pub, Options{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.pfb")
	for _, c := range []struct {
		mode string
		want error
	}{
		{"huge index", ErrTooLarge},
		{"announced", ErrTooLarge},
		{"bad blob", ErrNotFound},
	} {
		mode = c.mode
		_, err := Pull(ctx, ref, out, baseline.ReadOptions{VerifyKey: pub}, Options{MaxManifestBytes: 16 << 10})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Pull = %v, want %v", c.mode, err, c.want)
		}
		if _, serr := os.Stat(out); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("%s: out written: %v", c.mode, serr)
		}
	}
	mode = ""
	if _, err := Pull(ctx, ref, out, baseline.ReadOptions{VerifyKey: pub}, Options{}); err != nil {
		t.Errorf("Pull from the registry once honest: %v", err)
	}
}

func configDigest(t *testing.T) string {
	config, _ := staticLayers(nil)
	d, err := config.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// Referrers anyone with push access can add cannot crowd out the real
// one. 20 junk referrers (signed by another key, with higher serials) whose
// digests all sort before the real one's: before the fix Pull fetched the
// first 16 in digest order and never saw the real one (ErrNotFound); now
// each is screened by its header alone and refused, and the real one is
// used.
func TestPullNotCrowdedOut(t *testing.T) {
	ctx := context.Background()
	tr := newRegistry(t, true)
	ref := tr.pushImage(t, "app")
	pub, priv := newKey(t)
	_, junkKey := newKey(t)
	dir := t.TempDir()
	// Grind the real referrer's digest high (>= "sha256:c"), on a copy
	// of the image in another repository: a referrer's manifest names no
	// repository, so its digest is the same in both.
	scratch, err := name.NewDigest(tr.host + "/scratch@" + ref.DigestStr())
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(scratch, img); err != nil {
		t.Fatal(err)
	}
	var real string
	for serial := uint64(1); ; serial++ {
		if serial > 200 {
			t.Fatal("no referrer digest at or above sha256:c in 200 tries")
		}
		path := writeBaseline(t, dir, "real.pfb", ref.DigestStr(), serial, priv)
		p, err := Push(ctx, scratch, path, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if d := p.Referrer.DigestStr(); d >= "sha256:c" {
			if _, err := Push(ctx, ref, path, nil, Options{}); err != nil {
				t.Fatal(err)
			}
			real = d
			break
		}
	}
	below := 0
	for serial := uint64(1000); below < 20; serial++ {
		if serial > 1400 {
			t.Fatalf("only %d junk referrers below %s in 400 tries", below, real)
		}
		p, err := Push(ctx, ref, writeBaseline(t, dir, "junk.pfb", ref.DigestStr(), serial, junkKey), nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Referrer.DigestStr() < real {
			below++
		}
	}
	got, err := Pull(ctx, ref, filepath.Join(dir, "out.pfb"), baseline.ReadOptions{VerifyKey: pub}, Options{})
	if err != nil {
		t.Fatalf("Pull with %d junk referrers before the real one: %v", below, err)
	}
	if got.Referrer != real || got.Skipped != 0 || len(got.Refused) != got.Listed-1 {
		t.Errorf("Pull = referrer %s (want %s), listed %d, refused %d, skipped %d", got.Referrer, real, got.Listed, len(got.Refused), got.Skipped)
	}
	for _, r := range got.Refused {
		if !errors.Is(r.Err, baseline.ErrSignature) {
			t.Errorf("junk %s refused for %v, want ErrSignature", r.Referrer, r.Err)
		}
	}
}
