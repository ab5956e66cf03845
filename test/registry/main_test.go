package main

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// serve starts the registry on state (a fresh loopback port each time, as
// the cluster's registry after a restart) and returns its host.
func serve(t *testing.T, state string) (host string, stop func()) {
	t.Helper()
	h, closer, err := newHandler(state, "", true, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	return strings.TrimPrefix(srv.URL, "http://"), func() { srv.Close(); closer.Close() }
}

// With -state, a restarted registry still serves every tag, manifest,
// blob and referrer pushed before (the shared cluster's registry was
// emptied by every cluster restart); a deleted tag stays deleted.
func TestStateSurvivesRestart(t *testing.T) {
	state := t.TempDir()
	host, stop := serve(t, state)
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(host + "/podfim/app:v1")
	gone, _ := name.NewTag(host + "/podfim/app:gone")
	for _, ref := range []name.Tag{tag, gone} {
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Delete(gone); err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	art := referrerOf(t, img)
	artDigest, _ := art.Digest()
	if err := remote.Write(tag.Context().Digest(artDigest.String()), art); err != nil {
		t.Fatal(err)
	}
	stop()

	host2, stop2 := serve(t, state)
	defer stop2()
	tag2, _ := name.NewTag(host2 + "/podfim/app:v1")
	got, err := remote.Image(tag2)
	if err != nil {
		t.Fatalf("the tag after a restart: %v", err)
	}
	if d, _ := got.Digest(); d != digest {
		t.Errorf("the tag names %s after a restart, want %s", d, digest)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("a layer after a restart: %v", err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("a layer after a restart: %v", err)
		}
		rc.Close()
	}
	idx, err := remote.Referrers(tag2.Context().Digest(digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != artDigest || im.Manifests[0].ArtifactType != "application/vnd.podfim.test" {
		t.Errorf("referrers after a restart: %+v, want %s", im.Manifests, artDigest)
	}
	if _, err := remote.Head(tag2.Context().Tag("gone")); err == nil {
		t.Error("a deleted tag is back after a restart")
	}

	// Without -state nothing survives (the old behaviour): the test above
	// can fail.
	host3, stop3 := serve(t, "")
	defer stop3()
	tag3, _ := name.NewTag(host3 + "/podfim/app:v1")
	if _, err := remote.Head(tag3); err == nil {
		t.Error("an in-memory registry knows a tag it was never given")
	}
}

// referrerOf is an OCI artifact whose subject is img.
func referrerOf(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	m, _ := img.Manifest()
	size, _ := img.Size()
	digest, _ := img.Digest()
	art := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	art = mutate.ConfigMediaType(art, "application/vnd.podfim.test")
	return mutate.Subject(art, v1.Descriptor{MediaType: m.MediaType, Size: size, Digest: digest}).(v1.Image)
}
