package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// runPush pushes the index a layout names -tag to -repo by digest first,
// then points the tag at it: a tag is only ever set to something complete.
func runPush(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	dir := fs.String("layout", "", "OCI image layout (dist/oci/NAME)")
	tag := fs.String("tag", "", "the ref name in the layout, and the tag to push")
	repo := fs.String("repo", "", "REGISTRY/PATH/NAME to push to")
	insecure := fs.Bool("insecure", false, "plain HTTP (loopback registries get it anyway)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *tag == "" || *repo == "" {
		return fmt.Errorf("%w: push -layout DIR -tag V -repo REGISTRY/PATH/NAME", errUsage)
	}
	idx, err := layoutIndex(*dir, *tag)
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	var nopts []name.Option
	if *insecure {
		nopts = append(nopts, name.Insecure)
	}
	byDigest, err := name.NewDigest(*repo+"@"+d.String(), nopts...)
	if err != nil {
		return err
	}
	tagged, err := name.NewTag(*repo+":"+*tag, nopts...)
	if err != nil {
		return err
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if err := remote.WriteIndex(byDigest, idx, ropts...); err != nil {
		return fmt.Errorf("push %s: %w", byDigest, err)
	}
	if err := remote.Tag(tagged, idx, ropts...); err != nil {
		return fmt.Errorf("tag %s: %w", tagged, err)
	}
	fmt.Fprintf(out, "%s@%s\n", *repo, d)
	return nil
}

// layoutIndex is the index a layout's index.json names tag.
func layoutIndex(dir, tag string) (v1.ImageIndex, error) {
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	im, err := root.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == tag && d.MediaType.IsIndex() {
			return root.ImageIndex(d.Digest)
		}
	}
	return nil, fmt.Errorf("%s: no index named %q", dir, tag)
}
