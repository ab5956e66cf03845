package cli

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The CI recipe of docs/image-baselines.md, against a real (in-process)
// registry: baseline --image from the registry, signed; push; pull with
// the key. And the refusals, with their exit statuses.
func TestBaselinePushPull(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	var digests []string
	for range 2 {
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf.OS, cf.Architecture = "linux", "amd64"
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.NewDigest(host + "/podfim/hello@" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, "docker://"+ref.String())
	}
	work := t.TempDir()
	key, other, base, pulled := filepath.Join(work, "k"), filepath.Join(work, "o"), filepath.Join(work, "b.pfb"), filepath.Join(work, "p.pfb")
	for _, k := range []string{key, other} {
		if code, _, e := run(t, "keygen", "--out", k); code != 0 {
			t.Fatalf("keygen: %d %s", code, e)
		}
	}
	if code, _, e := run(t, "baseline", "--image", digests[0], "--sign-key", key, "--out", base); code != 0 {
		t.Fatalf("baseline --image: %d %s", code, e)
	}
	if code, out, e := run(t, "baseline", "push", "--image", digests[0], "--verify-key", key+".pub", base); code != 0 || !strings.Contains(out, "as referrer sha256:") {
		t.Fatalf("push: %d %q %s", code, out, e)
	}
	if code, out, e := run(t, "baseline", "pull", "--image", digests[0], "--verify-key", key+".pub", "--out", pulled); code != 0 || !strings.Contains(out, "1 listed, 0 refused") {
		t.Fatalf("pull: %d %q %s", code, out, e)
	}
	if string(readAll(t, base)) != string(readAll(t, pulled)) {
		t.Error("the pulled baseline is not the pushed one")
	}
	os.Remove(pulled)
	for _, c := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"pull, another key", []string{"pull", "--image", digests[0], "--verify-key", other + ".pub", "--out", pulled}, ExitSignature, "signed by key"},
		{"pull, no referrer", []string{"pull", "--image", digests[1], "--verify-key", key + ".pub", "--out", pulled}, ExitIO, "lists no referrer"},
		{"push, another image", []string{"push", "--image", digests[1], base}, ExitBinding, "not sha256:"},
		{"push, another key", []string{"push", "--image", digests[0], "--verify-key", other + ".pub", base}, ExitSignature, "signed by key"},
		{"push by tag", []string{"push", "--image", "docker://" + host + "/podfim/hello:v1", base}, ExitUsage, "want docker://REPO@DIGEST"},
		{"pull from a layout", []string{"pull", "--image", "oci:" + work, "--out", pulled}, ExitUsage, "docker://"},
	} {
		code, _, e := run(t, append([]string{"baseline"}, c.args...)...)
		if code != c.code || !strings.Contains(e, c.msg) {
			t.Errorf("%s: exit %d, want %d; %s", c.name, code, c.code, e)
		}
	}
	if _, err := os.Stat(pulled); err == nil {
		t.Error("a refused pull wrote --out")
	}
}
